"""At-least-once delivery: duplicates, stale redeliveries, poison messages, concurrent builds."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import pytest

from shared import blob_events, names
from shared.cli import LocalPipeline
from shared.config import Settings
from shared.ports import OutgoingMessage
from shared.simulator import Fault, UsageApiSimulator
from shared.transform import TransformRequest, run_transform
from tests.conftest import GOLDEN, golden_crm_files, golden_records, read_alerts
from tests.reference import diff_tables, load_expected_csv


@pytest.fixture
def pipeline(tmp_path: Path, api: UsageApiSimulator):
    settings = replace(
        Settings.from_env({}),
        usage_api_base_url=api.base_url,
        usage_api_key="test-key-5f0c2a",
        usage_api_page_size=10,
        usage_api_backoff_base_s=0.01,
        local_data_dir=tmp_path / "local",
    )
    pipe = LocalPipeline(settings)
    yield pipe
    pipe.close()


def table(pipe: LocalPipeline) -> list[dict]:
    return list(pipe.services.warehouse.fetch_rows("company_daily_activity"))


def manifest_event(pipe: LocalPipeline, day: str, index: int = 0) -> OutgoingMessage:
    manifests = [
        n
        for n in pipe.services.blobs.list(names.RAW_CONTAINER, f"usage/{day}/")
        if n.endswith("manifest.json")
    ]
    event = blob_events.make_event(names.RAW_CONTAINER, sorted(manifests)[index], size=1)
    return OutgoingMessage(body=event, message_id=event["id"])


def test_an_older_fetch_delivered_after_a_newer_one_is_stale(pipeline: LocalPipeline, api_records) -> None:
    pipeline.drop_crm(golden_crm_files()[0].read_bytes(), "companies_2026-10-01.csv")
    original = api_records["2026-10-01"]
    api_records["2026-10-01"] = original[:20]
    pipeline.replay({"date": "2026-10-01"})
    api_records["2026-10-01"] = original
    pipeline.replay({"date": "2026-10-01", "force": True})
    newest = table(pipeline)
    assert len(newest) == 43

    runs = sorted(
        {n.split("/")[2] for n in pipeline.services.blobs.list(names.RAW_CONTAINER, "usage/2026-10-01/")}
    )
    assert len(runs) == 2
    older = next(
        n
        for n in pipeline.services.blobs.list(names.RAW_CONTAINER, "usage/2026-10-01/")
        if n.endswith("manifest.json") and runs[0] in n
    )
    event = blob_events.make_event(names.RAW_CONTAINER, older, size=1)
    pipeline.services.bus.send(names.INGEST_QUEUE, [OutgoingMessage(body=event, message_id=event["id"])])
    report = pipeline.host.drain()
    assert not report.failures
    assert table(pipeline) == newest  # unchanged, loaded_at included


def test_page_drift_duplicates_are_staged_once(tmp_path: Path, pipeline: LocalPipeline) -> None:
    records = golden_records()["2026-10-01"]
    with UsageApiSimulator(
        lambda d: records, api_key="k", faults=[Fault(kind="drift_duplicate", times=-1)]
    ) as drifting:
        settings = replace(pipeline.settings, usage_api_base_url=drifting.base_url, usage_api_key="k")
        pipeline.services.settings = settings
        pipeline.drop_crm(golden_crm_files()[0].read_bytes(), "companies_2026-10-01.csv")
        pipeline.replay({"date": "2026-10-01"})
    usage = pipeline.services.ledger.get(names.USAGE, "2026-10-01").data
    assert usage["duplicates"] == 3  # pages 2..4 of 10 each repeat one record
    assert usage["staged"] + usage["quarantined"] + usage["duplicates"] == usage["received"]
    assert usage["staged"] == 39


def test_a_poison_message_ends_in_alerts_after_max_deliveries(pipeline: LocalPipeline) -> None:
    pipeline.services.bus.send(
        names.TRANSFORM_QUEUE, [OutgoingMessage(body={"kind": "nonsense"}, message_id="poison")]
    )
    report = pipeline.host.drain()
    assert len(report.failures) == pipeline.settings.max_delivery_count
    assert report.dead_lettered and "poison" in report.dead_lettered[0]
    alerts = read_alerts(pipeline.settings.local_data_dir)
    assert [a["kind"] for a in alerts] == ["dead_letter"]
    assert alerts[0]["stage"] == names.TRANSFORM_QUEUE and "not a transform request" in alerts[0]["message"]


def test_an_alert_that_cannot_be_delivered_is_dead_lettered_without_looping(pipeline: LocalPipeline) -> None:
    pipeline.services.settings = replace(
        pipeline.settings, alert_webhook_url="http://127.0.0.1:9/hook", alert_webhook_backoff_s=0.01
    )
    pipeline.services.bus.send(
        names.TRANSFORM_QUEUE, [OutgoingMessage(body={"kind": "nonsense"}, message_id="poison")]
    )
    report = pipeline.host.drain()
    assert len(pipeline.services.bus.dead_letters[names.ALERTS_QUEUE]) == 1  # terminal
    assert report.handled[names.ALERTS_QUEUE] == pipeline.settings.max_delivery_count


def test_two_transforms_of_overlapping_days_at_once(pipeline: LocalPipeline) -> None:
    for path in golden_crm_files():
        pipeline.drop_crm(path.read_bytes(), path.name)
    pipeline.replay({"from": "2026-10-01", "to": "2026-10-10"})
    expected = load_expected_csv(GOLDEN / "expected_company_daily_activity.csv")
    with pipeline.services.warehouse._con.cursor() as con:  # start from an empty table
        con.execute("DELETE FROM analytics.company_daily_activity")
    errors: list[BaseException] = []

    def build(kind: str, day: str) -> None:
        try:
            run_transform(
                pipeline.services, TransformRequest.from_json({"kind": kind, "date": day, "run_id": "t"})
            )
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=build, args=(kind, day))
        for kind, day in [
            ("usage", "2026-10-01"),
            ("usage", "2026-10-04"),
            ("crm", "2026-10-01"),
            ("usage", "2026-10-02"),
        ]
        * 2
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert diff_tables(table(pipeline), expected) == []


def test_webhook_failures_never_print_the_webhook_url(pipeline: LocalPipeline, caplog) -> None:
    secret_path = "/services/T0001/B0002/s3cr3tT0k3n"
    pipeline.services.settings = replace(
        pipeline.settings, alert_webhook_url=f"http://127.0.0.1:9{secret_path}", alert_webhook_backoff_s=0.01
    )
    pipeline.services.bus.send(
        names.TRANSFORM_QUEUE, [OutgoingMessage(body={"kind": "x"}, message_id="poison")]
    )
    report = pipeline.host.drain()
    assert report.failures
    assert "s3cr3tT0k3n" not in caplog.text + "\n".join(report.failures)


def test_the_same_alert_is_delivered_once_per_window(pipeline: LocalPipeline) -> None:
    from shared.alerts import Alert, raise_alert

    alert = Alert(
        "error", "fetch", "fetch_failed", "fetch of 2026-10-01 failed: HTTP 401", "run-1", "2026-10-01"
    )
    for _ in range(3):
        raise_alert(pipeline.services.bus, alert)
        pipeline.services.bus._seen_ids.clear()  # past Service Bus duplicate detection
        pipeline.host.drain()
    assert len(read_alerts(pipeline.settings.local_data_dir)) == 1
    entry = pipeline.services.ledger.get(names.ALERTS, alert.fingerprint())
    assert entry is not None and entry.data["suppressed"] == 2

    pipeline.services.settings = replace(pipeline.settings, alert_repeat_window_s=0)
    raise_alert(pipeline.services.bus, alert)
    pipeline.services.bus._seen_ids.clear()
    pipeline.host.drain()
    assert len(read_alerts(pipeline.settings.local_data_dir)) == 2  # the window passed


@pytest.mark.parametrize("name", ["../../etc/passwd", "a/./b.csv", "x\\\\y.csv", "a//b.csv"])
def test_an_event_naming_an_unsafe_blob_is_refused_once_with_an_alert(
    pipeline: LocalPipeline, name: str
) -> None:
    event = blob_events.make_event(names.CRM_CONTAINER, name, size=1)
    pipeline.services.bus.send(names.INGEST_QUEUE, [OutgoingMessage(body=event, message_id=event["id"])])
    report = pipeline.host.drain()
    assert not report.failures and not report.dead_lettered  # not retried: it cannot succeed
    alerts = read_alerts(pipeline.settings.local_data_dir)
    assert [a["kind"] for a in alerts] == ["unsafe_blob_name"]
    assert not (pipeline.settings.local_data_dir.parent / "etc").exists()
