"""Rules: evaluation cost per rule, and the agent's CPU share with 200 rules over 100 sensors.

Targets (issue "Rules and schedules"): p99 <= 50 us to evaluate a typical rule; <= 10 % of one
core for the whole agent with 200 rules over 100 sensors read every second. The whole-process
figure is measured twice, with and without the rules, so the rules' own share is visible.
Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "engine"), str(REPO)]

from bench._proc import summary, table  # noqa: E402
from bench.agent import cpu_seconds  # noqa: E402  (the whole process tree)

TYPICAL = ("cpu > 80 and temp > 70", "temp < 60")


def per_rule_cost(iterations: int) -> dict:
    from pilot.agent.evaluator import Evaluator, History
    from pilot.agent.rules import RuleEngine
    from pilot.plan import Rule

    rule = Rule(id="hot", when=TYPICAL[0], clear=TYPICAL[1], hold=0, do=(), inputs=("cpu", "temp"))
    eng = RuleEngine((rule,), Evaluator(History({})), lambda r: None, lambda r: None)
    rng = random.Random(1)
    samples = []
    for _ in range(iterations):
        values = {"cpu": rng.uniform(0, 100), "temp": rng.uniform(30, 100)}
        start = time.perf_counter_ns()
        eng.on_change(["cpu"], values)
        samples.append((time.perf_counter_ns() - start) / 1000)
    return summary(samples)


def write_profile(path: Path, sensors: int, rules: int) -> None:
    lines = ["pilot: 1", "device: {id: benchrules, name: Bench rules}", "sensors:"]
    for i in range(sensors):
        lines.append(f"  s{i}: {{probe: system.uptime, every: 1s, precision: 0}}")
    if rules:
        lines.append("rules:")
        rng = random.Random(2)
        for r in range(rules):
            a, b = rng.randrange(sensors), rng.randrange(sensors)
            lines.append(
                f'  r{r}: {{when: "s{a} % {rng.randint(2, 9)} == 0 and s{b} > 10", '
                f'clear: "s{a} % 2 == 1", do: [{{publish: {{topic: "~/r{r}", payload: "{{s{a}}}"}}}}]}}'
            )
    path.write_text("\n".join(lines) + "\n")


def agent_cpu_share(rules: int, window: float) -> dict:
    from testkit.agent import pilot_run, rss_kb
    from testkit.broker import Mosquitto

    broker = Mosquitto().start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            profile = Path(tmp) / "p.yaml"
            write_profile(profile, 100, rules)
            # benchmarks run as root in CI: pilot_run() sets PILOT_ALLOW_ROOT=1, or the agent would refuse root
            agent = pilot_run(profile, broker.port, Path(tmp) / "state", log=Path(tmp) / "agent.log").start()
            try:
                time.sleep(5)  # compile, connect, first rounds
                if not agent.running():
                    raise RuntimeError(f"the agent exited: {agent.tail(2000)}")
                before, t0 = cpu_seconds(agent.pid), time.monotonic()
                time.sleep(window)
                used, elapsed = cpu_seconds(agent.pid) - before, time.monotonic() - t0
                rss = rss_kb(agent.pid)
            finally:
                agent.stop()
    finally:
        broker.cleanup()
    return {"cpu_percent": 100 * used / elapsed, "rss_mb": rss / 1024}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iterations", type=int, default=20000)
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    cost = per_rule_cost(args.iterations)
    with_rules = agent_cpu_share(200, args.window)
    without = agent_cpu_share(0, args.window)
    result = {"rule_eval_us": cost, "agent_200_rules": with_rules, "agent_no_rules": without}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(
        table(
            [("typical rule, one evaluation", f"{cost['p50']:.1f} us", f"{cost['p99']:.1f} us", "p99 <= 50 us")],
            ("case", "p50", "p99", "target"),
        )
    )
    print()
    print(
        table(
            [
                (
                    "100 sensors + 200 rules at 1 s",
                    f"{with_rules['cpu_percent']:.1f} %",
                    f"{with_rules['rss_mb']:.1f}",
                    "<= 10 % of one core",
                ),
                ("100 sensors, no rules", f"{without['cpu_percent']:.1f} %", f"{without['rss_mb']:.1f}", ""),
            ],
            ("agent", "CPU", "RSS MB", "target"),
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
