"""function_app.py indexed by the Functions Python worker's own code (PyPI azure-functions-runtime,
the library worker of Python 3.13 apps), not by our local host.

The worker gets its protobuf message classes from the host over gRPC; they are not on PyPI,
so plain stand-ins hold the fields here. Everything else is the worker's: importing the app,
finding its FunctionApp, the registry's checks of every binding against its function's
parameters (names, directions, annotations), the raw bindings the host would receive.

`make test` builds `.venv-worker` (Python 3.13) when one is installed; without it this skips,
except under CI=true on a machine that has a Python 3.13.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import REPO

WORKER_PYTHON = REPO / ".venv-worker" / "bin" / "python"

SCRIPT = r"""
import json, os, sys, types
sys.path.insert(0, os.getcwd())
from azure_functions_runtime import handle_event

class Message:  # a protobuf message: keeps the fields it is built with
    def __init__(self, **fields):
        self.__dict__.update(fields)

class BindingInfo(Message):
    out, inout = 1, 2  # Direction (and `in` = 0, set below: a keyword)
    undefined, string, binary, stream = 0, 1, 2, 3  # DataType

setattr(BindingInfo, "in", 0)
handle_event.protos = types.SimpleNamespace(
    BindingInfo=BindingInfo, RpcFunctionMetadata=Message, RpcRetryOptions=Message, StatusResult=Message
)
handle_event.load_binding_registry()  # what worker_init_request does first
metadata = handle_event.index_functions(os.path.join(os.getcwd(), "function_app.py"), os.getcwd())
print(json.dumps({
    m.name: {"bindings": {n: b.type for n, b in m.bindings.items()}, "raw": [json.loads(r) for r in m.raw_bindings]}
    for m in metadata
}))
"""


def python_313_on_this_machine() -> bool:
    candidates = [
        shutil.which("python3.13"),
        *glob.glob(os.path.expanduser("~/.pyenv/versions/3.13*/bin/python3.13")),
    ]
    for candidate in filter(None, candidates):
        probe = subprocess.run(
            [candidate, "-c", "import sys; assert sys.version_info[:2] == (3, 13)"], capture_output=True
        )
        if probe.returncode == 0:
            return True
    return False


def index(**settings: str) -> dict:
    """What the worker indexes, with the given settings in the environment."""
    if not WORKER_PYTHON.exists():
        if os.environ.get("CI") == "true" and python_313_on_this_machine():
            pytest.fail("CI=true and a Python 3.13 is here: make test must build .venv-worker")
        pytest.skip("no .venv-worker: the worker's indexing needs Python 3.13 (make worker-venv)")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SQL_", "DATA_STORAGE", "ServiceBus"))}
    result = subprocess.run(
        [str(WORKER_PYTHON), "-c", SCRIPT],
        cwd=REPO,
        env={**env, **settings},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def indexed() -> dict:
    return index()


def test_the_worker_indexes_every_function(indexed: dict) -> None:
    assert sorted(indexed) == [
        "deliver_alerts",
        "fetch_requests",
        "fetch_timer",
        "health",
        "ingest_events",
        "reconcile",
        "replay",
        "status",
        "transform_days",
    ]


def test_each_trigger_is_bound_as_the_host_expects(indexed: dict) -> None:
    def trigger(name: str) -> dict:
        [raw] = [b for b in indexed[name]["raw"] if b["type"].endswith("Trigger")]
        return raw

    queues = {
        name: trigger(name)["queueName"]
        for name in ("fetch_requests", "ingest_events", "transform_days", "deliver_alerts")
    }
    assert queues == {
        "fetch_requests": "fetch-requests",
        "ingest_events": "ingest-events",
        "transform_days": "transform",
        "deliver_alerts": "alerts",
    }
    assert {trigger(n)["connection"] for n in queues} == {"ServiceBusConnection"}
    assert trigger("fetch_timer")["schedule"] == "%FETCH_SCHEDULE%"
    assert (trigger("replay")["route"], trigger("replay")["methods"], trigger("replay")["authLevel"]) == (
        "replay",
        ["POST"],
        "FUNCTION",
    )
    assert indexed["status"]["bindings"] == {"req": "httpTrigger", "$return": "http"}


def test_the_app_imports_without_any_setting(tmp_path: Path) -> None:
    """The worker imports function_app before it has app settings resolved: nothing may need one."""
    if not WORKER_PYTHON.exists():
        pytest.skip("no .venv-worker")
    result = subprocess.run(
        [str(WORKER_PYTHON), "-c", "import function_app"],
        cwd=REPO,
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_bad_settings_leave_every_function_indexed(indexed: dict) -> None:
    """A setting is checked when a function runs, never when the app is imported: with the dev
    parameter file's placeholder, a webhook that is not a URL and a timeout that is not a
    number, the worker still indexes every function, the alert function among them."""
    bad = index(
        USAGE_API_BASE_URL="<https://product usage API root, without /v2/usage>",
        ALERT_WEBHOOK_URL="T0AAAAAAA/B0BBBBBBB/not-a-url",
        USAGE_API_TIMEOUT_S="thirty",
    )
    assert sorted(bad) == sorted(indexed)
    assert "deliver_alerts" in bad
