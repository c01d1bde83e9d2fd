"""function_app.py indexed the way the Python worker indexes it."""

from __future__ import annotations

import inspect

import function_app
from shared.domain import names
from shared.local.host import indexed_functions


def triggers() -> dict[str, object]:
    return {f.get_function_name(): f for f in indexed_functions(function_app.app)}


def test_every_trigger_the_pipeline_needs_is_registered() -> None:
    found = {}
    for name, function in triggers().items():
        trigger = function.get_trigger()
        found[name] = (trigger.type, getattr(trigger, "queue_name", None) or getattr(trigger, "route", None))
    assert sorted(found.values(), key=str) == sorted(
        [
            ("timerTrigger", None),
            ("serviceBusTrigger", names.FETCH_QUEUE),
            ("serviceBusTrigger", names.INGEST_QUEUE),
            ("serviceBusTrigger", names.TRANSFORM_QUEUE),
            ("serviceBusTrigger", names.ALERTS_QUEUE),
            ("httpTrigger", "replay"),
            ("httpTrigger", "status"),
            ("httpTrigger", "reconcile"),
            ("httpTrigger", "health"),
        ],
        key=str,
    )


def test_binding_names_match_the_python_parameters() -> None:
    for name, function in triggers().items():
        parameters = set(inspect.signature(function.get_user_function()).parameters)
        inputs = {b.name for b in function.get_bindings() if b.name != "$return"}
        assert inputs == parameters, name


def test_timer_is_monitored_and_scheduled_from_a_setting() -> None:
    timer = triggers()["fetch_timer"].get_trigger()
    assert timer.use_monitor is True
    assert timer.schedule == "%FETCH_SCHEDULE%"


def test_http_routes_need_a_function_key() -> None:
    for name in ("replay", "status", "reconcile", "health"):
        assert str(triggers()[name].get_trigger().auth_level.value) == "function"
    assert [str(getattr(m, "value", m)) for m in triggers()["health"].get_trigger().methods] == ["GET"]
