"""Shared benchmark helpers: timing, peak memory, results files."""

from __future__ import annotations

import compileall
import json
import os
import platform
import resource
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

RESULTS = Path(__file__).resolve().parent / "results"
T = TypeVar("T")


def timed(work: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    result = work()
    return result, time.perf_counter() - start


@contextmanager
def stopwatch() -> Any:
    box: dict[str, float] = {}
    start = time.perf_counter()
    yield box
    box["s"] = time.perf_counter() - start


def peak_rss_mb(children: bool = False) -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF)
    return usage.ru_maxrss / 1024  # kilobytes on Linux


def save(name: str, payload: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"machine": f"{platform.machine()} {platform.processor() or ''}".strip(), **payload}
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=1, default=str) + "\n")


def compile_project() -> None:
    """Our modules in bytecode, as they are after a user's first run, so a timed child does not
    compile them from source (PYTHONDONTWRITEBYTECODE=1 would make every child do it, about 0.07
    s a run; installed packages, dlt's included, were compiled by pip)."""
    repo = RESULTS.parents[1]
    for folder in ("shared", "functions"):
        compileall.compile_dir(repo / folder, quiet=1)
    compileall.compile_file(repo / "function_app.py", quiet=1)


def line(label: str, value: str) -> None:
    print(f"  {label:<52} {value}")


@dataclass(frozen=True)
class ChildRun:
    """One timed child: wall time, the CPU time it and the children it waited for used (user +
    system: what a busy machine stretches far less than wall time), peak RSS and its output."""

    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    printed: str


def measure_child(command: list[str], env: dict[str, str], cwd: Path) -> ChildRun:
    """Run `command` in its own process, measured by wait4() of exactly that child (a simulator
    in another process is in none of its figures); its output goes through a file (a full pipe
    would stall it). A non-zero exit stops the benchmark with that output."""
    with tempfile.TemporaryFile() as printed:
        start = time.perf_counter()
        child = subprocess.Popen(command, env=env, cwd=cwd, stdout=printed, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        printed.seek(0)
        out = printed.read().decode(errors="replace")
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(command[:5])} failed:\n{out[-3000:]}")
    return ChildRun(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, out)


def median_of(runs: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(run[key] for run in runs))


def pair_ratios(ours: list[dict[str, Any]], other: list[dict[str, Any]]) -> str:
    """Each alternating pair's ours / other, wall time then CPU time: how far the load moved them."""

    def ratios(key: str) -> str:
        return ", ".join(f"{a[key] / b[key]:.2f}" for a, b in zip(ours, other, strict=True))

    return f"{ratios('wall_s')} (CPU {ratios('cpu_s')})"


def run_child(command: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, str]:
    """`measure_child`'s wall time, peak RSS in MB and output."""
    run = measure_child(command, env, cwd)
    return run.wall_s, run.peak_rss_mb, run.printed


@dataclass
class Targets:
    """A benchmark's targets, each checked on its figure: the line says whether it is met, the
    results file keeps every verdict, and the exit status is 1 when one is missed (`make bench`
    goes on to the next script)."""

    checked: list[dict[str, Any]] = field(default_factory=list)

    def at_most(self, what: str, value: float, limit: float, shown: str) -> None:
        self._check(what, value, limit, value <= limit, f"<= {limit:g}", shown)

    def at_least(self, what: str, value: float, limit: float, shown: str) -> None:
        self._check(what, value, limit, value >= limit, f">= {limit:g}", shown)

    def _check(self, what: str, value: float, limit: float, met: bool, target: str, shown: str) -> None:
        self.checked.append(asdict(_Checked(what, value, limit, target, met)))
        line(f"{what} (target {target})", f"{shown}  {'met' if met else 'NOT MET'}")

    @property
    def exit_status(self) -> int:
        return 0 if all(c["met"] for c in self.checked) else 1


@dataclass(frozen=True)
class _Checked:
    what: str
    value: float
    limit: float
    target: str
    met: bool
