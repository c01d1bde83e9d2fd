"""Shared benchmark helpers: timing, peak memory, results files."""

from __future__ import annotations

import json
import platform
import resource
import time
from collections.abc import Callable
from contextlib import contextmanager
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


def line(label: str, value: str) -> None:
    print(f"  {label:<52} {value}")
