"""What a run reads of the ledger grows with the days it works on, not with the history."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import date, timedelta
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from shared.adapters.ledger_sqlite import SqliteLedger
from shared.config import Settings
from shared.domain import names
from shared.domain.ledger_records import DayRecord, from_data
from shared.domain.transform_plan import (
    InputKind,
    Need,
    TransformPlan,
    TransformRequest,
    days_to_mark,
    days_to_plan,
    plan_transform,
)
from shared.local.simulator import UsageApiSimulator
from shared.ports import LedgerEntry, RunLedger, Services
from shared.services import pending
from shared.services.fetch import fetch_day
from shared.services.ledger import entries_between
from shared.services.pending import PendingDay, marking_inputs, pending_days
from shared.services.staging import load_crm_drop, load_usage_manifest
from shared.services.transform import MAX_DAYS_PER_BUILD, TransformOutcome, inputs_window, run_transform
from tests.support import DAY, ISO

FIRST = date(2024, 1, 1)


def _settled(n: int) -> dict[str, Any]:
    """A settled day as the transform leaves it, in the stored shapes a settled mark takes."""
    data: dict[str, Any] = {"status": "built", "rows": 12, "rules": "r", "warnings": '["w"]'}
    shape = n % 3
    if shape == 1:
        data.update(pending="", pending_token="", pending_run_id="", pending_since="")
    elif shape == 2:
        data["pending"] = None
    return data


def _decoded_marks(entries: list[LedgerEntry]) -> dict[date, PendingDay]:
    """pending_days' answer worked out the slow way: every entry decoded."""
    found = {}
    for entry in entries:
        record = from_data(DayRecord, entry.data)
        if record.pending:
            day = date.fromisoformat(entry.key)
            found[day] = PendingDay(day, record.pending, record.pending_token, record.pending_run_id)
    return found


def test_finding_the_marks_decodes_only_the_marked_days(monkeypatch: pytest.MonkeyPatch) -> None:
    history = [
        LedgerEntry(names.DAYS, (FIRST + timedelta(days=n)).isoformat(), _settled(n), f"e{n}")
        for n in range(730)
    ]
    marks: dict[str, dict[str, Any]] = {
        "2026-01-01": {"pending": "build", "pending_token": "t1", "pending_run_id": "fetch-1"},
        "2026-01-02": {"status": "built", "pending": "gate", "pending_token": "t2"},
        "2026-01-03": {"pending": 0},  # a value no writer stores: decoded as the codec reads it
    }
    entries = history + [LedgerEntry(names.DAYS, k, v, "m") for k, v in marks.items()]
    decoded: list[object] = []

    def counting(cls: type, data: Any) -> Any:
        decoded.append(data)
        return from_data(cls, data)

    monkeypatch.setattr(pending, "from_data", counting)
    found = pending_days(entries)
    assert found == _decoded_marks(entries)
    assert sorted(found) == [date(2026, 1, 1), date(2026, 1, 2), date(2026, 1, 3)]
    assert len(decoded) == len(marks)  # not one decode per day of history


@settings(deadline=None)  # no time asserted: the machine may be loaded
@given(st.dates(), st.dates())
def test_iso_dates_sort_as_text_as_they_do_as_dates(a: date, b: date) -> None:
    assert (a <= b) == (a.isoformat() <= b.isoformat())


@settings(deadline=None, max_examples=40)  # a SQLite file each
@given(
    days=st.sets(st.dates(date(1970, 1, 1), date(2100, 12, 31)), max_size=30),
    first=st.dates(date(1969, 12, 1), date(2101, 1, 31)),
    span=st.integers(0, 20_000),
)
def test_entries_between_are_the_days_in_the_range(
    tmp_path_factory: pytest.TempPathFactory, days: set[date], first: date, span: int
) -> None:
    ledger = SqliteLedger(tmp_path_factory.mktemp("ledger") / "ledger.sqlite3")
    for day in days:
        ledger.put(names.USAGE, day.isoformat(), {"staged": 1})
    ledger.put(names.USAGE, "quota:x", {"staged": 0})  # a key that is no date sorts after them
    ledger.put(names.DAYS, first.isoformat(), {"status": "built"})
    last = first + timedelta(days=span) if span < (date.max - first).days else date.max
    got = entries_between(ledger, names.USAGE, first, last)
    assert [e.key for e in got] == [d.isoformat() for d in sorted(days) if first <= d <= last]


# --- the transform reads the days it plans ------------------------------------------------------

CRM_MAX_AGE = 7  # the default CRM_MAX_SNAPSHOT_AGE_DAYS


@settings(max_examples=300, deadline=None)
@given(
    # Dense and small, so that the edges of the window (the first planned day's seventh day
    # back, a snapshot exactly CRM_MAX_SNAPSHOT_AGE_DAYS old) come up often.
    usage=st.dictionaries(st.integers(-10, 30), st.sampled_from([0, 10, 40, 100]), max_size=40),
    snapshots=st.sets(st.integers(-12, 30), max_size=6),
    pending=st.dictionaries(st.integers(0, 30), st.sampled_from(["build", "gate"]), max_size=12),
    stale=st.sets(st.integers(0, 30), max_size=4),
    max_age=st.integers(0, 10),
    limit=st.integers(1, MAX_DAYS_PER_BUILD),
)
# The edges themselves: the first planned day's baseline reaches BASELINE_DAYS back; its
# effective snapshot may be CRM_MAX_SNAPSHOT_AGE_DAYS old.
@example(usage={0: 100, 7: 10}, snapshots={7}, pending={7: "build"}, stale=set(), max_age=0, limit=1)
@example(usage={10: 10}, snapshots={3}, pending={10: "build", 12: "gate"}, stale=set(), max_age=7, limit=2)
def test_a_round_plans_the_same_from_its_window_as_from_the_whole_history(
    usage: dict[int, int],
    snapshots: set[int],
    pending: dict[int, Need],
    stale: set[int],
    max_age: int,
    limit: int,
) -> None:
    """The usage and snapshots outside `inputs_window` never change a plan: the gate's baseline,
    the rolling window and the effective snapshot all lie inside it."""
    on = {n: FIRST + timedelta(days=n) for n in range(-12, 31)}
    all_usage = {on[n].isoformat(): {"staged": staged, "quarantined": 0} for n, staged in usage.items()}
    marks = {on[n]: need for n, need in pending.items()}
    stale_days = {on[n] for n in stale}
    if not marks and not stale_days:
        return
    window = inputs_window(days_to_plan(marks, stale_days, MAX_DAYS_PER_BUILD), max_age)
    in_window = {
        k: v for k, v in all_usage.items() if window.usage_from <= date.fromisoformat(k) <= window.last
    }
    snapshot_days = sorted(on[n] for n in snapshots)
    windowed_snapshots = [d for d in snapshot_days if window.snapshots_from <= d <= window.last]

    def plan(usage_entries: dict[str, Any], snapshot_dates: list[date]) -> TransformPlan:
        return plan_transform(marks, usage_entries, snapshot_dates, max_age, stale=stale_days, limit=limit)

    assert plan(in_window, windowed_snapshots) == plan(all_usage, snapshot_days)


class RecordingLedger:
    """The ledger, with the key of every entry a read returned."""

    def __init__(self, inner: RunLedger) -> None:
        self.inner = inner
        self.seen: list[tuple[str, str]] = []

    def get(self, partition: str, key: str) -> LedgerEntry | None:
        entry = self.inner.get(partition, key)
        self.seen += [(partition, key)] if entry is not None else []
        return entry

    def put(
        self, partition: str, key: str, data: Mapping[str, Any], *, etag: str | None = None
    ) -> LedgerEntry:
        return self.inner.put(partition, key, data, etag=etag)

    def query(self, partition: str) -> list[LedgerEntry]:
        return self._seen(self.inner.query(partition))

    def query_range(self, partition: str, first: str, last: str) -> list[LedgerEntry]:
        return self._seen(self.inner.query_range(partition, first, last))

    def _seen(self, entries: list[LedgerEntry]) -> list[LedgerEntry]:
        self.seen += [(e.partition, e.key) for e in entries]
        return entries

    def days_seen(self, partition: str) -> list[date]:
        return sorted({date.fromisoformat(k) for p, k in self.seen if p == partition})


def _crm(companies: int) -> bytes:
    rows = "".join(f"c-{i:04d},Company {i},DE,saas,2026-11-01\n" for i in range(1, companies + 1))
    return ("company_id,name,country,industry_tag,last_contact_at\n" + rows).encode()


def _with_history(services: Services, days: int, *, recent: dict[date, int] | None = None) -> Services:
    """Two years' worth of days staged and built long before DAY (ledger entries only: the
    transform plans from the ledger), and `recent` usage days (day -> staged records); the
    services, reading the ledger through a RecordingLedger."""
    rules = services.settings.rules().encode()
    for n in range(days):
        key = (DAY - timedelta(days=100 + n)).isoformat()
        services.ledger.put(names.USAGE, key, {"staged": 12, "quarantined": 0, "received": 12})
        services.ledger.put(names.DAYS, key, {"status": "built", "rules": rules, "rows": 12, "pending": ""})
        if n % 7 == 0:
            services.ledger.put(names.CRM, key, {"staged": 12})
    for day, staged in (recent or {}).items():
        services.ledger.put(
            names.USAGE, day.isoformat(), {"staged": staged, "quarantined": 0, "received": staged}
        )
    return replace(services, ledger=RecordingLedger(services.ledger))


def _transform_recorded(services: Services) -> tuple[TransformOutcome, RecordingLedger]:
    """DAY's transform, with the ledger's reads recorded from its start."""
    ledger = services.ledger
    assert isinstance(ledger, RecordingLedger)
    ledger.seen.clear()
    return run_transform(services, TransformRequest("usage", DAY, "run-1")), ledger


def _stage(services: Services, snapshot: date) -> None:
    """DAY's usage fetched and staged, and a CRM snapshot dated `snapshot` dropped and staged."""
    load_usage_manifest(services, names.manifest_blob(DAY, fetch_day(services, DAY).run_id))
    name = f"companies_{snapshot.isoformat()}.csv"
    services.blobs.put(names.CRM_CONTAINER, name, _crm(20))
    assert load_crm_drop(services, name).status == "staged"


def test_a_day_after_a_long_history_reads_its_window_and_builds_on_the_oldest_snapshot_it_may(
    start_api: Callable[..., UsageApiSimulator], make_services: Callable[..., Services]
) -> None:
    services = _with_history(make_services(start_api(12)), 730)
    oldest = DAY - timedelta(days=CRM_MAX_AGE)  # still effective for DAY
    _stage(services, oldest)
    outcome, ledger = _transform_recorded(services)

    assert outcome.built == [ISO]
    built = services.ledger.get(names.DAYS, ISO)
    assert built is not None and built.data["snapshot_date"] == oldest.isoformat()
    # Of the usage and CRM partitions, only the days the round could use were read.
    assert ledger.days_seen(names.USAGE) == [DAY]
    assert ledger.days_seen(names.CRM) == [oldest]


def test_the_volume_gate_reads_its_baseline_days_after_a_long_history(
    start_api: Callable[..., UsageApiSimulator], make_services: Callable[..., Services]
) -> None:
    """DAY's 20 records against 100 on each of the seven days before it: a drop the gate stops."""
    baseline = {DAY - timedelta(days=n): 100 for n in range(1, 8)}
    services = _with_history(make_services(start_api(20)), 730, recent=baseline)
    _stage(services, DAY)
    outcome, ledger = _transform_recorded(services)

    assert outcome.blocked == [ISO]
    day = services.ledger.get(names.DAYS, ISO)
    assert (
        day is not None
        and "down 80% against the median 100 of the previous 7 staged days" in day.data["errors"]
    )
    assert ledger.days_seen(names.USAGE) == sorted([*baseline, DAY])
    assert ledger.days_seen(names.CRM) == [DAY]


# --- a loader reads the days it marks -----------------------------------------------------------


class KeyOrderedLedger:
    """Reads of a ledger held in a dict, in key order (the adapters' own reads are held to the
    port by tests/adapters/test_ledger.py): the marks' window, without a file per example."""

    def __init__(self) -> None:
        self.entries: dict[tuple[str, str], Mapping[str, Any]] = {}

    def put(self, partition: str, key: str, data: Mapping[str, Any]) -> None:
        self.entries[partition, key] = data

    def query(self, partition: str) -> list[LedgerEntry]:
        return self.query_range(partition, "", "\uffff")

    def query_range(self, partition: str, first: str, last: str) -> list[LedgerEntry]:
        found = sorted((k, v) for (p, k), v in self.entries.items() if p == partition and first <= k <= last)
        return [LedgerEntry(partition, k, v, "") for k, v in found]


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from(["usage", "crm", "day"]),
    staged=st.sets(st.integers(-5, 25), max_size=30),
    snapshots=st.sets(st.integers(-12, 25), max_size=8),
    max_age=st.integers(0, 14),
)
@example(kind="usage", staged={7}, snapshots=set(), max_age=0)  # D+7: re-checked, the last day it reaches
@example(kind="crm", staged={9}, snapshots={9}, max_age=9)  # a later snapshot takes the day over
@example(kind="crm", staged={9}, snapshots=set(), max_age=9)  # the oldest day it is effective for
def test_the_marks_from_the_ledger_read_by_range_are_those_from_the_whole_ledger(
    kind: InputKind, staged: set[int], snapshots: set[int], max_age: int
) -> None:
    services = Services(
        settings=Settings(crm_max_snapshot_age_days=max_age),
        blobs=None,  # type: ignore[arg-type]
        ledger=KeyOrderedLedger(),  # type: ignore[arg-type]
        bus=None,  # type: ignore[arg-type]
        warehouse=None,  # type: ignore[arg-type]
        usage_api=None,  # type: ignore[arg-type]
        alert_sink=None,  # type: ignore[arg-type]
    )
    for n in staged:
        services.ledger.put(names.USAGE, (FIRST + timedelta(days=n)).isoformat(), {"staged": 1})
    for n in snapshots:
        services.ledger.put(names.CRM, (FIRST + timedelta(days=n)).isoformat(), {"staged": 1})
    ranged, ranged_snapshots = marking_inputs(services, FIRST)
    whole = {e.key for e in services.ledger.query(names.USAGE)}
    whole_snapshots = [date.fromisoformat(e.key) for e in services.ledger.query(names.CRM)]
    assert days_to_mark(kind, FIRST, ranged_snapshots, max_age, ranged) == days_to_mark(
        kind, FIRST, whole_snapshots, max_age, whole
    )


def test_loading_a_day_after_a_long_history_reads_the_days_it_marks(
    start_api: Callable[..., UsageApiSimulator], make_services: Callable[..., Services]
) -> None:
    services = _with_history(make_services(start_api(12)), 730)
    ledger = services.ledger
    assert isinstance(ledger, RecordingLedger)
    services.blobs.put(names.CRM_CONTAINER, f"companies_{ISO}.csv", _crm(20))
    assert load_crm_drop(services, f"companies_{ISO}.csv").status == "staged"
    ledger.seen.clear()

    loaded = load_usage_manifest(services, names.manifest_blob(DAY, fetch_day(services, DAY).run_id))

    marks = pending_days(services.ledger.query(names.DAYS))
    assert {d for d, p in marks.items() if p.run_id == loaded.run_id} == {DAY}
    assert ledger.days_seen(names.USAGE) == [DAY]
    assert ledger.days_seen(names.CRM) == [DAY]
