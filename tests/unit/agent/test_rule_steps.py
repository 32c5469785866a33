"""The steps of rules and schedules at run time: in order on a worker thread, `delay` between them,
`publish` and `notify` with `{sensor_id}` placeholders filled in from the latest values."""

from __future__ import annotations

import json
import threading
import time

from pilot.actions import ActionContext
from pilot.actions._base import RecordingSystem
from pilot.agent.steps import StepRunner
from pilot.plan import Step
from tests.support.profiles import compile_text

VALUES = {"cpu_temp": 97, "load": 1.5}
DESKTOP = ActionContext(platform="linux", environ={"DISPLAY": ":0"}, which=lambda name: f"/usr/bin/{name}")


def runner(tmp_path, *, wait=None, dry_run=False, record=True):
    published: list[tuple[str, str, int, bool, str]] = []
    ran = threading.Event()

    def publish(topic, payload, qos, retain):
        published.append((topic, payload, qos, retain, threading.current_thread().name))
        ran.set()

    steps = StepRunner(
        "pilot/d",
        lambda: dict(VALUES),
        None,
        publish,
        RecordingSystem(str(tmp_path / "calls.jsonl")),
        dry_run=dry_run,
        ctx=DESKTOP,
        wait=wait,
    )
    return steps, published


def finished(older: set | frozenset = frozenset(), timeout=20.0) -> bool:
    """Wait for the step workers started since `older` was taken to finish their steps (a predicate with a
    generous deadline); workers of other tests in this process are not waited for."""
    ours = [t for t in threading.enumerate() if t.name.startswith("pilot-steps") and t not in older]
    for thread in ours:
        thread.join(timeout)
    return not [t for t in ours if t.is_alive()]


def wait_for(predicate, timeout=20.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.01)
    return predicate()


def recorded(tmp_path):
    path = tmp_path / "calls.jsonl"
    return [json.loads(line)["argv"] for line in path.read_text().splitlines()] if path.exists() else []


def test_steps_run_in_order_on_a_worker_thread_with_the_delay_between_them(tmp_path):
    waits: list[tuple[float, list[str]]] = []
    steps, published = runner(tmp_path, wait=lambda seconds: waits.append((seconds, [p[1] for p in published])))
    steps.run(
        (
            Step("publish", topic="~/events", payload="one"),
            Step("delay", seconds=30),
            Step("publish", topic="~/events", payload="two"),
        ),
        "rule:r",
    )
    assert wait_for(lambda: len(published) == 2)
    assert waits == [(30, ["one"])]  # the delay came after the first step and before the second
    assert [p[1] for p in published] == ["one", "two"]
    assert all(p[4].startswith("pilot-steps") for p in published)  # not on the caller's (sensor or MQTT) thread
    steps.stop()


def test_a_delay_does_not_hold_up_the_caller_and_stopping_ends_it_without_the_next_step(tmp_path):
    steps, published = runner(tmp_path)  # the real delay: an hour
    older = set(threading.enumerate())
    steps.run(
        (
            Step("publish", topic="~/events", payload="before"),
            Step("delay", seconds=3600),
            Step("publish", topic="~/events", payload="after"),
        ),
        "schedule:s",
    )  # returns at once: the delay runs on the worker
    assert wait_for(lambda: len(published) == 1)
    steps.stop()
    assert finished(older), "the delay did not end when the runner stopped"
    assert [p[1] for p in published] == ["before"]


def test_publish_fills_in_sensor_values_and_resolves_the_device_topic(tmp_path):
    steps, published = runner(tmp_path)
    steps.perform(Step("publish", topic="~/events", payload="hot at {cpu_temp} ({load})", qos=1, retain=True), "r")
    steps.perform(Step("publish", topic="elsewhere/x", payload="{nosuch} stays"), "r")
    assert [p[:4] for p in published] == [
        ("pilot/d/events", "hot at 97 (1.5)", 1, True),
        ("elsewhere/x", "{nosuch} stays", 0, False),
    ]


def test_notify_shows_the_message_with_sensor_values_and_its_title(tmp_path):
    steps, _ = runner(tmp_path)
    steps.perform(Step("notify", message="CPU too hot ({cpu_temp} °C)"), "rule:overheat")
    steps.perform(Step("notify", title="Overheat", message="at {cpu_temp}"), "rule:overheat")
    assert recorded(tmp_path) == [
        ["notify-send", "--urgency=normal", "--app-name=Pilot", "--", "Pilot", "CPU too hot (97 °C)"],
        ["notify-send", "--urgency=normal", "--app-name=Pilot", "--", "Overheat", "at 97"],
    ]


def test_notify_in_dry_run_shows_nothing(tmp_path):
    steps, _ = runner(tmp_path, dry_run=True)
    steps.perform(Step("notify", message="x"), "rule:r")
    assert recorded(tmp_path) == []


def test_the_step_forms_compile_to_what_the_table_says():
    plan = compile_text(
        """pilot: 1
device: {id: d, name: D}
sensors:
  t: {probe: cpu.percent, every: 10s}
rules:
  r:
    when: "t > 1"
    do:
      - {notify: "plain {t}"}
      - {notify: {title: Hot, message: "at {t}"}}
      - {delay: 30s}
      - {publish: {topic: "~/e", payload: "p", retain: true, qos: 1}}
"""
    )
    assert plan.rules[0].do == (
        Step("notify", message="plain {t}"),
        Step("notify", title="Hot", message="at {t}"),
        Step("delay", seconds=30.0),
        Step("publish", topic="~/e", payload="p", retain=True, qos=1),
    )
