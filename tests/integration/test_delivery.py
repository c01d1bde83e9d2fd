"""At-least-once delivery: duplicates, stale redeliveries, poison messages, concurrent builds."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared.adapters import bus_in_process
from shared.domain import blob_events, names
from shared.local.pipeline import LocalPipeline
from shared.local.simulator import Fault, UsageApiSimulator
from shared.ports import OutgoingMessage
from tests.reference import diff_tables, load_expected_csv
from tests.support import GOLDEN, build_concurrently, read_alerts


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
    pipeline.drop_crm(GOLDEN.crm_files()[0].read_bytes(), "companies_2026-10-01.csv")
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
    records = GOLDEN.records()["2026-10-01"]
    with UsageApiSimulator(
        lambda d: records, api_key="k", faults=[Fault(kind="drift_duplicate", times=-1)]
    ) as drifting:
        settings = replace(pipeline.settings, usage_api_base_url=drifting.base_url, usage_api_key="k")
        pipeline.services.settings = settings
        pipeline.drop_crm(GOLDEN.crm_files()[0].read_bytes(), "companies_2026-10-01.csv")
        pipeline.replay({"date": "2026-10-01"})
    usage = pipeline.services.ledger.get(names.USAGE, "2026-10-01").data
    assert usage["duplicates"] == 3  # pages 2..4 of 10 each repeat one record
    assert usage["staged"] + usage["quarantined"] + usage["duplicates"] == usage["received"]
    assert usage["staged"] == 39


@pytest.mark.parametrize(
    ("queue", "body", "kind", "phrase"),
    [
        (names.TRANSFORM_QUEUE, b'{"kind": "nonsense"}', "bad_transform_request", "not a transform request"),
        (names.TRANSFORM_QUEUE, b"{not json", "unreadable_message", "is not JSON"),
        (names.FETCH_QUEUE, b'{"date": "yesterday"}', "bad_fetch_request", "bad date"),
        (
            names.INGEST_QUEUE,
            b'{"eventType": "Microsoft.Storage.BlobCreated", "data": {"api": "PutBlob"}}',
            "not_a_blob_event",
            "unexpected BlobCreated subject",
        ),
    ],
)
def test_a_message_that_can_never_succeed_is_completed_at_once_with_one_alert(
    pipeline: LocalPipeline, queue: str, body: bytes, kind: str, phrase: str
) -> None:
    pipeline.services.bus._enqueue(  # raw bytes, as a broken sender would put them on the queue
        bus_in_process.Envelope(queue, "poison", body, {}, 10**6, datetime.now(UTC), 0.0)
    )
    report = pipeline.host.drain()
    assert not report.failures and not report.dead_lettered  # delivered once, not redelivered
    alerts = read_alerts(pipeline.settings.local_data_dir)
    assert [a["kind"] for a in alerts] == [kind]
    assert alerts[0]["stage"] in queue and phrase in alerts[0]["message"] and "poison" in alerts[0]["message"]


def test_a_manifest_whose_page_is_missing_is_completed_with_an_alert(pipeline: LocalPipeline) -> None:
    pipeline.replay({"date": "2026-10-01"})
    manifest = next(
        n
        for n in pipeline.services.blobs.list(names.RAW_CONTAINER, "usage/2026-10-01/")
        if n.endswith("manifest.json")
    )
    page = json.loads(pipeline.services.blobs.get(names.RAW_CONTAINER, manifest))["pages"][0]["blob"]
    root = pipeline.settings.local_data_dir / "blobs" / names.RAW_CONTAINER
    (root / page).unlink()
    event = blob_events.make_event(names.RAW_CONTAINER, manifest, size=1)
    pipeline.services.bus.send(names.INGEST_QUEUE, [OutgoingMessage(body=event, message_id=event["id"])])
    report = pipeline.host.drain()
    assert not report.failures and not report.dead_lettered
    alerts = [a for a in read_alerts(pipeline.settings.local_data_dir) if a["kind"] == "bad_manifest"]
    assert len(alerts) == 1 and "does not exist" in alerts[0]["message"]


def test_a_failure_that_may_pass_later_is_still_retried_until_it_dead_letters(
    pipeline: LocalPipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    pipeline.replay({"date": "2026-10-01"})  # staged, and waiting for its snapshot
    monkeypatch.setattr(pipeline.services.warehouse, "build_days", broken)
    pipeline.services.bus.send(
        names.TRANSFORM_QUEUE,
        [OutgoingMessage(body={"kind": "day", "date": "2026-10-01", "run_id": "r"}, message_id="t-1")],
    )
    report = pipeline.host.drain()
    assert len(report.failures) == pipeline.settings.max_delivery_count
    assert report.dead_lettered and "t-1" in report.dead_lettered[0]
    alerts = read_alerts(pipeline.settings.local_data_dir)
    assert [a["kind"] for a in alerts] == ["dead_letter"]
    assert alerts[0]["stage"] == names.TRANSFORM_QUEUE and "disk full" in alerts[0]["message"]


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
    for path in GOLDEN.crm_files():
        pipeline.drop_crm(path.read_bytes(), path.name)
    pipeline.replay({"from": "2026-10-01", "to": "2026-10-10"})
    expected = load_expected_csv(GOLDEN.expected_csv)
    with pipeline.services.warehouse._con.cursor() as con:  # start from an empty table
        con.execute("DELETE FROM analytics.company_daily_activity")
    errors = build_concurrently(pipeline.services)
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
    from shared.domain.alerts import Alert
    from shared.services.alerts import raise_alert

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
