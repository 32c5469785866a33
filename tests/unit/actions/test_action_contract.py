"""Every registered action keeps the registry contract; System and RecordingSystem behave as documented."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest

from pilot.actions import ActionContext, ActionError, Call, System
from pilot.actions._base import RecordingSystem
from pilot.profile.schema import COMMAND_PLATFORMS
from pilot.registry import ACTIONS

REPO = Path(__file__).resolve().parents[3]
EXPECTED = {
    "proxmox.power",
    "power.shutdown",
    "power.reboot",
    "power.suspend",
    "power.hibernate",
    "power.profile",
    "session.lock",
    "session.logout",
    "display.power",
    "display.brightness",
    "cpufreq.set_max",
    "cpufreq.set_min",
    "cpufreq.set_governor",
    "process.run",
    "notify.desktop",
    "mqtt.publish",
    "media.play_pause",
    "media.play",
    "media.pause",
    "media.next",
    "media.previous",
    "systemd.start",
    "systemd.stop",
    "systemd.restart",
    "audio.set_volume",
    "audio.mute",
    "wol.send",
    "url.open",
}
ENTRIES = list(ACTIONS)
# A value each platform may send that every action accepting that platform can plan in `rich_ctx`.
SAMPLE = {"button": "PRESS", "switch": "ON", "number": 1.0, "select": "powersave", "text": "hello"}
SAMPLE_BY_ACTION = {"power.profile": "balanced", "cpufreq.set_governor": "performance"}
TOOLS = {
    "busctl",
    "systemctl",
    "shutdown",
    "powerprofilesctl",
    "loginctl",
    "xset",
    "kscreen-doctor",
    "notify-send",
    "nircmd",
    "/usr/local/bin/backup.sh",
    "/usr/bin/pactl",
    "wpctl",
    "pactl",
    "xdg-open",
}


def _write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


@pytest.fixture
def rich_ctx(tmp_path: Path) -> ActionContext:
    """A made-up machine that has everything: a backlight, cpufreq, an X11 session, every tool."""
    root = tmp_path / "sys"
    _write(root, "class/backlight/intel_backlight/brightness", "100")
    _write(root, "class/backlight/intel_backlight/max_brightness", "200")
    cpufreq = "devices/system/cpu/cpu0/cpufreq"
    for name, text in (
        ("cpuinfo_min_freq", "400000"),
        ("cpuinfo_max_freq", "3000000"),
        ("scaling_min_freq", "400000"),
        ("scaling_max_freq", "3000000"),
        ("scaling_available_governors", "performance powersave"),
        ("scaling_governor", "powersave"),
    ):
        _write(root, f"{cpufreq}/{name}", text)
    environ = {"DISPLAY": ":0", "USER": "alice", "PATH": "/usr/bin", "DBUS_SESSION_BUS_ADDRESS": "unix:path=/x"}
    environ["XDG_RUNTIME_DIR"] = str(tmp_path)  # a user session: the audio tools find their server here
    return ActionContext(
        sysfs_root=root,
        platform="linux",
        environ=environ,
        which=lambda name: f"/usr/bin/{name}" if name in TOOLS else None,
    )


@pytest.fixture
def bare_ctx(tmp_path: Path) -> ActionContext:
    """A machine that has nothing at all."""
    (tmp_path / "bare").mkdir()
    return ActionContext(sysfs_root=tmp_path / "bare", platform="linux", environ={}, which=lambda _: None)


def _examples(entry) -> list[dict]:
    return list(entry.params.get("examples") or [{}])


def test_exactly_the_specified_actions_are_registered() -> None:
    assert set(ACTIONS.names()) == EXPECTED


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.name)
def test_entry_is_self_describing(entry) -> None:
    assert entry.doc.strip(), f"{entry.name} has no docstring"
    assert entry.summary.endswith("."), entry.name
    schema = entry.params
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["type"] == "object" and schema["additionalProperties"] is False
    for name, prop in schema.get("properties", {}).items():
        assert prop.get("description"), f"{entry.name}.{name} has no description"
        if "default" in prop:
            jsonschema.Draft202012Validator(prop).validate(prop["default"])
    if schema.get("required"):
        assert schema.get("examples"), f"{entry.name} has required args but no example"
    for example in schema.get("examples", []):
        jsonschema.Draft202012Validator(schema).validate(example)
    assert entry.platforms and set(entry.platforms) <= set(COMMAND_PLATFORMS), entry.name
    assert entry.privilege is None or (isinstance(entry.privilege, str) and entry.privilege), entry.name
    if entry.privilege:
        assert entry.privilege.startswith(("org.freedesktop.", "root: write /sys/")), entry.privilege


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.name)
def test_factory_plans_a_list_of_calls(entry, rich_ctx) -> None:
    for platform in entry.platforms:
        value = SAMPLE_BY_ACTION.get(entry.name, SAMPLE[platform])
        for args in _examples(entry):
            if entry.name.startswith("power.") and entry.name != "power.profile":
                args = {**args, "booted": lambda: True}
            if entry.name == "process.run" and "value_arg" in args:
                value = "42"  # the example's value_pattern takes 1 to 3 digits
            if entry.name.startswith("cpufreq.set_m") and args.get("unit") == "MHz":
                value = 1000.0
            if entry.name == "display.brightness":
                args = {}  # the example names a device the made-up tree has anyway; keep it simple
            if entry.name == "proxmox.power":  # the engine adds the guest and its set to a child command
                args = {**args, "target": {"node": "pve1", "kind": "qemu", "vmid": 101}, "via": "guests"}
            calls = entry.factory(rich_ctx, value, **args)
            assert isinstance(calls, list) and calls, (entry.name, platform, args)
            for call in calls:
                assert isinstance(call, Call) and call.kind in ("exec", "write", "publish", "request", "datagram")
                if call.kind == "exec":
                    assert call.argv and all(isinstance(a, str) for a in call.argv)
                    assert call.timeout and call.timeout > 0
                json.dumps(call.to_dict())


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.name)
def test_available_and_state_never_raise(entry, rich_ctx, bare_ctx) -> None:
    for ctx in (rich_ctx, bare_ctx):
        for args in _examples(entry):
            if entry.available is not None:
                why = entry.available(ctx, **args)
                assert why is None or (isinstance(why, str) and why), entry.name
            if entry.state is not None:
                value = entry.state(ctx, **args)
                assert value is None or isinstance(value, (int, float, str)), (entry.name, value)
                if isinstance(value, float):
                    assert math.isfinite(value)


def test_machine_dependent_actions_say_why_they_cannot_work(bare_ctx) -> None:
    for name in (
        "power.shutdown",
        "power.profile",
        "session.lock",
        "display.power",
        "display.brightness",
        "cpufreq.set_max",
        "cpufreq.set_min",
        "cpufreq.set_governor",
        "notify.desktop",
    ):
        entry = ACTIONS.get(name)
        kwargs = {"booted": lambda: False} if name == "power.shutdown" else {}
        assert entry.available(bare_ctx, **kwargs), name
        with pytest.raises(ActionError):
            entry.factory(bare_ctx, SAMPLE_BY_ACTION.get(name, SAMPLE[entry.platforms[0]]), **kwargs)


def test_unknown_args_are_rejected_by_the_schema() -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"dealy": "1m"}, ACTIONS.get("power.shutdown").params)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"delay": "1m"}, ACTIONS.get("power.suspend").params)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"argv": "ls -l"}, ACTIONS.get("process.run").params)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"topic": "a/#"}, ACTIONS.get("mqtt.publish").params)


def test_importing_actions_stays_light() -> None:
    code = (
        "import sys; from pilot.registry import ACTIONS; ACTIONS.names();"
        "heavy = [m for m in ('psutil', 'pynvml', 'jsonschema', 'ruamel', 'ruamel.yaml', 'yaml', 'paho', 'dbus')"
        " if m in sys.modules];"
        "assert not heavy, heavy"
    )
    env = {"PYTHONPATH": str(REPO / "engine"), "PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=REPO)


# ------------------------------------------------------------ System / RecordingSystem


def test_recording_system_writes_one_json_line_per_call(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("PILOT_SYSTEM_RECORD_DELAY", raising=False)
    published = []
    record = tmp_path / "calls.jsonl"
    system = RecordingSystem(str(record), publish=lambda *a: published.append(a))
    calls = [
        Call(
            kind="exec",
            argv=(
                "busctl",
                "call",
                "org.freedesktop.login1",
                "/org/freedesktop/login1",
                "org.freedesktop.login1.Manager",
                "PowerOff",
                "b",
                "true",
            ),
            timeout=30.0,
        ),
        Call(kind="write", path="/sys/class/backlight/x/brightness", data="5"),
        Call(kind="publish", topic="t", data="ON", retain=True),
    ]
    for call in calls:
        assert system.perform(call).output == "recorded"
    lines = record.read_text().splitlines()
    assert [json.loads(line) for line in lines] == [json.loads(json.dumps(call.to_dict())) for call in calls]
    assert json.loads(lines[0]) == {
        "kind": "exec",
        "timeout": 30.0,
        "argv": [
            "busctl",
            "call",
            "org.freedesktop.login1",
            "/org/freedesktop/login1",
            "org.freedesktop.login1.Manager",
            "PowerOff",
            "b",
            "true",
        ],
    }
    assert published == [("t", "ON", True)]
    assert not (tmp_path / "x").exists()


def test_system_runs_echo_and_captures_its_output() -> None:
    outcome = System().perform(Call(kind="exec", argv=("/bin/echo", "hi"), timeout=10.0, capture=True))
    assert outcome.returncode == 0 and outcome.output.strip() == "hi" and not outcome.interrupted


def test_system_writes_and_publishes(tmp_path: Path) -> None:
    target = tmp_path / "brightness"
    System().perform(Call(kind="write", path=str(target), data="42"))
    assert target.read_text() == "42"
    got = []
    System(publish=lambda *a: got.append(a)).perform(Call(kind="publish", topic="t", data="x"))
    assert got == [("t", "x", False)]
    with pytest.raises(ActionError, match="MQTT is not connected"):
        System().perform(Call(kind="publish", topic="t", data="x"))


def test_system_times_out(tmp_path: Path) -> None:
    with pytest.raises(ActionError, match="timed out after 0.2 s"):
        System().perform(Call(kind="exec", argv=("/bin/sleep", "5"), timeout=0.2))


def test_a_timeout_kills_the_whole_process_group():
    """Regression (code review, 675ba29): a timeout killed only the action's own process, and a
    grandchild still holding the output pipe hung the action; the whole process group is killed."""
    started = time.monotonic()
    with pytest.raises(ActionError, match="timed out"):
        System().perform(Call("exec", argv=("/bin/sh", "-c", "sleep 30 & sleep 60"), timeout=1, capture=True))
    assert time.monotonic() - started < 10  # a grandchild holding the pipe no longer hangs it


def test_proxmox_power_plans_the_exact_request_and_refuses_a_guest_no_poll_could_report(rich_ctx) -> None:
    entry = ACTIONS.get("proxmox.power")
    guest = {"node": "pve-2", "kind": "lxc", "vmid": 205}
    assert entry.factory(rich_ctx, "PRESS", power="shutdown", target=guest, via="guests") == [
        Call("request", method="POST", path="/nodes/pve-2/lxc/205/status/shutdown", via="guests")
    ]
    for bad in (
        {"node": "../etc", "kind": "lxc", "vmid": 205},
        {"node": "pve-2", "kind": "qemu/../x", "vmid": 205},
        {"node": "pve-2", "kind": "lxc", "vmid": "205; rm"},
        {"node": "pve-2", "kind": "lxc", "vmid": True},
        {"node": "pve-2", "kind": "lxc", "vmid": 99},
    ):
        with pytest.raises(ActionError, match="Proxmox would report"):
            entry.factory(rich_ctx, "PRESS", power="shutdown", target=bad, via="guests")
    with pytest.raises(ActionError, match="unknown power action"):
        entry.factory(rich_ctx, "PRESS", power="destroy", target=guest, via="guests")
    with pytest.raises(ActionError, match="children"):
        entry.factory(rich_ctx, "PRESS", power="start")  # as a plain command: there is no guest
