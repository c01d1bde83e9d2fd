"""Benchmark 8: start-up of a command that does nothing, `python -m shared.cli status` on an
empty data folder, against the interpreter alone (`python -c pass`), in the same run.

    .venv/bin/python benchmarks/bench_startup.py [--repeats 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks._common import Targets, compile_project, line, save  # noqa: E402


def wall(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, env=env, cwd=REPO, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    compile_project()
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        env = {**os.environ, "PYTHONPATH": str(REPO), "LOCAL_DATA_DIR": str(Path(tmp) / "empty")}
        status, bare = [], []
        for _ in range(args.repeats):  # alternating, so both see the same machine
            bare.append(wall([sys.executable, "-c", "pass"], env))
            status.append(wall([sys.executable, "-m", "shared.cli", "status"], env))
    status_s, bare_s = statistics.median(status), statistics.median(bare)
    print(f"Benchmark 8: start-up, median of {args.repeats}")
    line("python -c pass (baseline)", f"{bare_s:.3f} s")
    targets = Targets()
    targets.at_most(
        "status on an empty folder, s",
        status_s,
        0.3,
        f"{status_s:.3f} s ({status_s - bare_s:.3f} s over the baseline)",
    )
    save(
        "startup",
        {"repeats": args.repeats, "status_s": status_s, "interpreter_s": bare_s, "targets": targets.checked},
    )
    return targets.exit_status


if __name__ == "__main__":
    sys.exit(main())
