"""The time limits that only make sense together (issue 19): a transform stops taking new work
after WORK_BUDGET_S, well inside the Functions host's functionTimeout, and the build lease
outlives any live holder, so a second transform never builds beside a first that is still
working, and a dead holder's lease still expires."""

from __future__ import annotations

import json
import re
from datetime import timedelta

from shared.services.build_lease import LEASE_S
from shared.services.transform import WORK_BUDGET_S
from tests.support import REPO


def function_timeout() -> timedelta:
    text = json.loads((REPO / "host.json").read_text(encoding="utf-8"))["functionTimeout"]
    match = re.fullmatch(r"(\d+):(\d\d):(\d\d)", text)
    assert match, f"host.json functionTimeout {text!r} is not hh:mm:ss"
    hours, minutes, seconds = (int(part) for part in match.groups())
    return timedelta(hours=hours, minutes=minutes, seconds=seconds)


def test_the_work_budget_leaves_a_round_time_to_finish_inside_the_function_timeout() -> None:
    # A round that starts just before the budget runs out still has half the timeout to finish.
    assert function_timeout().total_seconds() / 2 >= WORK_BUDGET_S


def test_the_build_lease_outlives_every_live_holder() -> None:
    assert function_timeout().total_seconds() < LEASE_S


def test_the_service_bus_lock_is_renewed_for_as_long_as_a_function_may_run() -> None:
    host = json.loads((REPO / "host.json").read_text(encoding="utf-8"))
    renewal = host["extensions"]["serviceBus"]["maxAutoLockRenewalDuration"]
    assert renewal == host["functionTimeout"], "a message whose lock lapses mid-run is delivered twice"
