"""Whole-process measurements: wall time, CPU seconds and peak RSS of a child."""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class Run:
    wall: float
    cpu: float
    max_rss_mb: float
    returncode: int
    stdout: str


def run(argv: list[str], *, env: dict | None = None, cwd: str | None = None) -> Run:
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    out = proc.stdout.read() if proc.stdout else b""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Run(
        wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, proc.returncode, out.decode(errors="replace")
    )


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]

    return {"p50": statistics.median(ordered), "p90": pct(90), "p99": pct(99), "min": ordered[0], "max": ordered[-1]}


def finish(
    result: dict, load_before: float, work: Any, keep: bool, as_json: bool, printer: Callable[[dict], None]
) -> int:
    """The common tail of a whole-process benchmark: clean up, note the machine, print."""
    import json
    import shutil
    import sys

    if keep:
        print(f"work directory kept: {work}", file=sys.stderr)
    else:
        shutil.rmtree(work, ignore_errors=True)
    result["notes"].append(
        f"machine: {os.cpu_count()} CPUs, 1-min load average {load_before:.2f} at start, "
        f"{os.getloadavg()[0]:.2f} at end (other work on the machine skews latencies)"
    )
    if as_json:
        print(json.dumps(result, indent=2, default=str))
    else:
        printer(result)
    return 0


def table(rows: list[tuple], headers: tuple) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    line = lambda r: "  ".join(str(v).ljust(w) for v, w in zip(r, widths))
    return "\n".join([line(headers), line(tuple("-" * w for w in widths))] + [line(r) for r in rows])


def wait_for_console(console: Any, base: str, timeout: float = 30) -> None:
    """Waits until a started `pilot console run` answers /healthz with its broker connected, so a benchmark
    measures a console at work, not one still starting; raises with the console's last output otherwise."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not console.running():
            raise RuntimeError(f"the console exited: {console.tail(2000)}")
        try:
            if httpx.get(base + "/healthz", timeout=2).json().get("broker"):
                return
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the console did not answer /healthz with the broker connected: {console.tail(2000)}")
