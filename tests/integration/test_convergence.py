"""The invariant: whatever the arrival order, duplicates and replays, the table converges to
what a from-scratch computation over the final staged inputs gives."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.config import Settings
from shared.domain import blob_events, names
from shared.local.pipeline import LocalPipeline
from shared.local.simulator import UsageApiSimulator
from shared.ports import OutgoingMessage
from tests.reference import diff_tables, load_expected_csv
from tests.support import GOLDEN, read_table

DAYS = sorted(GOLDEN.records())
CRM_FILES = GOLDEN.crm_files()
EXPECTED = load_expected_csv(GOLDEN.expected_csv)


def corrupted(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A wrong first answer the API later corrects: other counts, one company missing."""
    return [
        {**r, "active_users": r["active_users"] + 7} if isinstance(r.get("active_users"), int) else r
        for r in records[1:]
    ]


action = st.one_of(
    st.tuples(st.just("crm"), st.sampled_from(range(len(CRM_FILES)))),
    st.tuples(st.just("run"), st.sampled_from(DAYS)),
    st.tuples(st.just("force"), st.sampled_from(DAYS)),
    st.tuples(st.just("redeliver"), st.sampled_from(DAYS)),
    st.tuples(st.just("transform"), st.sampled_from(DAYS)),
    st.tuples(st.just("crash"), st.integers(0, 5)),
)


@pytest.mark.slow
@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    order=st.permutations([("crm", i) for i in range(len(CRM_FILES))] + [("run", d) for d in DAYS]),
    extras=st.lists(action, max_size=8),
    wrong_first=st.sets(st.sampled_from(DAYS), max_size=3),
    drain_after=st.lists(st.booleans(), min_size=30, max_size=30),
    seed=st.integers(0, 2**16),
)
def test_any_order_with_duplicates_and_replays_converges(
    tmp_path_factory, order, extras, wrong_first, drain_after, seed
) -> None:
    truth = GOLDEN.records()
    served = {d: corrupted(r) if d in wrong_first else r for d, r in truth.items()}
    with UsageApiSimulator(lambda d: list(served.get(d.isoformat(), [])), api_key="k") as api:
        settings_ = replace(
            Settings.from_env({}),
            usage_api_base_url=api.base_url,
            usage_api_key="k",
            usage_api_page_size=7,
            usage_api_backoff_base_s=0.01,
            local_data_dir=Path(tmp_path_factory.mktemp("conv")),
        )
        pipeline = LocalPipeline(settings_, rng=random.Random(seed))
        try:
            steps = list(order)
            for extra in extras:  # duplicates and replays, anywhere
                steps.insert(random.Random(seed + len(steps)).randrange(len(steps) + 1), extra)
            for index, (kind, arg) in enumerate(steps):
                if kind == "crash":
                    # The process dies after handling `arg` more messages; a new one takes over
                    # from what the journal, the stores and the ledger hold.
                    pipeline.host.drain(max_messages=arg, stop_early=True)
                    pipeline.close()
                    pipeline = LocalPipeline(settings_, rng=random.Random(seed + index))
                    continue
                perform(pipeline, kind, arg)
                if drain_after[index % len(drain_after)]:
                    assert not pipeline.host.drain().dead_lettered
            assert not pipeline.host.drain().dead_lettered

            # The API corrects itself; a forced replay of those days must replace, not add.
            served.update(truth)
            for day_ in sorted(wrong_first, reverse=True):
                perform(pipeline, "force", day_)
            report = pipeline.host.drain()
            assert not report.dead_lettered
            assert not report.error_alerts()
        finally:
            pipeline.close()
    differences = diff_tables(read_table(settings_.local_data_dir), EXPECTED)
    assert differences == [], "\n".join(differences[:15])


def perform(pipeline: LocalPipeline, kind: str, arg: Any) -> None:
    """Start one thing, without waiting for it: the bus holds it until the next drain."""
    services = pipeline.services
    if kind == "crm":
        path = CRM_FILES[arg]
        services.blobs.put(names.CRM_CONTAINER, path.name, path.read_bytes())
    elif kind in ("run", "force"):
        response = pipeline.host.http("POST", "replay", body={"date": arg, "force": kind == "force"})
        assert response.status_code == 202
    elif kind == "redeliver":  # Event Grid delivering a manifest event again, past duplicate detection
        for name in services.blobs.list(names.RAW_CONTAINER, f"usage/{arg}/"):
            if name.endswith(names.MANIFEST_NAME):
                event = blob_events.make_event(names.RAW_CONTAINER, name, size=1)
                services.bus.send(names.INGEST_QUEUE, [OutgoingMessage(body=event, message_id=event["id"])])
    elif kind == "transform":  # a transform message repeated long after the fact
        body = {"kind": random.choice(["usage", "crm", "day"]), "date": arg, "run_id": "replayed"}
        services.bus.send(
            names.TRANSFORM_QUEUE, [OutgoingMessage(body=body, message_id=f"t-{random.random()}")]
        )
