"""How fast `pilot validate` is as a whole process, interpreter start included.

Targets (issue "Profiles, probes and `pilot validate`"): one profile <= 0.5 s
wall; 200 profiles <= 4 s; the 340-byte alias bomb rejected <= 0.1 s. The
alias bomb is timed in-process (load_text), because interpreter start alone
costs more than 0.1 s. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _proc import run, summary, table  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PROBES = [
    "cpu.percent",
    "cpu.load",
    "memory.used_percent",
    "swap.used_percent",
    "disk.used_percent",
    "net.recv_rate",
    "net.send_rate",
    "system.uptime",
    "thermal.cpu",
    "system.processes",
]

BOMB = (
    b'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    b"b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
    b"d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
    b"f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n"
)


def generated_profile(i: int) -> str:
    lines = ["pilot: 1", "extends: [base/linux]", f"device: {{name: Bench machine {i}}}", "sensors:"]
    for j in range(20):
        probe = PROBES[(i + j) % len(PROBES)]
        lines.append(
            f"  s{j}: {{probe: {probe}, every: {10 + j}s, optional: true, publish: {{min_change: 1, max_silence: 5m}}}}"
        )
    lines.append('  hot: {expr: "s0 > 90 or s1 > 5", platform: binary_sensor, device_class: heat}')
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    pilot = [sys.executable, "-m", "pilot"]
    env = {**os.environ, "PYTHONPATH": str(REPO / "engine")}
    with tempfile.TemporaryDirectory() as tmp:
        one = Path(tmp) / "one.yaml"
        one.write_text(generated_profile(0))
        many = Path(tmp) / "many"
        many.mkdir()
        for i in range(200):
            (many / f"p{i:03}.yaml").write_text(generated_profile(i))
        results = {}
        for name, argv in (
            ("1 profile", pilot + ["validate", str(one)]),
            ("200 profiles", pilot + ["validate", str(many)]),
            ("interpreter only", [sys.executable, "-c", "pass"]),
        ):
            runs = [run(argv, env=env) for _ in range(args.repeat)]
            bad = [r for r in runs if r.returncode != 0]
            if bad:
                print(f"{name}: pilot validate failed:\n{bad[0].stdout}", file=sys.stderr)
                return 1
            results[name] = {
                "wall": summary([r.wall for r in runs]),
                "cpu": summary([r.cpu for r in runs]),
                "max_rss_mb": max(r.max_rss_mb for r in runs),
            }
    sys.path.insert(0, str(REPO / "engine"))
    from pilot.profile.loader import load_text

    load_text("warm.yaml", b"a: 1\n")
    bomb_times = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        doc, diags = load_text("bomb.yaml", BOMB)
        bomb_times.append(time.perf_counter() - t)
        assert doc is None and diags, "the alias bomb must be rejected"
    results["alias bomb (in-process)"] = {"wall": summary(bomb_times), "bytes": len(BOMB)}
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    targets = {"1 profile": "<= 0.5 s", "200 profiles": "<= 4 s", "alias bomb (in-process)": "<= 0.1 s"}
    rows = []
    for name, r in results.items():
        rows.append(
            (
                name,
                f"{r['wall']['p50']:.3f}",
                f"{r['wall']['p90']:.3f}",
                f"{r['cpu']['p50']:.3f}" if "cpu" in r else "-",
                f"{r['max_rss_mb']:.1f}" if "max_rss_mb" in r else "-",
                targets.get(name, ""),
            )
        )
    print(table(rows, ("case", "wall p50 s", "wall p90 s", "cpu p50 s", "peak RSS MB", "target")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
