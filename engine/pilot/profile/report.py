"""Human-readable rendering of a compiled Plan for `pilot plan`."""

from __future__ import annotations

import json

from pilot.plan import Plan
from pilot.units import format_duration


def _guards(plan: Plan, cmd) -> str:
    parts = []
    allowed = plan.policy.allow is None or cmd.id in plan.policy.allow
    parts.append("allowed" if allowed else "NOT in allow list")
    if cmd.signed:
        parts.append("signed")
    if cmd.confirm:
        parts.append(f"confirm {format_duration(cmd.confirm)}")
    cooldown = cmd.cooldown or plan.policy.cooldown
    if cooldown:
        parts.append(f"cooldown {format_duration(cooldown)}")
    return ", ".join(parts)


def render_plan(plan: Plan) -> str:
    d = plan.device
    lines = [
        f"Profile {plan.profile} (hash {plan.profile_hash}) from {', '.join(plan.sources)}",
        f"Device  {d.name}  id={d.id}  {d.manufacturer or '?'} {d.model or ''}".rstrip(),
        f"Broker  {plan.mqtt.host or '(local trial broker)'}:{plan.mqtt.port}"
        f"{' TLS' if plan.mqtt.tls else ''}  client id {plan.mqtt.client_id}",
        f"Topics  availability {plan.topics.availability}",
        f"        discovery    {plan.topics.discovery} ({plan.mqtt.discovery})",
        "",
        f"Sensors ({len(plan.sensors)})",
    ]
    for s in plan.sensors:
        source = f"probe {s.probe}{' ' + json.dumps(s.args) if s.args else ''}" if s.probe else f"expr {s.expr!r}"
        unit = f" [{s.entity.unit_of_measurement}]" if s.entity.unit_of_measurement else ""
        extra = []
        if s.min_change is not None:
            extra.append(f"min_change {s.min_change}")
        if s.max_silence is not None:
            extra.append(f"max_silence {format_duration(s.max_silence)}")
        if s.optional:
            extra.append("optional")
        lines.append(
            f"  {s.entity.platform:<13} {s.id}{unit}: {source}, every {format_duration(s.every)}"
            + (f" ({', '.join(extra)})" if extra else "")
        )
        lines.append(f"  {'':<13} -> {s.state_topic}  unique_id {s.entity.unique_id}")
    lines.append(f"\nCommands ({len(plan.commands)})")
    for c in plan.commands:
        lines.append(f"  {c.entity.platform:<13} {c.id}: action {c.action}{' ' + json.dumps(c.args) if c.args else ''}")
        lines.append(f"  {'':<13} <- {c.command_topic}  guards: {_guards(plan, c)}")
    lines.append(f"\nRules ({len(plan.rules)})")
    for r in plan.rules:
        hold = f" for {format_duration(r.hold)}" if r.hold else ""
        extra = "".join(
            [
                f"; clear {r.clear!r}" if r.clear else "",
                f"; cooldown {format_duration(r.cooldown)}" if r.cooldown else "",
                f"; exposed as {r.entity.default_entity_id}" if r.entity else "",
            ]
        )
        lines.append(
            f"  {r.id}: when {r.when!r}{hold}{extra}; inputs: {', '.join(r.inputs) or '-'}; "
            f"{len(r.do)} step(s), {len(r.on_clear)} on clear"
        )
    lines.append(f"\nSchedules ({len(plan.schedules)})")
    for s in plan.schedules:
        from pilot.cron import next_fire_times

        when = (
            f"cron {s.cron!r}{' ' + s.timezone if s.timezone else ''}"
            if s.cron
            else f"every {format_duration(s.every or 0)}"
        )
        jitter = f" (jitter {format_duration(s.jitter)})" if s.jitter else ""
        upcoming = ", ".join(t.isoformat(timespec="minutes") for t in next_fire_times(s))
        lines.append(f"  {s.id}: {when}{jitter}; {len(s.do)} step(s); next: {upcoming}")
    if plan.children:
        lines.append(f"\nChildren ({len(plan.children)}): each instance its own device, under this one")
    for c in plan.children:
        optional = ", optional" if c.optional else ""
        lines.append(f"  {c.id}: {c.source} every {format_duration(c.every)}{optional}; topics {c.topic}/<key>/...")
        lines.append(f"    sensors: {', '.join(s.id for s in c.sensors) or '-'}")
        for cmd in c.commands:
            guards = [
                f"confirm {format_duration(cmd.confirm)}" if cmd.confirm else "",
                f"cooldown {format_duration(cmd.cooldown)}" if cmd.cooldown else "",
                "signed" if cmd.signed else "",
            ]
            allowed = plan.policy.allow is None or cmd.policy_id in plan.policy.allow
            shown = "; ".join(g for g in guards if g) or "no extra guard"
            lines.append(f"    command {cmd.policy_id}: {shown}{'' if allowed else ' (not in policies.allow)'}")
    p = plan.policy
    lines.append("\nPolicy")
    lines.append(f"  allow: {', '.join(p.allow) if p.allow is not None else 'every declared command'}")
    lines.append(
        f"  default cooldown {format_duration(p.cooldown)}, max payload {p.max_payload} B"
        + (f", keyring {p.keyring} (window {format_duration(p.window)})" if p.keyring else "")
        + (f", rate limit {p.rate_max}/{format_duration(p.rate_per or 0)}" if p.rate_max else "")
    )
    return "\n".join(lines)
