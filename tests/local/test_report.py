"""The HTML report: built from the golden world, checked as text, then rendered in headless Chromium."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from shared.config import Settings
from shared.local.pipeline import LocalPipeline
from shared.local.report import TOP_AT_RISK, render_report, write_report
from tests.support import GOLDEN, read_table

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")  # CI on GitHub points it at google-chrome
LATEST = "2026-10-10"
# Anything that would make the page fetch something: it must open offline.
REMOTE = re.compile(r"""(?:src|href|action)\s*=\s*["']?\s*(?:https?:)?//|url\(|@import|<script|<link""", re.I)


def build_golden_world(cli: Callable[..., tuple[int, str, str]]) -> None:
    for path in GOLDEN.crm_files():
        code, _out, err = cli("crm-drop", str(path))
        assert code == 0, err
    code, out, err = cli("backfill", "--from", "2026-10-01", "--to", LATEST)
    assert code == 0, err
    assert out.count(" built ") == 10, out


def render(path: Path | None = None) -> str:
    pipeline = LocalPipeline(Settings.from_env())
    try:
        if path is not None:
            write_report(pipeline.services, path)
        return render_report(pipeline.services)
    finally:
        pipeline.close()


def test_report_on_the_golden_world(cli, local_env: Path, tmp_path: Path) -> None:
    build_golden_world(cli)
    # Expected values straight from the table, before the pipeline opens the warehouse again.
    risk = read_table(
        local_env,
        "SELECT COUNT(*) AS n FROM analytics.company_daily_activity "  # noqa: S608 - a constant
        f"WHERE activity_date = DATE '{LATEST}' AND is_churn_risk",
    )[0]["n"]
    latest = read_table(
        local_env,
        "SELECT SUM(active_users) AS users, SUM(rolling_7d_active_users) AS rolling, COUNT(*) AS companies "  # noqa: S608
        f"FROM analytics.company_daily_activity WHERE activity_date = DATE '{LATEST}'",
    )[0]
    quoted = read_table(
        local_env,
        "SELECT company_name FROM analytics.company_daily_activity "  # noqa: S608
        f"WHERE activity_date = DATE '{LATEST}' AND is_churn_risk AND company_name LIKE '%\"%' LIMIT 1",
    )
    assert risk > 0 and quoted, "the golden world has at-risk companies, one with a quote in its name"

    page = render(tmp_path / "report.html")

    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert f"Most at risk on {LATEST} (top {min(20, risk)} of {risk})" in page
    assert f"<b>{risk:,}</b><span>at churn risk</span>" in page
    assert f"<b>{latest['users']:,}</b><span>active users</span>" in page
    assert f"<b>{latest['rolling']:,}</b><span>rolling 7-day active user-days</span>" in page
    assert f"<b>{latest['companies']:,}</b><span>companies</span>" in page
    # Four charts, each with its axis titles: daily users, rolling user-days, churn, weeks.
    assert page.count("<svg") == 4 and page.count("<rect") == 10 + 2  # a bar per built day, per ISO week
    for title in ("active users", "user-days", "companies", "day (UTC)", "ISO week (* partial)"):
        assert f">{title}</text>" in page, title
    # The golden days 2026-10-01..06 observed fewer than 7 days of usage: hollow points on the
    # rolling chart, light bars and a note on the churn chart.
    short = ", ".join(f"2026-10-0{d}" for d in range(1, 7))
    assert f"observed fewer than 7 days of usage ({short})" in page
    rolling = page[page.index("<h2>Rolling 7-day active user-days") : page.index("<h2>Churn-risk")]
    assert rolling.count('fill="#fff" stroke="#f59e0b"') == 6
    churn = page[page.index("<h2>Churn-risk") : page.index("<h2>Weekly trend")]
    assert churn.count('fill="#fca5a5"') == 6 and churn.count('fill="#dc2626"') == 4
    assert "of the flags counted here fall on days with fewer than 7 days of usage observed" in churn
    weeks = page[page.index("<h2>Weekly trend") : page.index("<h2>Most at risk")]
    assert ">W40*</text>" in weeks and ">W41*</text>" in weeks  # both partial in the golden world
    snapshots = page[page.index("<h2>CRM snapshots") : page.index("<h2>Quarantine")]
    assert snapshots.count("<tr>") == 1 + 8 and "companies_2026-10-01.csv" in snapshots
    assert page.count("<tr>", page.index("Most at risk"), page.index("Data freshness")) == min(20, risk) + 1
    # Names are escaped: `The "Best" Co` appears only as &quot;.
    name = quoted[0]["company_name"]
    assert name.replace('"', "&quot;") in page and name not in page
    assert "2026-10-10" in page[page.index("Data freshness") :]  # latest built day and CRM snapshot
    # Quarantine: the golden world rejects 6 usage records and 10 CRM rows (test_golden).
    quarantine = page[page.index("<h2>Quarantine") : page.index("Recent alerts")]
    counts = [int(n) for n in re.findall(r'<td class="n">(\d+)</td>', quarantine)]
    assert sum(counts) == 16, quarantine
    assert not REMOTE.search(page), REMOTE.search(page)
    assert (tmp_path / "report.html").read_text(encoding="utf-8") == page
    # The rules in force, and that every day was built under them.
    assert "= 10/30/7): churn risk: no activity in 7 days, or under 10 user-days" in page
    assert "Every day was built under them." in page

    screenshot(tmp_path / "report.html", tmp_path)


def test_report_on_an_empty_warehouse(local_env: Path) -> None:
    page = render()
    assert "No data yet" in page
    assert "<svg" not in page and not REMOTE.search(page)


# --- headless Chromium ---------------------------------------------------------------------------


def screenshot(html_file: Path, tmp_path: Path) -> Path:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} not found: CI must render the report (make test installs it)")
        pytest.skip(f"{CHROMIUM} not found; the report was checked as text only")
    png = tmp_path / "report.png"
    subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            f"--screenshot={png}",
            "--window-size=1280,3200",
            f"file://{html_file}",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert png.is_file() and png.stat().st_size > 20_000
    width, height, pixels = read_png(png)
    assert (width, height) == (1280, 3200)
    colours = {pixels(x, y) for x in range(0, width, 40) for y in range(0, height, 40)}
    assert len(colours) > 5, colours  # not a blank page
    # The charts were drawn: some sampled pixel has the bar colour, some the line colour.
    every = {pixels(x, y) for x in range(0, width, 2) for y in range(0, 2400, 2)}
    assert (220, 38, 38) in every, "no churn-risk bar in the screenshot"
    assert (37, 99, 235) in every, "no active-users line in the screenshot"
    assert (245, 158, 11) in every, "no rolling line in the screenshot"
    assert (13, 148, 136) in every, "no weekly bar in the screenshot"
    if keep := os.environ.get("REPORT_SCREENSHOT"):  # docs/report.png is made this way
        shutil.copyfile(png, keep)
    return png


def read_png(path: Path) -> tuple[int, int, Callable[[int, int], tuple[int, int, int]]]:
    """A minimal decoder for 8-bit RGB/RGBA PNGs (what Chromium writes): size and a pixel reader."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    height = depth = colour_type = 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        chunk = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour_type = struct.unpack(">IIBB", chunk[:10])
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    assert depth == 8 and colour_type in (2, 6), (depth, colour_type)
    bpp = 3 if colour_type == 2 else 4
    raw, stride = zlib.decompress(idat), width * bpp
    rows: list[bytearray] = []
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        if kind == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif kind == 2:
            line = bytearray((a + b) & 0xFF for a, b in zip(line, previous, strict=True))
        elif kind == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + previous[i]) >> 1)) & 0xFF
        elif kind == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b, c = previous[i], previous[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append(line)
        previous = line

    def pixel(x: int, y: int) -> tuple[int, int, int]:
        offset = x * bpp
        return tuple(rows[y][offset : offset + 3])  # type: ignore[return-value]

    return width, height, pixel


def test_a_null_flag_is_cannot_tell_never_at_risk(cli, local_env: Path, api_records) -> None:  # type: ignore[no-untyped-def]
    """Issue 22: c-010021's record of the latest day is refused: the rule would flag it, its flag is
    NULL. The at-risk list and counts leave it out; the report says how many cannot be told, per
    day and on the latest day, and the charts still draw with NULL usage in the sums."""
    refused = "c-010021"  # 1 user on 2026-10-10, flagged by the rule in the golden table
    api_records[LATEST] = [
        {**r, "active_users": "1"} if r["company_id"] == refused else r for r in api_records[LATEST]
    ]
    build_golden_world(cli)
    [row] = read_table(
        local_env,
        "SELECT active_users, is_churn_risk FROM analytics.company_daily_activity "  # noqa: S608 - constants
        f"WHERE activity_date = DATE '{LATEST}' AND company_id = '{refused}'",
    )
    assert row == {"active_users": None, "is_churn_risk": None}
    risk = read_table(
        local_env,
        "SELECT COUNT(*) AS n FROM analytics.company_daily_activity "  # noqa: S608 - a constant
        f"WHERE activity_date = DATE '{LATEST}' AND is_churn_risk",
    )[0]["n"]
    assert risk == 14  # the golden 15, less the one that cannot be told
    html = render()
    assert f"Most at risk on {LATEST} (top {min(TOP_AT_RISK, 14)} of 14)" in html
    assert f"<td>{refused}</td>" not in html
    assert "<b>1</b><span>cannot tell (usage refused)</span>" in html
    assert "<b>1 company cannot be told</b> on this day and are not in the list" in html
    assert f"Cannot tell, not counted in the bars ({LATEST}: 1)" in html
    assert "Company-days with unknown usage: 1." in html
    assert "<svg" in html and "NaN" not in html and "None" not in html
