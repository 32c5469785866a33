"""`pilot run` and `pilot demo`: options in, a compiled plan, and the agent (pilot.agent.supervise)."""

from __future__ import annotations

import argparse
import logging
import os
from typing import Any

from pilot.cli.common import EXIT_USAGE, compile_for_run, err, load_plan, parse_broker, state_path

log = logging.getLogger("pilot")


def cmd_run(args: argparse.Namespace) -> int:
    from pilot.agent import logs
    from pilot.agent.supervise import options_from_env, run_agent

    logs.setup(args.log_format, args.log_level)
    if args.show_states:
        logging.getLogger("pilot.agent").setLevel(logging.DEBUG)
    state_dir = state_path(args.state_dir)
    try:
        options = options_from_env(
            os.environ,
            state_dir=state_dir,
            broker=args.broker,
            dry_run=args.dry_run,
            once=args.once,
            timeout=args.timeout,
            duration=args.duration,
            deploy_deadline=args.deploy_deadline,
        )
    except ValueError as exc:
        err(f"pilot: error: {exc}")
        return EXIT_USAGE
    plan, code = load_plan(args.profile, state_dir)
    if plan is None:
        return code
    if args.profile is None:
        log.info("no profile given: using %s (the pack that matches this machine)", plan.sources[0])
    profile = plan.sources[0] if args.profile is None else args.profile
    return run_agent(
        plan,
        options,
        recompile=lambda: compile_for_run(profile, state_dir),
        # a deploy compiles its candidate file the same way, and only ever replaces a profile named here
        compile_file=lambda path: compile_for_run(path, state_dir),
        profile_file=args.profile,
    )


def cmd_demo(args: argparse.Namespace) -> int:
    """The README's first command: run the agent for this machine, dry-run, on a trial broker."""
    return cmd_run(
        argparse.Namespace(
            profile=None,
            broker=None,
            state_dir=None,
            dry_run=True,
            once=False,
            timeout=15.0,
            duration=args.duration,
            show_states=True,
            log_format="text",
            log_level="info",
            deploy_deadline=20.0,
        )
    )


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.5 <= value <= 600:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds from 0.5 to 600")
    return value


def register(sub: Any) -> None:
    p = sub.add_parser("run", help="run the agent: telemetry, discovery and commands over MQTT")
    p.add_argument("profile", nargs="?", metavar="PROFILE", help="profile file; default: the matching shipped pack")
    p.add_argument("--broker", metavar="HOST:PORT", type=parse_broker, help="use this broker instead of the profile's")
    p.add_argument("--state-dir", metavar="DIR", help="where state is kept (default: XDG state dir or /var/lib/pilot)")
    p.add_argument("--dry-run", action="store_true", help="run every guard but never execute an action")
    p.add_argument("--once", action="store_true", help="publish discovery and one round of sensors, then exit")
    p.add_argument("--timeout", type=float, default=15.0, help="--once: how long to wait for the broker")
    p.add_argument("--duration", type=float, default=0, help=argparse.SUPPRESS)
    p.add_argument(
        "--deploy-deadline",
        type=_seconds,
        default=20.0,
        metavar="SECONDS",
        help="how long a deployed profile's new MQTT settings have to connect before it is rolled back (default 20)",
    )
    p.add_argument("--show-states", action="store_true", help="log every value as it is published")
    p.add_argument("--log-format", choices=["text", "json"], default="text")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default="info")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("demo", help="run the agent for this machine in dry-run on a local trial broker")
    p.add_argument("--duration", type=float, default=0, help="stop after this many seconds")
    p.set_defaults(func=cmd_demo)
