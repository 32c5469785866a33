"""`pilot forget PROFILE`: remove this device from Home Assistant (pilot.agent.forget does the work)."""

from __future__ import annotations

import argparse
from typing import Any

from pilot.cli.common import EXIT_INVALID, EXIT_OK, EXIT_USAGE, err, load_plan, out, parse_broker, state_path


def cmd_forget(args: argparse.Namespace) -> int:
    from pilot.agent.forget import ForgetError, forget
    from pilot.agent.state import StateDir

    state_dir = state_path(args.state_dir)
    plan, code = load_plan(args.profile, state_dir)
    if plan is None:
        return code
    if args.broker:
        host, port = args.broker[0], args.broker[1] or plan.mqtt.port or 1883
    elif plan.mqtt.host:
        host, port = plan.mqtt.host, plan.mqtt.port or 1883
    else:
        err("pilot: error: the profile names no broker (`mqtt.host`); give --broker HOST:PORT")
        return EXIT_USAGE
    try:
        report = forget(plan, host, port, StateDir(state_dir), timeout=args.timeout, apply=not args.dry_run)
    except ForgetError as exc:
        err(f"pilot: error: {exc}")
        err("pilot: nothing was cleared")
        return EXIT_INVALID
    for text in report.warnings:
        err(f"pilot: warning: {text}")
    verb = "would clear" if args.dry_run else "cleared"
    out(f"Device {report.device_id} on {report.broker}: {verb} {len(report.cleared)} retained message(s)")
    out(f"  discovery ({report.source}):")
    for topic in report.discovery:
        out(f"    {topic}")
    if not report.discovery:
        out("    (none was retained: Home Assistant had no discovery message for this device)")
    if report.absent:
        out(f"    and emptied {len(report.absent)} expected discovery topic(s) that held nothing")
    out("  states, availability, capabilities, health:")
    for topic in report.retained:
        out(f"    {topic}")
    if not report.retained:
        out("    (none)")
    if not args.dry_run:
        out(f"  {plan.topics.availability}: set `offline`, then emptied")
    for text in report.notes:
        out(f"  {text}")
    if args.dry_run:
        out("Nothing was published (--dry-run).")
    else:
        out("Home Assistant removes the device and its entities now (its history stays in its database).")
    return EXIT_OK


def register(sub: Any) -> None:
    p = sub.add_parser("forget", help="remove this device from Home Assistant: empty its retained MQTT messages")
    p.add_argument("profile", metavar="PROFILE")
    p.add_argument("--broker", metavar="HOST:PORT", type=parse_broker, help="use this broker instead of the profile's")
    p.add_argument("--state-dir", metavar="DIR", help="where the agent keeps its state (its discovery record)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the broker (default 10)")
    p.add_argument("--dry-run", action="store_true", help="list what would be cleared; publish nothing")
    p.set_defaults(func=cmd_forget)
