"""The profile a live deploy rig runs and replaces: a comment a deploy must keep, a secret a
`_profile/get` must redact, and the keyring that signs deploys (agent and console deploy tests)."""

from __future__ import annotations

from pathlib import Path


def deploy_profile(device: str, name: str, keyring: Path, port: int, sensors: str = "") -> str:
    """`sensors` (indented lines) follow the uptime sensor; `port` is the broker's on 127.0.0.1."""
    return (
        "pilot: 1\n"
        f"device: {{id: {device}, name: {name}}}\n"
        f"mqtt: {{host: 127.0.0.1, port: {port}}}\n"
        "# a comment the deploy must keep\n"
        "sensors:\n"
        "  up: {probe: system.uptime, every: 30s}\n"
        f"{sensors}"
        "commands:\n"
        "  backup: {action: process.run, platform: button,\n"
        "           args: {argv: [/bin/echo, backup], env: {API_TOKEN: t0ps3cret-value}}}\n"
        f"policies:\n  hmac: {{keyring: {keyring}, window: 60s}}\n"
    )
