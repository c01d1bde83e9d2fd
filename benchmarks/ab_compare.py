"""A/B of two code trees on one case of the dlt benchmark, or a profile of one run.

Each change of issue 24 is measured with this: the tree before the change (`git archive` of a
commit into a folder) and this tree run the same `run`/`backfill`, alternating, against one
simulator in a third process; every pair's ratio is printed. `--profile` runs this tree once
under cProfile and prints the top of the profile instead.

    git archive HEAD~1 | tar -x -C /tmp/base
    .venv/bin/python benchmarks/ab_compare.py --case backfill-30d-20k-0ms --base /tmp/base --pairs 3
    .venv/bin/python benchmarks/ab_compare.py --case day-100k-0ms --profile /tmp/day.prof
    .venv/bin/python benchmarks/ab_compare.py --case day-100k-0ms --statements
"""

from __future__ import annotations

import argparse
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks._common import compile_project, run_child  # noqa: E402
from benchmarks.bench_peer_dlt import CASES, FIRST_DAY, KEY, PAGE_SIZE, Case, Simulator  # noqa: E402
from benchmarks.bench_scale import snapshots_for  # noqa: E402

PYTHON = str(REPO / ".venv" / "bin" / "python")
TIMING = REPO / "benchmarks" / "statement_timing.py"


def command_of(case: Case) -> list[str]:
    if case.days == 1:
        return ["run", "--date", FIRST_DAY.isoformat()]
    return ["backfill", "--from", FIRST_DAY.isoformat(), "--to", case.last_day.isoformat()]


def timed_child(command: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """Wall time and CPU time (user + system, DuckDB's threads included) of one child: on a
    machine other work loads, the CPU time is the steadier figure of what a change saves."""
    start = time.perf_counter()
    child = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command[:5])} failed in {cwd}")
    return time.perf_counter() - start, usage.ru_utime + usage.ru_stime


def run_tree(
    tree: Path, case: Case, api: str, snapshots: list[Path], work: Path, how: str = ""
) -> tuple[float, float]:
    env = {
        **os.environ,
        "PYTHONPATH": str(tree),
        "LOCAL_DATA_DIR": str(work),
        "USAGE_API_BASE_URL": api,
        "USAGE_API_KEY": KEY,
        "USAGE_API_PAGE_SIZE": str(PAGE_SIZE),
    }
    for snapshot in snapshots:
        run_child([PYTHON, "-m", "shared.cli", "crm-drop", str(snapshot)], env, tree)
    if how == "statements":  # every DuckDB statement timed, printed by the child
        wall, _, out = run_child([PYTHON, str(TIMING), *command_of(case)], env, tree)
        print(out[out.find("wall in process") :])
        return wall, 0.0
    profiler = ["-m", "cProfile", "-o", how] if how else []
    return timed_child([PYTHON, *profiler, "-m", "shared.cli", *command_of(case)], env, tree)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--case", default="backfill-30d-20k-0ms", choices=sorted(CASES))
    parser.add_argument("--base", type=Path, help="the tree before the change")
    parser.add_argument(
        "--this", type=Path, default=REPO, help="the tree after the change (default: this one)"
    )
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--profile", help="profile one run of this tree into this file")
    parser.add_argument("--statements", action="store_true", help="time every DuckDB statement of one run")
    args = parser.parse_args()
    case = CASES[args.case]
    compile_project()
    with tempfile.TemporaryDirectory(prefix="bench-ab-") as tmp:
        snapshots = snapshots_for(case, Path(tmp) / "crm")
        api = Simulator(case)
        try:
            if args.statements:
                wall, _ = run_tree(REPO, case, api.base_url, snapshots, Path(tmp) / "s", "statements")
                print(f"{case.name}: {wall:.2f} s, load {os.getloadavg()[0]:.1f}")
                return 0
            if args.profile:
                wall, _ = run_tree(REPO, case, api.base_url, snapshots, Path(tmp) / "p", args.profile)
                print(f"{case.name}: {wall:.2f} s under the profiler, load {os.getloadavg()[0]:.1f}")
                pstats.Stats(args.profile).sort_stats("cumulative").print_stats(45)
                return 0
            return ab(case, (args.base, args.this), args.pairs, api.base_url, snapshots, Path(tmp))
        finally:
            api.stop()


def ab(
    case: Case, trees_ab: tuple[Path, Path], pairs: int, api: str, snapshots: list[Path], tmp: Path
) -> int:
    runs: dict[str, list[tuple[float, float]]] = {"base": [], "this": []}
    trees = dict(zip(("base", "this"), trees_ab, strict=True))
    for n in range(pairs):
        order: Any = ("base", "this") if n % 2 == 0 else ("this", "base")
        for who in order:
            runs[who].append(run_tree(trees[who], case, api, snapshots, tmp / f"{who}-{n}"))
        (base_wall, base_cpu), (this_wall, this_cpu) = runs["base"][-1], runs["this"][-1]
        print(
            f"pair {n}: wall base {base_wall:.2f} s, this {this_wall:.2f} s ({this_wall / base_wall:.3f});"
            f" CPU base {base_cpu:.2f} s, this {this_cpu:.2f} s ({this_cpu / base_cpu:.3f});"
            f" load {os.getloadavg()[0]:.1f}"
        )
    for i, what in enumerate(("wall", "CPU")):
        base_s = statistics.median(r[i] for r in runs["base"])
        this_s = statistics.median(r[i] for r in runs["this"])
        print(
            f"{case.name}: median {what} base {base_s:.2f} s, this {this_s:.2f} s, ratio {this_s / base_s:.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
