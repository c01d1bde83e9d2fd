"""A deterministic, realistic-looking world for the demo: API usage plus CRM drops.

Everything derives from `random.Random(f"{seed}:...")` instances keyed by what they
describe (company, day, drop), never from the global generator, so a world is the
same on every machine and every run, and one company's numbers do not shift when
another's code path changes.

What the world contains (default: 60 CRM companies over 21 days):

* Usage for every company on every day of the window (0-user records included,
  e.g. small teams on weekends), shuffled per day like an API that does not sort.
* About 15% of CRM companies churn: from a churn day their active users decay
  linearly to 0 over 3-6 days, they report 0 users for a few days, then vanish from
  the API. Vanishing is staggered to at most one company per day so the day's
  record count never drops more than 10% against the median of the previous days
  (the pipeline warns on that). Churn that starts late may not finish in the window.
* 2-3 companies with usage that are not in the CRM (new sign-ups not synced yet).
* A CRM drop every 2-3 days from `first_day`, listing every CRM company (churned
  ones too). Drops 1, 2 and 3 come in the awkward shapes real exports have; see
  `crm_variant`.

The churn schedule is spread over the window, so it depends on `first_day` and
`days` as well as on the seed. Days outside the window have no usage.
"""

from __future__ import annotations

import csv
import io
import random
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta, timezone
from functools import cached_property
from typing import Any, Literal

CRM_COLUMNS: tuple[str, ...] = ("company_id", "name", "country", "industry_tag", "last_contact_at")

CrmVariant = Literal["standard", "bom_crlf_upper", "renamed_extra", "bad_row"]
# Drop index -> awkward shape; early indices so even a one-week window has them all.
_VARIANT_BY_DROP: dict[int, CrmVariant] = {1: "bom_crlf_upper", 2: "renamed_extra", 3: "bad_row"}

_NAME_BASES = (
    "Acme",
    "Globex",
    "Initech",
    "Umbrella, Inc.",
    'The "Best" Co',
    "Hooli",
    "Vandelay Industries",
    "Soylent",
    "Cyberdyne",
    "Wonka Industries",
    "Tyrell Corp",
    "Pied Piper",
    "Dunder Mifflin",
    'Stark "Labs", Ltd.',
)
_ACCENTED_BASE = "Müller & Söhne"
_COUNTRIES = ("US", "US", "US", "DE", "DE", "GB", "GB", "FR", "NL", "SE", "BR", "JP", "IN", "ES", "CA")
_INDUSTRIES = ("saas", "fintech", "media", "retail", "health", "edu", "logistics", "manufacturing")
_OWNERS = ("ana.silva", "ben.okafor", "chloe.martin", "dmitri.ivanov", "emma.lund")

# Ways real exports write a timestamp; the weights keep the common ones common.
_STYLES = ("date", "z", "millis", "plus2", "plus9", "minus5", "naive")
_STYLE_WEIGHTS = (2, 4, 2, 2, 1, 1, 1)
_TZ = {
    "plus2": timezone(timedelta(hours=2)),
    "plus9": timezone(timedelta(hours=9)),
    "minus5": timezone(timedelta(hours=-5)),
}

_ContactStyle = Literal["active", "stale", "never"]


@dataclass(frozen=True)
class _Company:
    company_id: str
    name: str
    country: str
    industry_tag: str
    size: int  # seats: the most active users it can have
    engagement: float  # share of seats active on a normal weekday
    weekend_factor: float
    events_per_user: float
    trend: float  # slow daily growth or decline
    in_crm: bool
    contacts: tuple[datetime, ...]  # UTC, ascending
    churn_start: int | None = None  # day offset in the window
    decay_days: int = 0
    zero_days: int = 0  # days reporting 0 users before vanishing

    @property
    def exit_offset(self) -> int | None:
        """First day offset on which the company no longer appears in the API."""
        if self.churn_start is None:
            return None
        return self.churn_start + self.decay_days + self.zero_days


@dataclass(frozen=True)
class DemoWorld:
    first_day: date
    days: int = 21
    companies: int = 60
    seed: int = 7

    def __post_init__(self) -> None:
        if self.days < 1 or self.companies < 1:
            raise ValueError("a demo world needs at least one day and one company")

    # ----------------------------------------------------------------- public API

    @property
    def last_day(self) -> date:
        return self.first_day + timedelta(days=self.days - 1)

    def usage_records(self, day: date) -> list[dict[str, Any]]:
        """Every record the API returns for `day`, in API order (fresh dicts each call)."""
        offset = (day - self.first_day).days
        if not 0 <= offset < self.days:
            return []
        records = [
            record
            for company in self._companies
            if (record := self._usage_for(company, day, offset)) is not None
        ]
        random.Random(f"{self.seed}:order:{day.isoformat()}").shuffle(records)
        return records

    def snapshot_days(self) -> list[date]:
        """Days with a CRM drop: the first day, then every 2-3 days."""
        rng = random.Random(f"{self.seed}:drops")
        result: list[date] = []
        offset = 0
        while offset < self.days:
            result.append(self.first_day + timedelta(days=offset))
            offset += rng.choice((2, 3))
        return result

    def crm_file_name(self, day: date) -> str:
        return f"companies_{day.isoformat()}.csv"

    def crm_variant(self, day: date) -> CrmVariant:
        """The shape of the drop on `day`:

        * standard: `CRM_COLUMNS` in order, lower-case, `\\n`, no BOM;
        * bom_crlf_upper: UTF-8 BOM, CRLF line endings, upper-case headers;
        * renamed_extra: `company_name` for `name`, an extra `account_owner`, columns reordered;
        * bad_row: standard plus one row with a blank company_id (1 of 60+ rows, under 5%).
        """
        return _VARIANT_BY_DROP.get(self._drop_index(day), "standard")

    def crm_snapshot_csv(self, day: date) -> bytes:
        """The file content of the drop on `day` (a day from `snapshot_days`)."""
        variant = self.crm_variant(day)
        as_of = datetime(day.year, day.month, day.day, tzinfo=UTC)  # exported at midnight UTC
        rows: list[dict[str, str]] = []
        for company in self._companies:
            if not company.in_crm:
                continue
            rows.append(
                {
                    "company_id": company.company_id,
                    "name": company.name,
                    "country": company.country,
                    "industry_tag": company.industry_tag,
                    "last_contact_at": self._contact_text(company, as_of),
                    "account_owner": self._owner(company),
                }
            )
        rng = random.Random(f"{self.seed}:crm:{day.isoformat()}")
        rng.shuffle(rows)  # exports are not sorted by id
        if variant == "bad_row":
            bad = {"company_id": "", "name": "Unknown Prospect", "country": "US", "industry_tag": "saas"}
            rows.insert(len(rows) // 2, {**bad, "last_contact_at": "", "account_owner": ""})

        columns = list(CRM_COLUMNS)
        headers = list(CRM_COLUMNS)
        if variant == "bom_crlf_upper":
            headers = [h.upper() for h in headers]
        elif variant == "renamed_extra":
            columns = ["last_contact_at", "company_id", "industry_tag", "country", "name", "account_owner"]
            headers = [("company_name" if c == "name" else c) for c in columns]

        out = io.StringIO(newline="")
        newline = "\r\n" if variant == "bom_crlf_upper" else "\n"
        writer = csv.writer(out, lineterminator=newline)
        writer.writerow(headers)
        writer.writerows([row[c] for c in columns] for row in rows)
        encoding = "utf-8-sig" if variant == "bom_crlf_upper" else "utf-8"
        return out.getvalue().encode(encoding)

    def churning_companies(self) -> list[str]:
        """CRM companies whose usage decays to zero during the window (sorted)."""
        return sorted(c.company_id for c in self._companies if c.churn_start is not None)

    def usage_only_companies(self) -> list[str]:
        """Companies with usage that no CRM drop lists (sorted)."""
        return sorted(c.company_id for c in self._companies if not c.in_crm)

    # ----------------------------------------------------------------- internals

    def _drop_index(self, day: date) -> int:
        try:
            return self.snapshot_days().index(day)
        except ValueError:
            raise ValueError(f"{day} is not a CRM drop day of this world") from None

    @cached_property
    def _companies(self) -> tuple[_Company, ...]:
        # cached_property writes the instance __dict__ directly, so it works on a frozen dataclass.
        crm = [self._make_company(i, in_crm=True) for i in range(1, self.companies + 1)]
        extra = random.Random(f"{self.seed}:usage-only").choice((2, 3))
        orphans = [
            self._make_company(i, in_crm=False) for i in range(self.companies + 1, self.companies + 1 + extra)
        ]
        return tuple(self._with_churn(crm)) + tuple(orphans)

    def _make_company(self, index: int, *, in_crm: bool) -> _Company:
        rng = random.Random(f"{self.seed}:company:{index}")
        accented = random.Random(f"{self.seed}:accent").randint(1, self.companies)
        base = _ACCENTED_BASE if index == accented else rng.choice(_NAME_BASES)
        # Log-normal: many small teams, a few big ones, capped at 80 seats.
        size = max(1, min(80, round(rng.lognormvariate(2.3, 0.8))))
        return _Company(
            company_id=f"c-{index:04d}",
            name=f"{base} {index}",
            country=rng.choice(_COUNTRIES),
            industry_tag=rng.choice(_INDUSTRIES),
            size=size,
            engagement=rng.uniform(0.45, 0.95),
            weekend_factor=rng.choice((0.1, 0.2, 0.3, 0.5, 0.9)),
            events_per_user=rng.uniform(8.0, 45.0),
            trend=rng.uniform(-0.004, 0.006),
            in_crm=in_crm,
            contacts=self._make_contacts(rng),
        )

    def _make_contacts(self, rng: random.Random) -> tuple[datetime, ...]:
        style: _ContactStyle = rng.choices(("active", "stale", "never"), weights=(70, 22, 8))[0]
        start = datetime(self.first_day.year, self.first_day.month, self.first_day.day, tzinfo=UTC)
        if style == "never":
            return ()
        if style == "stale":
            # Last touched weeks or months before the window, and not since.
            last = start - timedelta(days=rng.randint(20, 200), minutes=rng.randint(0, 24 * 60 - 1))
            return (last - timedelta(days=rng.randint(30, 90)), last)
        contacts: list[datetime] = []
        gap = rng.randint(3, 12)
        moment = start - timedelta(days=rng.randint(1, gap + 5))
        end = start + timedelta(days=self.days)
        while moment < end:
            contacts.append(moment.replace(hour=rng.randint(6, 19), minute=rng.randint(0, 59)))
            moment += timedelta(days=max(1, gap + rng.randint(-2, 3)))
        return tuple(contacts)

    def _with_churn(self, crm: list[_Company]) -> list[_Company]:
        """Pick ~15% of CRM companies and give each a churn day, one vanishing per day at most."""
        rng = random.Random(f"{self.seed}:churn")
        count = round(0.15 * len(crm))
        if count == 0 or self.days < 3:
            return crm
        chosen = rng.sample(range(len(crm)), count)
        # Churn starts spread evenly from day 1 (day 0 shows everyone healthy) to near the end.
        span = max(1, self.days - 4)
        starts = [1 + (span * k) // count for k in range(count)]
        rng.shuffle(starts)
        taken_exits: set[int] = set()
        result = list(crm)
        for index, start in sorted(zip(chosen, starts, strict=True), key=lambda pair: pair[1]):
            decay = rng.randint(3, 6)
            zeros = rng.randint(1, 3)  # at least one 0-user day: reach zero, then vanish
            # Stagger: if another company already vanishes that day, report zeros a day longer.
            while start + decay + zeros in taken_exits:
                zeros += 1
            taken_exits.add(start + decay + zeros)
            result[index] = replace(result[index], churn_start=start, decay_days=decay, zero_days=zeros)
        return result

    def _usage_for(self, company: _Company, day: date, offset: int) -> dict[str, Any] | None:
        exit_offset = company.exit_offset
        if exit_offset is not None and offset >= exit_offset:
            return None  # churned: no longer reported at all
        rng = random.Random(f"{self.seed}:{company.company_id}:{day.isoformat()}")
        level = company.engagement * (company.weekend_factor if day.weekday() >= 5 else 1.0)
        level *= (1.0 + company.trend) ** offset
        level *= max(0.0, rng.gauss(1.0, 0.12))
        if company.churn_start is not None and offset >= company.churn_start:
            # Linear decay: (d, d-1, ..., 1) / (d + 1), then 0 from churn_start + decay_days.
            remaining = company.churn_start + company.decay_days - offset
            level *= max(0, remaining) / (company.decay_days + 1)
        active = min(company.size, max(0, round(company.size * level)))
        events = round(active * company.events_per_user * rng.lognormvariate(0.0, 0.25)) if active else 0
        return {
            "company_id": company.company_id,
            "date": day.isoformat(),
            "active_users": active,
            "events": events,
        }

    def _contact_text(self, company: _Company, as_of: datetime) -> str:
        past = [moment for moment in company.contacts if moment < as_of]
        if not past:
            return ""
        last = past[-1]
        rng = random.Random(f"{self.seed}:{company.company_id}:{as_of.date().isoformat()}:style")
        style = rng.choices(_STYLES, weights=_STYLE_WEIGHTS)[0]
        if style == "date":
            return last.date().isoformat()  # UTC date
        if style == "z":
            return last.strftime("%Y-%m-%dT%H:%M:%SZ")
        if style == "millis":
            return last.strftime("%Y-%m-%dT%H:%M:%S.000+00:00")
        if style == "naive":
            return last.strftime("%Y-%m-%d %H:%M:%S")  # no offset means UTC
        return last.astimezone(_TZ[style]).isoformat()

    def _owner(self, company: _Company) -> str:
        rng = random.Random(f"{self.seed}:{company.company_id}:owner")
        # Some accounts have no owner: the extra column is not always filled.
        return "" if rng.random() < 0.15 else f"{rng.choice(_OWNERS)}@example.com"
