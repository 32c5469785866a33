"""Child sets at run time: poll a source, announce each instance as its own Home Assistant device
under this one, publish its state and availability, and remove the devices of instances that are gone.

Everything an instance carries came from the network (a Proxmox API, a local tool), so it is checked
before it reaches a topic, a discovery payload or a log line: keys are short plain words, names are
bounded and stripped of control characters, field values are numbers, booleans or bounded text.
A source that fails marks its instances unavailable, is logged once per distinct reason, and is asked
again with a growing delay; the agent's own telemetry and commands never wait for it (each set polls
on its own thread).
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pilot.agent import ha
from pilot.plan import ChildSet, Plan
from pilot.sources import Bound, Instance, SourceError

log = logging.getLogger("pilot.children")

KEY_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")  # used with fullmatch: `$` would let a trailing newline in
MAX_INSTANCES = 5000  # per set; more is a misconfigured or hostile source
MAX_NAME = 100  # characters of a child device's name
MAX_TEXT = 255  # characters of a text field's value
MAX_BACKOFF = 300.0  # seconds between polls of a source that keeps failing
EMPTY_POLLS = 3  # empty answers in a row before every instance's device is removed
RECORD = "children.json"

Publish = Callable[..., None]


def clean_text(value: str, limit: int) -> str:
    """Bounded, and no control characters (they would reach Home Assistant's UI and log lines)."""
    return "".join(ch for ch in value[: limit * 2] if ch.isprintable())[:limit]


def clean_value(value: Any) -> Any:
    """A field value as it may be published: a finite number, a bool, bounded text, or None."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return clean_text(value, MAX_TEXT)
    if isinstance(value, list | tuple):
        return clean_text(",".join(str(v) for v in value[:32]), MAX_TEXT)
    return None


def child_id(plan: Plan, set_id: str, key: str) -> str:
    return f"{plan.device.id}_{set_id}_{key}"


def discovery_topic(plan: Plan, set_id: str, key: str) -> str:
    return f"{plan.mqtt.discovery_prefix}/device/{child_id(plan, set_id, key)}/config"


def removals(plan: Plan, set_id: str, key: str) -> list[tuple[str, str, int, bool]]:
    """An instance's device out of Home Assistant and its retained topics emptied, as (topic, payload, qos, retain)."""
    base = f"{plan.topics.base}/{set_id}/{key}"
    return [
        (discovery_topic(plan, set_id, key), "", 1, True),
        (f"{base}/availability", "", 1, True),
        (f"{base}/state", "", 1, True),
    ]


def child_components(plan: Plan, spec: ChildSet, key: str) -> dict[str, dict[str, Any]]:
    """The entities of one instance, keyed by unique id, with its topics."""
    base = f"{spec.topic}/{key}"
    out: dict[str, dict[str, Any]] = {}
    for sensor in spec.sensors:
        config = ha.entity_config(sensor.entity)
        config["unique_id"] = config["unique_id"].replace("{key}", key)
        config["default_entity_id"] = config["default_entity_id"].replace("{key}", key)
        config["state_topic"] = f"{base}/state"
        config["value_template"] = "{{ value_json." + sensor.field + " }}"
        if sensor.entity.platform == "binary_sensor":
            config.update(payload_on=True, payload_off=False)
        out[config["unique_id"]] = config
    for command in spec.commands:
        if command.signed:
            continue  # Home Assistant cannot sign: driven by `pilot send`, not UI entities
        config = ha.entity_config(command.entity)
        config["unique_id"] = config["unique_id"].replace("{key}", key)
        config["default_entity_id"] = config["default_entity_id"].replace("{key}", key)
        config.update(command_topic=f"{base}/cmd/{command.id}/set", payload_press="PRESS", qos=1)
        out[config["unique_id"]] = config
    return out


def dropped_components(plan: Plan, spec: ChildSet, key: str) -> dict[str, dict[str, Any]]:
    """What the source offers but the set does not announce (a field left out of `sensors:`, a command
    left out or made `signed`), in Home Assistant's removal form: an entity dropped from the profile
    leaves the device instead of lingering as unavailable. Removing one that never existed is a no-op."""
    from pilot.registry import SOURCES

    entry = SOURCES.get(spec.source)
    if entry is None:
        return {}
    kept_sensors = {s.field for s in spec.sensors}
    kept_commands = {c.id for c in spec.commands if not c.signed}
    out: dict[str, dict[str, Any]] = {}
    prefix = f"pilot_{child_id(plan, spec.id, key)}_"
    for name, meta in (entry.defaults.get("fields") or {}).items():
        if name not in kept_sensors:
            out[prefix + name] = {"platform": meta.get("platform", "sensor")}
    for name in entry.defaults.get("commands") or {}:
        if name not in kept_commands:
            out[prefix + name] = {"platform": "button"}
    return out


def dropped_sets(plan: Plan, record: dict) -> tuple[list[tuple[str, str, int, bool]], dict]:
    """The removals for child devices of sets the plan no longer has (renamed, or `children:` deleted),
    and the record without them. Keys from the record are checked: a topic must stay a topic."""
    current = {s.id for s in plan.children}
    messages: list[tuple[str, str, int, bool]] = []
    kept: dict = {}
    for set_id, keys in record.items():
        if set_id in current:
            kept[set_id] = keys
            continue
        if not (isinstance(keys, dict) and KEY_RE.fullmatch(str(set_id))):
            continue
        for key in keys:
            if KEY_RE.fullmatch(str(key)):
                messages += removals(plan, str(set_id), str(key))
    return messages, kept


def child_discovery(plan: Plan, spec: ChildSet, instance: Instance) -> ha.Message:
    key = instance.key
    device: dict[str, Any] = {
        "identifiers": [f"pilot_{child_id(plan, spec.id, key)}"],
        "name": instance.name,
        "via_device": f"pilot_{plan.device.id}",
    }
    if spec.model:
        device["model"] = spec.model
    payload = {
        "device": device,
        "origin": ha.origin(),
        "availability": [
            {"topic": plan.topics.availability, "payload_available": "online", "payload_not_available": "offline"},
            {"topic": f"{spec.topic}/{key}/availability"},
        ],
        "availability_mode": "all",
        "components": {**dropped_components(plan, spec, key), **child_components(plan, spec, key)},
        "qos": 1,
    }
    return ha.Message(discovery_topic(plan, spec.id, key), json.dumps(payload, separators=(",", ":")))


@dataclass
class _Seen:
    """What was last published for one instance."""

    name: str
    available: bool | None = None
    state: dict[str, Any] | None = None
    published_at: float = 0.0


@dataclass
class ChildSetRunner:
    """One child set: its source, polled on its own thread, and what it last published."""

    plan: Plan
    spec: ChildSet
    poll: Callable[[], list[Instance]]
    publish_result: Publish  # ordered, never dropped: discovery, availability, removals
    publish_telemetry: Publish  # states
    remember: Callable[[str, dict[str, str]], None]  # (set id, key -> name) after each change
    known: dict[str, str] = field(default_factory=dict)  # key -> name, as announced (from the state dir)
    clock: Callable[[], float] = time.monotonic
    instances: dict[str, Instance] = field(default_factory=dict)
    seen: dict[str, _Seen] = field(default_factory=dict)
    failures: int = 0
    last_failure: str | None = None
    skipped: int = 0  # instances refused for a bad key, over the cap
    not_before: float = 0.0
    stopped: threading.Event = field(default_factory=threading.Event)  # set by a reload or a stop
    lock: threading.Lock = field(default_factory=threading.Lock)  # a poll's publishing vs. announce()
    empty_polls: int = 0  # answers in a row that listed nothing, where there were instances

    # ------------------------------------------------------------ one poll
    def run_once(self) -> None:
        """Ask the source and publish what changed; on failure, mark every instance unavailable."""
        now = self.clock()
        if now < self.not_before:
            return
        try:
            found = self.poll()
        except SourceError as exc:
            with self.lock:
                if not self.stopped.is_set():
                    self._failed(exc.reason, exc.detail, now)
            return
        except Exception as exc:  # a source bug must not end the agent; it is reported like a failure
            with self.lock:
                if not self.stopped.is_set():
                    self._failed("error", f"{type(exc).__name__}: {exc}", now)
            return
        with self.lock:
            if self.stopped.is_set():
                return  # replaced by a reload while the source answered: the new runner publishes from here on
            if self.failures:
                log.info("children %s: %s answers again", self.spec.id, self.spec.source)
            self.failures, self.last_failure, self.not_before = 0, None, 0.0
            self._apply(self._checked(found), now)

    def _checked(self, found: list[Instance]) -> dict[str, Instance]:
        out: dict[str, Instance] = {}
        skipped = 0
        for instance in found:
            if len(out) >= MAX_INSTANCES or not isinstance(instance.key, str) or not KEY_RE.fullmatch(instance.key):
                skipped += 1
                continue
            # no name (a Proxmox guest whose node is down comes without one): keep the one announced
            name = clean_text(str(instance.name), MAX_NAME) or self.known.get(instance.key) or instance.key
            out[instance.key] = Instance(
                instance.key,
                name,
                {k: clean_value(v) for k, v in instance.fields.items()},
                instance.available,
                instance.target,
            )
        if skipped and skipped != self.skipped:
            log.warning(
                "children %s: %d instance(s) ignored (a key that is not a short plain word, or too many)",
                self.spec.id,
                skipped,
            )
        self.skipped = skipped
        return out

    def _apply(self, current: dict[str, Instance], now: float) -> None:
        had = {**self.known, **self.instances}
        if not current and had:
            # Every instance gone at once looks the same as a token that lost its right to list them
            # (Proxmox then answers an empty list, not 403): only EMPTY_POLLS such answers in a row
            # remove the devices; until then they are unavailable.
            self.empty_polls += 1
            if self.empty_polls < EMPTY_POLLS:
                if self.empty_polls == 1:
                    log.warning(
                        "children %s: %s lists no instance where there were %d; their devices are removed if "
                        "it still lists none after %d polls (a token that lost its audit right looks the same)",
                        self.spec.id,
                        self.spec.source,
                        len(had),
                        EMPTY_POLLS,
                    )
                for key in had:
                    seen = self.seen.setdefault(key, _Seen(self.known.get(key, key)))
                    if seen.available is not False:
                        self._availability(key, False)
                        seen.available = False
                return
        self.empty_polls = 0
        gone = [key for key in had if key not in current]
        for key in gone:
            self._remove(key)
        for key, instance in current.items():
            seen = self.seen.get(key)
            if seen is None or seen.name != instance.name:
                self.publish_result(*_message(child_discovery(self.plan, self.spec, instance)))
                if seen is None:
                    seen = self.seen[key] = _Seen(instance.name)
                seen.name = instance.name
            if seen.available != instance.available:
                self._availability(key, instance.available)
                seen.available = instance.available
            state = self._state(instance)
            if self._worth_publishing(seen, state, now):
                self.publish_telemetry(
                    f"{self.spec.topic}/{key}/state", json.dumps(state, separators=(",", ":")), retain=True
                )
                seen.state, seen.published_at = state, now
        self.instances = current
        names = {key: i.name for key, i in current.items()}
        if names != self.known:
            self.known = names
            self.remember(self.spec.id, names)

    def _state(self, instance: Instance) -> dict[str, Any]:
        state = {}
        for sensor in self.spec.sensors:
            value = instance.fields.get(sensor.field)
            if isinstance(value, float) and sensor.precision is not None:
                value = round(value, sensor.precision)
            state[sensor.field] = value
        return state

    def _worth_publishing(self, seen: _Seen, state: dict[str, Any], now: float) -> bool:
        if seen.state is None or now - seen.published_at >= self.spec.max_silence:
            return True
        for sensor in self.spec.sensors:
            old, new = seen.state.get(sensor.field), state.get(sensor.field)
            if old == new:
                continue
            numbers = isinstance(old, int | float) and isinstance(new, int | float)
            numbers = numbers and not isinstance(old, bool) and not isinstance(new, bool)
            if not numbers or sensor.min_change is None or abs(new - old) >= sensor.min_change:
                return True
        return False

    def _availability(self, key: str, available: bool) -> None:
        self.publish_result(f"{self.spec.topic}/{key}/availability", "online" if available else "offline", 1, True)

    def _remove(self, key: str) -> None:
        """The instance is gone: its device leaves Home Assistant, its retained topics are cleared."""
        log.info("children %s: %s is gone; removing its device", self.spec.id, key)  # args are escaped by the log
        for message in removals(self.plan, self.spec.id, key):
            self.publish_result(*message)
        self.seen.pop(key, None)  # (`instances` is replaced whole at the end of the poll)

    def _failed(self, reason: str, detail: str, now: float) -> None:
        if reason == "absent" and self.spec.optional:
            # this host lacks what the source needs (no token configured, not a Proxmox host): an optional
            # set (a pack's) is skipped quietly until a reload; anything else is an error like any failure
            if self.last_failure != reason:
                log.info("children %s: skipped (%s)", self.spec.id, detail)
            self.last_failure, self.not_before = reason, math.inf
            return
        self.failures += 1
        delay = min(self.spec.every * 2 ** min(self.failures - 1, 10), MAX_BACKOFF)
        self.not_before = now + delay
        if reason != self.last_failure:
            log.error(
                "children %s: cannot read %s (%s: %s); their devices are unavailable, trying again in %g s",
                self.spec.id,
                self.spec.source,
                reason,
                detail,
                delay,
            )
            self.last_failure = reason
        for key in list(self.known) + [k for k in self.instances if k not in self.known]:
            seen = self.seen.setdefault(key, _Seen(self.known.get(key, key)))
            if seen.available is not False:
                self._availability(key, False)
                seen.available = False

    # ------------------------------------------------------------ after (re)connecting
    def announce(self) -> None:
        """Everything again, for a broker or Home Assistant that lost it (never in the middle of a poll's
        own publishing: a guest being removed is not announced again behind its removal)."""
        with self.lock:
            self._announce()

    def _announce(self) -> None:
        for key, instance in list(self.instances.items()):
            self.publish_result(*_message(child_discovery(self.plan, self.spec, instance)))
            seen = self.seen.get(key)
            if seen is not None and seen.available is not None:
                self._availability(key, seen.available)
            if seen is not None and seen.state is not None:
                self.publish_telemetry(
                    f"{self.spec.topic}/{key}/state", json.dumps(seen.state, separators=(",", ":")), retain=True
                )


def _message(message: ha.Message) -> tuple[str, str, int, bool]:
    return message.topic, message.payload, message.qos, message.retain


class Children:
    """Every child set of a plan, each polled on its own thread."""

    def __init__(
        self,
        plan: Plan,
        publish_result: Publish,
        publish_telemetry: Publish,
        record: tuple[Callable[[], dict], Callable[[dict], None]],
        bind: Callable[[ChildSet], Bound],
    ) -> None:
        self._read_record, self._write_record = record
        remembered = self._read_record()
        current = {spec.id for spec in plan.children}
        self._record = {k: dict(v) for k, v in remembered.items() if isinstance(v, dict) and k in current}
        self._lock = threading.Lock()
        bound = {spec.id: bind(spec) for spec in plan.children}
        # what performs each set's planned requests (System.requesters): its source's own connection
        self.requesters = {set_id: b.request for set_id, b in bound.items() if b.request is not None}
        self.runners = [
            ChildSetRunner(
                plan,
                spec,
                bound[spec.id].poll,
                publish_result,
                publish_telemetry,
                self._remember,
                known={str(k): str(v) for k, v in self._record.get(spec.id, {}).items()},
            )
            for spec in plan.children
        ]
        self._wake = {r.spec.id: threading.Event() for r in self.runners}
        self._stop = threading.Event()
        for runner in self.runners:
            runner.stopped = self._stop
        self._threads: list[threading.Thread] = []

    def _remember(self, set_id: str, names: dict[str, str]) -> None:
        with self._lock:
            self._record[set_id] = dict(names)
            self._write_record(dict(self._record))

    def start(self, every: Callable[..., None]) -> None:
        """`every(seconds, fn, first_delay=...)` is the agent's ticker; each tick wakes one set's own thread."""
        for runner in self.runners:
            wake = self._wake[runner.spec.id]
            thread = threading.Thread(
                target=self._loop, args=(runner, wake), name=f"pilot-children-{runner.spec.id}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
            every(runner.spec.every, wake.set, first_delay=runner.spec.every)
            wake.set()  # the first poll at once

    def _loop(self, runner: ChildSetRunner, wake: threading.Event) -> None:
        while not self._stop.is_set():
            wake.wait()
            wake.clear()
            if self._stop.is_set():
                return
            try:
                runner.run_once()
            except Exception:  # a bug here must not silence the set for good: log it, poll again next time
                log.exception("children %s: unexpected error while polling", runner.spec.id)

    def stop(self) -> None:
        self._stop.set()
        for wake in self._wake.values():
            wake.set()
        for thread in self._threads:
            thread.join(timeout=2.0)

    def announce(self) -> None:
        for runner in self.runners:
            runner.announce()

    def instance(self, set_id: str, key: str) -> Instance | None:
        for runner in self.runners:
            if runner.spec.id == set_id:
                return runner.instances.get(key)
        return None


def bind_source(spec: ChildSet) -> Bound:
    """A set's source bound to its arguments. A source that cannot even be set up (an unreadable token
    file) becomes a poll that fails the same way each time, so it is reported and retried like any
    other failure instead of stopping the agent."""
    from pilot.registry import SOURCES

    entry = SOURCES.get(spec.source)

    def bind() -> Bound:
        try:
            if entry is None:
                raise SourceError("unknown", f"this Pilot has no source {spec.source!r}")
            return entry.factory(**spec.args)
        except SourceError:
            raise
        except Exception as exc:  # a missing CA file, a source bug: reported and retried, not fatal
            raise SourceError("error", f"{type(exc).__name__}: {exc}") from None

    try:
        return bind()
    except SourceError:
        pass
    bound: list[Bound] = []

    def retrying() -> list[Instance]:
        """Set up again at each poll (the token file created, the CA copied), then poll for real."""
        if not bound:
            bound.append(bind())
        return bound[0].poll()

    def request(method: str, path: str) -> str:
        from pilot.actions import ActionError

        if not bound or bound[0].request is None:
            raise ActionError(f"{spec.source} is not set up yet")
        return bound[0].request(method, path)

    return Bound(retrying, request)
