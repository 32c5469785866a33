"""The agent: a Plan, an MQTT session, and the parts that run the plan.

One ticker job per distinct sensor interval, so the process wakes only as
often as its sensors need. Everything Home Assistant must know (discovery,
availability, capabilities, current states) is republished on every connect
and after Home Assistant's own birth message, because a broker restarted with
SIGKILL or a restarted Home Assistant has forgotten it. A reload swaps the
plan-level parts (sensors, commands, rules, schedules) without dropping the
MQTT connection.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from pilot import __version__
from pilot.actions._base import RecordingSystem, System, system_from_env
from pilot.agent import ha
from pilot.agent.deploy import MAX_DEPLOY_BYTES
from pilot.agent.health import MAX_REPORT_BYTES, Health
from pilot.agent.health import encode as encode_health
from pilot.agent.health import entities as health_entities
from pilot.agent.mqtt import Session, Will
from pilot.agent.policy import check_allowed
from pilot.agent.rules import RuleEngine
from pilot.agent.sensorset import SensorSet
from pilot.agent.state import StateDir
from pilot.agent.steps import StepRunner
from pilot.agent.ticker import Ticker
from pilot.escaping import escape
from pilot.naming import words
from pilot.plan import Command, Plan, Rule, Schedule
from pilot.probes import ProbeContext
from pilot.registry import PROBES

if TYPE_CHECKING:
    from pilot.agent.children import Children
    from pilot.agent.commands import CommandService, Guards
    from pilot.agent.schedules import Scheduler

log = logging.getLogger("pilot.agent")

HA_DEBOUNCE = 10.0  # at most one re-announcement burst per this many seconds
HA_DELAY = (1.0, 4.0)  # random delay after Home Assistant's birth message
HEALTH_EVERY = 30.0  # seconds between health reports
MAX_CHILD_COMMAND_TOPIC = len("/") + 64 + len("/") + 64 + len("/cmd/") + 64 + len("/set")  # set id, key, command id
CHILDREN_RECORD = "children.json"  # the child devices announced, per set: removed when they vanish
MAX_COMMAND_ID = 64  # the profile schema's longest id; a longer one on a command topic is dropped unread
MAX_STATUS_BYTES = 16  # Home Assistant's birth message is `online`
ACTIVITY_EVERY = 5.0  # seconds: `<base>/activity` is published at most this often after firings


@dataclass
class AgentOptions:
    host: str
    port: int
    state_dir: StateDir
    dry_run: bool = False
    ha_delay: tuple[float, float] = HA_DELAY
    health_every: float = HEALTH_EVERY
    ctx: ProbeContext = field(default_factory=ProbeContext)
    pinned: bool = False  # the broker came from the command line: a deployed profile's host and port do not move it
    deploys: bool = False  # profile deploys are answered (a profile file to replace): inbound messages up to 256 KiB


@dataclass
class Parts:
    """Everything built from one plan. A reload builds the next set before it stops this one, and
    swaps it in with one assignment, so no message ever sees half of each."""

    plan: Plan
    sensors: SensorSet
    commands: CommandService | None
    steps: StepRunner
    rules: RuleEngine
    scheduler: Scheduler | None
    announced: Plan  # the plan less the optional sensors whose probe cannot work here
    children: Children | None = None

    @property
    def command_prefix(self) -> str:
        return f"{self.plan.topics.base}/cmd/"


def idle_rules(plan: Plan, working: set[str], actions_ctx: Any = None) -> list[str]:
    """Why rules cannot work on this host: they read a sensor that has no value here (a skipped
    optional probe, or a derived sensor of one), or a step needs a command whose action is
    unavailable here. `working` holds the sensors that bound."""
    from pilot.actions import ActionContext
    from pilot.registry import ACTIONS

    dead = {s.id: f"its probe {s.probe} does not work here" for s in plan.sensors if s.probe and s.id not in working}
    changed = True
    while changed:  # derived sensors of dead sensors are dead too
        changed = False
        for sensor in plan.sensors:
            lost = [i for i in sensor.inputs if i in dead]
            if not sensor.probe and sensor.id not in dead and lost:
                dead[sensor.id] = f"derived from {lost[0]}, which has no value"
                changed = True
    ctx = actions_ctx or ActionContext()
    broken: dict[str, str] = {}
    for command in plan.commands:
        entry = ACTIONS.get(command.action)
        reason = entry.unavailable(ctx, **command.args) if entry else None
        if reason:
            broken[command.id] = reason
    out = []
    for rule in plan.rules:
        lost = [i for i in rule.inputs if i in dead]
        if lost:
            out.append(f"rule {rule.id} can never fire here: it reads {lost[0]} ({dead[lost[0]]})")
            continue
        for step in rule.do + rule.on_clear:
            if step.kind == "command" and step.command in broken:
                out.append(
                    f"rule {rule.id} will fail here: its step `command: {step.command}` needs an action "
                    f"this host lacks ({broken[step.command]})"
                )
                break
    return out


def without_unusable_commands(plan: Plan, actions_ctx: Any = None) -> Plan:
    """`plan` less its optional commands whose action cannot work on this host (no media player, no
    audio server): they are not announced, listed or answered, like optional sensors without a probe.
    One log line says which and why."""
    optional = [c for c in plan.commands if c.optional]
    if not optional:
        return plan
    from pilot.actions import ActionContext
    from pilot.registry import ACTIONS

    ctx = actions_ctx or ActionContext()
    dropped: set[str] = set()
    for command in optional:
        entry = ACTIONS.get(command.action)
        reason = entry.unavailable(ctx, **command.args) if entry else None
        if entry is None or reason:
            dropped.add(command.id)
            log.info("optional command %s left out: %s", command.id, escape(reason or "unknown action"))
    if not dropped:
        return plan
    return dataclasses.replace(plan, commands=tuple(c for c in plan.commands if c.id not in dropped))


@dataclass
class Firings:
    """One rule's or schedule's firings since the agent started: how many, and the last (Unix time)."""

    last: int
    count: int = 0


class Activity:
    """Rule and schedule firings since the agent started, for the retained `<base>/activity` topic
    (a console shows when each last fired). Published with every announcement and after a firing,
    at most once per `every` seconds however often things fire; nothing at all while nothing has
    fired. While the session is down a firing only marks it dirty: the next connect's announcement
    publishes it. Clocks and the timer are injected (`after(delay, fn)`: the agent's ticker)."""

    def __init__(
        self,
        topic: str,
        publish: Callable[[str, str], None],
        after: Callable[[float, Callable[[], None]], None],
        *,
        connected: Callable[[], bool] = lambda: True,
        wall: Callable[[], float] = time.time,
        mono: Callable[[], float] = time.monotonic,
        every: float = ACTIVITY_EVERY,
    ) -> None:
        self.topic = topic
        self._publish, self._after, self._connected = publish, after, connected
        self._wall, self._mono, self.every = wall, mono, every
        self.rules: dict[str, Firings] = {}
        self.schedules: dict[str, Firings] = {}
        self._lock = threading.Lock()
        self._last_publish: float | None = None  # monotonic
        self._armed = False  # a flush is waiting on the timer
        self._dirty = False  # something fired since the last publish

    def fired(self, kind: str, item_id: str) -> None:
        """Count one firing (`kind`: "rule" or "schedule"); publish now or when `every` has passed."""
        with self._lock:
            table = self.rules if kind == "rule" else self.schedules
            entry = table.setdefault(item_id, Firings(0))
            entry.last, entry.count = int(self._wall()), entry.count + 1
            self._dirty = True
            if self._armed:
                return  # coalesced into the publish already waiting
            wait = 0.0 if self._last_publish is None else self._last_publish + self.every - self._mono()
            if wait > 0:
                self._armed = True
                self._after(wait, self.flush)
                return
            self._publish_locked()

    def flush(self) -> None:
        """The timer's end: publish what fired since the last publish."""
        with self._lock:
            self._armed = False
            if self._dirty:
                self._publish_locked()

    def announce(self) -> None:
        """With the announcement on every connect: the counts so far, when anything ever fired."""
        with self._lock:
            if self.rules or self.schedules:
                self._publish_locked(force=True)

    def rearm(self) -> None:
        """After the timer's jobs were dropped (a reload clears the ticker): a waiting flush is set again."""
        with self._lock:
            if self._armed:
                self._armed = False
                if self._dirty:
                    wait = 0.0 if self._last_publish is None else self._last_publish + self.every - self._mono()
                    self._armed = True
                    self._after(max(0.0, wait), self.flush)

    def keep(self, rules: set[str], schedules: set[str]) -> None:
        """After a reload: forget rules and schedules the plan no longer has (the next publish drops them)."""
        with self._lock:
            for table, ids in ((self.rules, rules), (self.schedules, schedules)):
                for gone in set(table) - ids:
                    del table[gone]

    def payload(self) -> str:
        def block(table: dict[str, Firings]) -> dict[str, dict[str, int]]:
            return {k: {"last": v.last, "count": v.count} for k, v in sorted(table.items())}

        return json.dumps({"rules": block(self.rules), "schedules": block(self.schedules)}, separators=(",", ":"))

    def _publish_locked(self, force: bool = False) -> None:
        if not self._connected() and not force:
            return  # stays dirty: the next connect's announcement publishes it
        self._dirty = False
        self._last_publish = self._mono()
        self._publish(self.topic, self.payload())


def command_capability(command: Command) -> dict[str, Any]:
    """What a console needs to draw and press one command, signed ones included (Home Assistant's
    discovery leaves those out): its platform's fields, whether it needs a signature, its
    confirmation window (seconds, or None) and its topics."""
    entity = command.entity
    item: dict[str, Any] = {
        "id": command.id,
        "platform": entity.platform,
        "name": entity.name or words(command.id),
        "signed": command.signed,
        "confirm_within": command.confirm,
        "command_topic": command.command_topic,
    }
    if command.state_topic:
        item["state_topic"] = command.state_topic
    if entity.platform == "button":
        item["payload_press"] = "PRESS"
    elif entity.platform == "switch":
        item.update(payload_on=ha.ON, payload_off=ha.OFF)
    elif entity.platform == "number":
        item.update({k: entity.extra.get(k) for k in ("min", "max", "step")}, unit=entity.unit_of_measurement)
    elif entity.platform == "select":
        item["options"] = list(entity.options or ())
    elif entity.platform == "text":
        item.update({k: entity.extra[k] for k in ("min_length", "max_length") if k in entity.extra})
    return item


class DeployHandler(Protocol):
    """What the agent asks of pilot.agent.deployer (which builds on this module, so not imported here)."""

    def on_set(self, payload: bytes, retained: bool) -> None: ...

    def on_get(self, payload: bytes, retained: bool) -> None: ...

    def describe(self) -> dict[str, Any] | None: ...


class Agent:
    def __init__(self, plan: Plan, options: AgentOptions) -> None:
        self.options = options
        self.started = time.monotonic()
        self._lock = threading.RLock()
        self._announce_timer: threading.Timer | None = None
        self._last_announce = 0.0
        self.ticker = Ticker()
        self.health = Health()
        self.switching = False  # a deploy is trying a new MQTT session (pilot.agent.deployer)
        self.session = self.new_session(plan, options.host, options.port)
        self.system: System = system_from_env(
            lambda topic, payload, retain: self.session.publish_result(topic, payload, 1, retain)
        )
        if isinstance(self.system, RecordingSystem):
            log.warning("PILOT_SYSTEM_RECORD is set: actions are recorded to %s, not performed", self.system.path)
        self.reload_handler: Callable[[bytes], None] | None = None  # `_reload` requests; see pilot.agent.reload
        self.deployer: DeployHandler | None = None  # `_profile/set` and `_profile/get`; see pilot.agent.deployer
        self.activity = Activity(
            f"{plan.topics.base}/activity",
            lambda topic, payload: self.session.publish_result(topic, payload, qos=1, retain=True),
            self.ticker.after,
            connected=lambda: self.session.connected,
        )
        self.parts = self._build(plan)

    def new_session(self, plan: Plan, host: str, port: int) -> Session:
        """An MQTT session for `plan`'s settings (not started). It reaches the agent only while it is
        the agent's session: one a deploy is trying out handles nothing until it is promoted."""
        session: Session

        def connected() -> None:
            if self.session is session:
                self._on_connected()

        def message(topic: str, payload: bytes, retained: bool) -> None:
            if self.session is session:
                self._on_message(topic, payload, retained)

        session = Session(
            settings=plan.mqtt,
            will=Will(plan.topics.availability),
            host=host,
            port=port,
            on_connected=connected,
            on_message=message,
            birth=False,
            max_inbound=max(plan.policy.max_payload, MAX_REPORT_BYTES, MAX_DEPLOY_BYTES if self.options.deploys else 0),
            subscriptions=[
                (f"{plan.mqtt.discovery_prefix}/status", 1),
                (f"{plan.topics.base}/cmd/+/set", 1),
                (f"{plan.topics.base}/cmd/_profile/get", 1),  # the profile a deploy replaces (signed)
                (f"{plan.topics.base}/+/+/cmd/+/set", 1),  # commands on child devices (`children:`)
                (plan.topics.health, 1),
            ],
        )
        return session

    # the current plan's parts, read through `parts` so a reload swaps them all at once
    plan = property(lambda self: self.parts.plan)
    sensors = property(lambda self: self.parts.sensors)
    commands = property(lambda self: self.parts.commands)
    rules = property(lambda self: self.parts.rules)

    # ---------------------------------------------------------------- the plan's parts
    def _build(self, plan: Plan, guards: Guards | None = None) -> Parts:
        """Build the plan's parts (nothing starts here); `guards` is the guard state (cooldowns,
        armed confirmations, running actions, nonces) of the plan before a reload."""
        plan = without_unusable_commands(plan)
        sensors = SensorSet(plan, self.options.ctx, self._publish_state, self._on_sensor_change)
        commands = None
        if plan.commands or any(s.commands for s in plan.children):
            from pilot.agent.commands import CommandService

            commands = CommandService(
                plan,
                self.session.publish_result,
                self.system,
                self.options.state_dir.path,
                dry_run=self.options.dry_run,
                guards=guards,
            )
        steps = StepRunner(
            plan.topics.base,
            sensors.values,
            commands.run_local if commands else None,
            self.session.publish_result,
            self.system,
            dry_run=self.options.dry_run,
        )
        rules = RuleEngine(
            plan.rules, sensors.evaluator, self._rule_fired, self._rule_cleared, wake_at=self._wake_rules_at
        )
        scheduler = None
        if plan.schedules:
            from pilot.agent.schedules import Scheduler

            scheduler = Scheduler(plan.schedules, self._schedule_fired)
        self._forget_dropped_child_sets(plan)  # queued until connected; before Children reads the record
        children = None
        if plan.children:
            from pilot.agent.children import Children, bind_source

            state_dir = self.options.state_dir
            children = Children(
                plan,
                self.session.publish_result,
                self.session.publish_telemetry,
                (lambda: state_dir.read_json(CHILDREN_RECORD, {})[0] or {}, self._write_children_record),
                bind_source,
            )
            self.system.requesters = children.requesters
            if commands is not None:
                commands.instances = children.instance
        # optional sensors whose probe cannot work here are not announced at all
        announced = dataclasses.replace(
            plan, sensors=tuple(s for s in plan.sensors if s.id in sensors.states or not s.optional)
        )
        return Parts(plan, sensors, commands, steps, rules, scheduler, announced, children)

    def _forget_dropped_child_sets(self, plan: Plan) -> None:
        """Child devices of a set the profile no longer has leave Home Assistant (once: the record forgets them)."""
        record, _ = self.options.state_dir.read_json(CHILDREN_RECORD, {})
        if not isinstance(record, dict) or not record:
            return
        from pilot.agent.children import dropped_sets

        messages, kept = dropped_sets(plan, record)
        for topic, payload, qos, retain in messages:
            self.session.publish_result(topic, payload, qos=qos, retain=retain)
        if kept != record:
            log.info("removed the child devices of %d set(s) no longer in the profile", len(record) - len(kept))
            self._write_children_record(kept)

    def _write_children_record(self, record: dict) -> None:
        try:
            self.options.state_dir.write_json(CHILDREN_RECORD, record)
        except OSError as exc:
            self.health.state_write_failures += 1
            log.error("cannot remember announced child devices in %s: %s", self.options.state_dir.path, exc)

    def _start_parts(self) -> None:
        every = self.options.health_every
        self.ticker.every(every, self.publish_health, first_delay=every)
        for interval, ids in self.sensors.intervals().items():
            # one second in, so rate and usage probes have a first interval to measure
            self.ticker.every(interval, self.sensors.read_group, ids, first_delay=min(interval, 1.0))
        if self.parts.scheduler is not None:
            self.parts.scheduler.start()
        if self.parts.children is not None:
            self.parts.children.start(self.ticker.every)

    def _stop_parts(self, parts: Parts, *, retire: bool = False) -> None:
        """Stop what runs on its own. `retire`: on reload, let running actions finish and answer."""
        self.ticker.clear()
        if parts.scheduler is not None:
            parts.scheduler.stop()
        parts.steps.stop()
        if parts.children is not None:
            parts.children.stop()
        if parts.commands is not None:
            (parts.commands.retire if retire else parts.commands.stop)()

    def reload(self, plan: Plan) -> None:
        """Swap in a new plan on the same connection; discovery removes what was dropped.

        The new parts are built before the old ones stop, so a failure leaves the old plan
        running; running actions finish, and the guards remember them and their cooldowns."""
        with self._lock:
            old = self.parts
            new = self._build(plan, guards=old.commands.guards if old.commands else None)
            # swap first: a message read from here on reaches the new parts; one that already holds
            # the old command service is answered `busy` by it (retired), never dropped
            self.parts = new
            self._stop_parts(old, retire=True)
            self._start_parts()
            self.activity.keep({r.id for r in plan.rules}, {s.id for s in plan.schedules})
            self.activity.rearm()  # the ticker's jobs were cleared, a waiting activity publish with them
        log.info("reloaded profile %s (hash %s)", plan.profile, plan.profile_hash)
        if self.session.connected:
            self.announce()

    # ---------------------------------------------------------------- events
    def _publish_state(self, topic: str, payload: str) -> None:
        self.session.publish_telemetry(topic, payload, retain=True)

    def _on_sensor_change(self, changed: list[str]) -> None:
        self.rules.on_change(changed, self.sensors.values())

    def _wake_rules_at(self, deadline: float) -> None:
        self.ticker.after(max(0.0, deadline - time.monotonic()) + 0.001, self._poll_rules)

    def _poll_rules(self) -> None:
        self.rules.poll(self.sensors.values())

    def _rule_fired(self, rule: Rule) -> None:
        log.info("rule %s fired", rule.id)
        self.activity.fired("rule", rule.id)
        if rule.state_topic:
            self.session.publish_telemetry(rule.state_topic, ha.ON, retain=True)
        self.parts.steps.run(rule.do, f"rule:{rule.id}")

    def _rule_cleared(self, rule: Rule) -> None:
        log.info("rule %s cleared", rule.id)
        if rule.state_topic:
            self.session.publish_telemetry(rule.state_topic, ha.OFF, retain=True)
        self.parts.steps.run(rule.on_clear, f"rule:{rule.id}")

    def _schedule_fired(self, schedule: Schedule) -> None:
        log.info("schedule %s fired", schedule.id)
        self.activity.fired("schedule", schedule.id)
        self.parts.steps.run(schedule.do, f"schedule:{schedule.id}")

    # ---------------------------------------------------------------- announcements
    def capabilities(self) -> dict[str, Any]:
        caps = {
            "pilot_version": __version__,
            "profile": self.plan.profile,
            "profile_hash": self.plan.profile_hash,
            "probes": dict(sorted(self.sensors.probe_status.items())),
            "actions": sorted({c.action for c in self.plan.commands}),
            "registry": {"probes": PROBES.names()},
            "dry_run": self.options.dry_run,
            # for a console: every command the allowlist admits (signed ones too), rules and schedules
            "commands": [
                command_capability(c) for c in self.plan.commands if check_allowed(c, self.plan.policy) is None
            ],
            "rules": [
                {"id": r.id, "name": (r.entity.name if r.entity and r.entity.name else None) or words(r.id)}
                for r in self.plan.rules
            ],
            "schedules": [
                {"id": s.id, "name": words(s.id), "cron": s.cron, "every": s.every} for s in self.plan.schedules
            ],
        }
        # the running file and whether it takes signed deploys (`profile` stays the profile's name)
        described = self.deployer.describe() if self.deployer is not None else None
        if described is not None:
            caps["profile_file"] = described
        return caps

    def announce(self) -> None:
        """Discovery (with removals), capabilities, availability, and every current state."""
        with self._lock:
            self._last_announce = time.monotonic()
            previous, intact = self.options.state_dir.read_json("discovery.json", {})
            from pilot.naming import slug

            extra = health_entities(self.plan.device.id, slug(self.plan.device.name), self.plan.topics.health)
            messages, record = ha.discovery_messages(self.parts.announced, previous, extra)
            for message in messages:
                self.session.publish_result(message.topic, message.payload, qos=message.qos, retain=message.retain)
            if record != previous or not intact:
                try:
                    self.options.state_dir.write_json("discovery.json", record)
                except OSError as exc:
                    self.health.state_write_failures += 1
                    log.error("cannot remember published discovery in %s: %s", self.options.state_dir.path, exc)
            self.session.publish_result(self.plan.topics.capabilities, json.dumps(self.capabilities()), retain=True)
            log.info(
                "announced %d entities (%s discovery on %s); states under %s/state/",
                len(ha.components(self.parts.announced)),
                self.plan.mqtt.discovery,
                self.plan.topics.discovery,
                self.plan.topics.base,
            )
            self.session.publish_result(self.plan.topics.availability, "online", retain=True)
            self.activity.announce()
            if self.parts.children is not None:
                self.parts.children.announce()
            self.publish_health()
            self.sensors.republish()
            for state in self.rules.states.values():
                if state.rule.state_topic:
                    self.session.publish_telemetry(
                        state.rule.state_topic, ha.ON if state.active else ha.OFF, retain=True
                    )
            if self.commands is not None:
                for command in self.plan.commands:
                    value = self.commands.read_state(command) if command.state_topic else None
                    if value is not None:
                        self.session.publish_telemetry(command.state_topic, str(value), retain=True)

    def _on_connected(self) -> None:
        self.announce()

    def health_report(self) -> dict:
        return self.health.report(
            session_stats=self.session.stats,
            command_stats=self.commands.guards.stats if self.commands else None,
            probe_errors=sum(s.errors for s in self.sensors.states.values()),
            rule_errors=sum(s.errors for s in self.rules.states.values()),
        )

    def publish_health(self) -> None:
        self.health.check_clock()
        self.session.publish_telemetry(self.plan.topics.health, encode_health(self.health_report()), retain=True)

    def _on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        """Every inbound message, on paho's thread. Each topic has its own size cap, checked before
        anything parses the payload, and a strict shape; what fails is counted in the health report,
        and nothing from the message is logged (see docs/security.md, "Inbound messages")."""
        prefix = self.parts.command_prefix
        if topic == self.plan.topics.health:
            self.health.on_report(payload, retained)
        elif topic in (f"{prefix}_profile/set", f"{prefix}_profile/get"):
            if self.deployer is None:
                self.health.inbound_dropped += 1
            elif topic.endswith("/set"):
                self.deployer.on_set(payload, retained)  # size first; the deploy runs on its own worker
            else:
                self.deployer.on_get(payload, retained)
        elif topic == f"{prefix}_reload/set":
            if retained or self.reload_handler is None:
                self.health.inbound_dropped += retained
                return
            self.reload_handler(payload)  # size first, then quick checks; the reload runs on its own worker
        elif topic.startswith(prefix):
            if len(topic) > len(prefix) + MAX_COMMAND_ID + len("/set"):
                self.health.inbound_dropped += 1  # no command id is that long: not worth an answer
                return
            commands = self.parts.commands
            if commands is not None:
                commands.handle(topic, payload, retained)  # its size check comes before any parsing
        elif topic.startswith(self.plan.topics.base + "/") and topic.endswith("/set"):
            # `<base>/<set>/<key>/cmd/<command>/set`: a command on a child device
            if len(topic) > len(self.plan.topics.base) + MAX_CHILD_COMMAND_TOPIC:
                self.health.inbound_dropped += 1
                return
            commands = self.parts.commands
            if commands is not None and self.plan.children:
                commands.handle_child(topic, payload, retained)
            else:
                self.health.inbound_dropped += 1
        elif topic == f"{self.plan.mqtt.discovery_prefix}/status":
            if len(payload) > MAX_STATUS_BYTES:
                self.health.inbound_dropped += 1
            elif payload.strip() == b"online":
                self._schedule_announce()

    def _schedule_announce(self) -> None:
        """After Home Assistant's birth: a random few seconds, and never twice within HA_DEBOUNCE."""
        with self._lock:
            if self._announce_timer is not None and self._announce_timer.is_alive():
                return
            low, high = self.options.ha_delay
            delay = random.uniform(low, high)
            earliest = self._last_announce + HA_DEBOUNCE - time.monotonic()
            delay = max(delay, earliest)
            self._announce_timer = threading.Timer(delay, self.announce)
            self._announce_timer.daemon = True
            self._announce_timer.start()

    # ---------------------------------------------------------------- lifecycle
    def read_all(self) -> None:
        self.sensors.read_all()

    def start(self) -> None:
        self.options.state_dir.ensure()
        self.session.start()
        self._start_parts()
        self.ticker.start()
        log.info(
            "agent started: %d sensors in %d interval group(s), %d commands, %d rules, %d schedules, "
            "device %s, profile %s",
            len(self.sensors.states),
            len(self.sensors.intervals()),
            len(self.plan.commands),
            len(self.plan.rules),
            len(self.plan.schedules),
            self.plan.device.id,
            self.plan.profile,
        )

    def stop(self) -> None:
        self.ticker.stop()
        self._stop_parts(self.parts)
        if self._announce_timer is not None:
            self._announce_timer.cancel()
        self.session.stop()

    def healthy(self) -> bool:
        return (self.switching or self.session.alive()) and self.ticker.alive()
