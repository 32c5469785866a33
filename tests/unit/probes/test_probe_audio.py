"""audio.volume / audio.muted and audio.set_volume / audio.mute: recorded outputs, then real sound servers.

The live tests start a real PulseAudio, and a real PipeWire with WirePlumber on a private D-Bus,
each with a null sink in its own XDG_RUNTIME_DIR (skipped where they are not installed), plan the
actions, perform the exact planned calls with Pilot's System, and read the result back with the
probes: the argv is proven against the tool itself, not against a guess of its syntax. The
in-process reading over PulseAudio's native socket (probes/_pulse.py) is checked against what
`pactl` prints from the same real servers (PulseAudio, and pipewire-pulse on the PipeWire);
its wire format and hostile servers are in test_pulse.py.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from pilot.actions import ActionContext, ActionError, Call, System, Unsupported
from pilot.probes import ProbeContext, ProbeUnavailable, _pulse
from pilot.probes import audio as probe
from pilot.probes._background import Worker
from pilot.probes._programs import FIXED_PATH, ProgramResult
from pilot.registry import ACTIONS, PROBES

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "audio"


def text(name: str) -> str:
    return (FIXTURES / name).read_text()


@pytest.mark.parametrize(
    ("name", "volume", "muted"),
    [("wpctl-full.txt", 100, False), ("wpctl-muted.txt", 37, True), ("wpctl-boosted.txt", 150, False)],
)
def test_wpctl_outputs(name: str, volume: int, muted: bool) -> None:
    assert probe.parse_wpctl(text(name)) == probe.Audio(volume, muted)


@pytest.mark.parametrize(
    ("volume_file", "mute_file", "volume", "muted"),
    [
        ("pactl-volume-full.txt", "pactl-mute-no.txt", 100, False),
        ("pactl-volume-37.txt", "pactl-mute-yes.txt", 37, True),
        ("pactl-volume-unbalanced.txt", "pactl-mute-no.txt", 40, False),  # 30 % and 50 %: the mean
    ],
)
def test_pactl_outputs(volume_file: str, mute_file: str, volume: int, muted: bool) -> None:
    assert probe.parse_pactl(text(volume_file), text(mute_file)) == probe.Audio(volume, muted)


@pytest.mark.parametrize(
    ("tool", "stem", "reason"),
    [
        ("wpctl", "wpctl-no-server", "wpctl get-volume exited with status 2: Could not connect to PipeWire"),
        (
            "pactl",
            "pactl-no-server",
            "pactl get-sink-volume exited with status 1: Connection failure: Connection refused",
        ),
    ],
)
def test_no_sound_server_is_unavailable_with_the_tools_reason(tool: str, stem: str, reason: str) -> None:
    failed = ProgramResult(
        returncode=int(text(f"{stem}.rc")), stdout=b"", stderr=(FIXTURES / f"{stem}.stderr").read_bytes()
    )
    with pytest.raises(ProbeUnavailable, match=f"^{reason}$"):
        probe.read_audio(tool, {}, lambda argv, **kw: failed)


@pytest.mark.parametrize("junk", ["", "Volume: loud", "Volume: 1e9", "\x1b[31mVolume", "Volume: 0.5 [MUTED] x"])
def test_junk_is_unavailable(junk: str) -> None:
    """Text that only looks like an answer is no reading."""
    with pytest.raises(ProbeUnavailable):
        probe.parse_wpctl(junk)
    with pytest.raises(ProbeUnavailable):
        probe.parse_pactl(junk, junk)


def test_backend_choice(tmp_path: Path) -> None:
    tools = {"wpctl", "pactl"}
    which = lambda name: f"/usr/bin/{name}" if name in tools else None
    runtime = {"XDG_RUNTIME_DIR": str(tmp_path)}
    assert probe.choose_backend("auto", runtime, which) == ("pactl", None)  # no PipeWire socket
    (tmp_path / "pipewire-0").touch()
    assert probe.choose_backend("auto", runtime, which) == ("wpctl", None)
    assert probe.choose_backend("pactl", runtime, which) == ("pactl", None)
    assert probe.choose_backend("auto", {}, which)[1].startswith("no audio session: XDG_RUNTIME_DIR is not set")
    tools.clear()
    assert probe.choose_backend("auto", runtime, which)[1] == (
        "neither wpctl (PipeWire) nor pactl (PulseAudio) is installed"
    )
    assert probe.choose_backend("wpctl", runtime, which)[1] == "wpctl (WirePlumber) is not installed"


def test_only_the_sound_servers_variables_reach_the_tools() -> None:
    environ = {"XDG_RUNTIME_DIR": "/run/user/1000", "HOME": "/home/a", "MQTT_PASSWORD": "x", "PULSE_SERVER": "unix:/p"}
    assert probe.audio_env(environ) == {
        "XDG_RUNTIME_DIR": "/run/user/1000",
        "HOME": "/home/a",
        "PULSE_SERVER": "unix:/p",
    }


# ------------------------------------------------------------------ actions, planned


def ctx_with(tmp_path: Path, tools: set[str], pipewire: bool = True, platform: str = "linux") -> ActionContext:
    if pipewire:
        (tmp_path / "pipewire-0").touch()
    environ = {"XDG_RUNTIME_DIR": str(tmp_path), "HOME": "/home/alice", "PATH": "/usr/bin", "SECRET": "s"}
    return ActionContext(
        sysfs_root=tmp_path, platform=platform, environ=environ, which=lambda n: f"/usr/bin/{n}" if n in tools else None
    )


def test_planned_calls(tmp_path: Path) -> None:
    env = (("HOME", "/home/alice"), ("PATH", "/usr/bin"), ("XDG_RUNTIME_DIR", str(tmp_path)))
    wp = ctx_with(tmp_path, {"wpctl", "pactl"})
    assert ACTIONS.get("audio.set_volume").factory(wp, 37.0) == [
        Call(kind="exec", argv=("wpctl", "set-volume", "@DEFAULT_AUDIO_SINK@", "0.37"), timeout=10, env=env)
    ]
    assert ACTIONS.get("audio.mute").factory(wp, "ON") == [
        Call(kind="exec", argv=("wpctl", "set-mute", "@DEFAULT_AUDIO_SINK@", "1"), timeout=10, env=env)
    ]
    assert ACTIONS.get("audio.set_volume").factory(wp, 100, backend="pactl") == [
        Call(kind="exec", argv=("pactl", "set-sink-volume", "@DEFAULT_SINK@", "100%"), timeout=10, env=env)
    ]
    assert ACTIONS.get("audio.mute").factory(wp, "OFF", backend="pactl") == [
        Call(kind="exec", argv=("pactl", "set-sink-mute", "@DEFAULT_SINK@", "0"), timeout=10, env=env)
    ]
    windows = ctx_with(tmp_path, {"nircmd"}, platform="windows")
    assert ACTIONS.get("audio.set_volume").factory(windows, 50)[0].argv == ("nircmd", "setsysvolume", "32768")
    assert ACTIONS.get("audio.mute").factory(windows, "ON")[0].argv == ("nircmd", "mutesysvolume", "1")


@pytest.mark.parametrize("value", [101, -1, "37; rm -rf /", "1e3", math.nan, math.inf, None, True, "--help"])
def test_volumes_outside_0_to_100_are_refused_before_any_call(tmp_path: Path, value: object) -> None:
    with pytest.raises(ActionError):
        ACTIONS.get("audio.set_volume").factory(ctx_with(tmp_path, {"wpctl"}), value)


@pytest.mark.parametrize("value", ["maybe", 2, "1; reboot", None])
def test_mute_takes_only_on_or_off(tmp_path: Path, value: object) -> None:
    with pytest.raises(ActionError):
        ACTIONS.get("audio.mute").factory(ctx_with(tmp_path, {"wpctl"}), value)


def test_without_a_session_the_actions_say_why(tmp_path: Path) -> None:
    bare = ActionContext(sysfs_root=tmp_path, platform="linux", environ={}, which=lambda n: "/usr/bin/" + n)
    assert ACTIONS.get("audio.mute").available(bare).startswith("no audio session")
    with pytest.raises(Unsupported, match="no audio session"):
        ACTIONS.get("audio.mute").factory(bare, "ON")


# ------------------------------------------------------------------ real sound servers


def _wait_until(check, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not come up")
        time.sleep(0.1)


def _start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(procs: list[subprocess.Popen]) -> None:
    for proc in reversed(procs):
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def _answers(tool: str, env: dict[str, str]) -> bool:
    argv = (
        [tool, "get-volume", "@DEFAULT_AUDIO_SINK@"] if tool == "wpctl" else [tool, "get-sink-mute", "@DEFAULT_SINK@"]
    )
    done = subprocess.run(argv, env=env, capture_output=True, timeout=10)
    return done.returncode == 0 and done.stdout.startswith(b"Volume:" if tool == "wpctl" else b"Mute:")


def _start_pulseaudio(runtime: Path) -> tuple[dict[str, str], list]:
    """A private PulseAudio with a null sink in `runtime`: its environment and its process (for _stop)."""
    if not (shutil.which("pulseaudio") and shutil.which("pactl")):
        pytest.skip("PulseAudio (pulseaudio, pactl) is not installed")
    runtime.chmod(0o700)
    env = {"PATH": FIXED_PATH, "LANG": "C.UTF-8", "XDG_RUNTIME_DIR": str(runtime), "HOME": str(runtime)}
    argv = ["pulseaudio", "-n", "--daemonize=no", "--exit-idle-time=-1", "--use-pid-file=no"]
    argv += ["--load=module-native-protocol-unix", "--load=module-null-sink sink_name=pilot_test"]
    return env, [_start(argv, env, runtime / "pulseaudio.log")]


@pytest.fixture
def pulseaudio(tmp_path_factory):
    env, procs = _start_pulseaudio(tmp_path_factory.mktemp("pa-runtime"))
    try:
        _wait_until(lambda: _answers("pactl", env), "PulseAudio")
        yield env
    finally:
        _stop(procs)


@pytest.fixture
def pipewire(tmp_path_factory):
    if not all(shutil.which(t) for t in ("dbus-daemon", "pipewire", "wireplumber", "wpctl", "pw-cli")):
        pytest.skip("PipeWire with WirePlumber (and dbus-daemon) is not installed")
    runtime = tmp_path_factory.mktemp("pw-runtime")
    runtime.chmod(0o700)
    env = {"PATH": FIXED_PATH, "LANG": "C.UTF-8", "XDG_RUNTIME_DIR": str(runtime), "HOME": str(runtime)}
    bus = f"unix:path={runtime}/bus"
    procs = [_start(["dbus-daemon", "--session", "--nofork", f"--address={bus}"], env, runtime / "dbus.log")]
    try:
        _wait_until(lambda: (runtime / "bus").exists(), "the session bus")
        env_bus = {**env, "DBUS_SESSION_BUS_ADDRESS": bus}
        procs.append(_start(["pipewire"], env_bus, runtime / "pipewire.log"))
        _wait_until(lambda: (runtime / "pipewire-0").exists(), "PipeWire")
        procs.append(_start(["wireplumber"], env_bus, runtime / "wireplumber.log"))
        sink = "{ factory.name=support.null-audio-sink node.name=pilot_test media.class=Audio/Sink "
        sink += "object.linger=1 audio.position=[FL FR] }"

        def sink_ready() -> bool:
            if _answers("wpctl", env):
                return True
            subprocess.run(["pw-cli", "create-node", "adapter", sink], env=env, capture_output=True, timeout=10)
            return _answers("wpctl", env)

        _wait_until(sink_ready, "the PipeWire sink")
        yield env
    finally:
        _stop(procs)


def _read_now(env: dict[str, str], backend: str) -> tuple:
    worker = Worker(start=False)
    readers = [
        PROBES.get(name).factory(ProbeContext(), backend=backend, environ=env, worker=worker)
        for name in ("audio.volume", "audio.muted")
    ]
    worker.run_pending()
    return tuple(read() for read in readers)


@pytest.mark.parametrize("server, backend", [("pulseaudio", "pactl"), ("pipewire", "wpctl")])
def test_actions_change_a_real_sound_server_and_the_probes_read_it_back(
    request, tmp_path: Path, server: str, backend: str
) -> None:
    env = request.getfixturevalue(server)
    assert _read_now(env, backend) == (100, False)
    ctx = ActionContext(sysfs_root=tmp_path, platform="linux", environ=env, which=shutil.which)
    system = System()
    for call in ACTIONS.get("audio.set_volume").factory(ctx, 37, backend=backend):
        assert system.perform(call).returncode == 0
    for call in ACTIONS.get("audio.mute").factory(ctx, "ON", backend=backend):
        assert system.perform(call).returncode == 0
    assert _read_now(env, backend) == (37, True)
    assert ACTIONS.get("audio.set_volume").state(ctx, backend=backend) == 37
    assert ACTIONS.get("audio.mute").state(ctx, backend=backend) == "ON"
    for call in ACTIONS.get("audio.mute").factory(ctx, "OFF", backend=backend):
        system.perform(call)
    assert _read_now(env, backend) == (37, False)


def test_wpctl_without_a_default_sink_says_what_it_printed() -> None:
    with pytest.raises(ProbeUnavailable) as caught:
        probe.parse_wpctl("Translate ID error: '-1' is not a valid ID (returned by default-nodes-api)\n")
    assert str(caught.value) == (
        "wpctl printed no volume (Translate ID error: '-1' is not a valid ID (returned by default-nodes-api))"
    )


# ------------------------------------------------------------------ in-process over the native socket


@pytest.fixture
def native(monkeypatch):
    """A fresh registry of native connections, closed after the test."""
    monkeypatch.setattr(_pulse, "_servers", {})
    yield _pulse._servers
    for server in list(_pulse._servers.values()):
        server.close()


@pytest.fixture
def pipewire_pulse(pipewire):
    """The PipeWire above with pipewire-pulse serving PulseAudio's native socket."""
    if not (shutil.which("pipewire-pulse") and shutil.which("pactl")):
        pytest.skip("pipewire-pulse (and pactl) is not installed")
    runtime = Path(pipewire["XDG_RUNTIME_DIR"])
    procs = [_start(["pipewire-pulse"], pipewire, runtime / "pipewire-pulse.log")]
    try:
        _wait_until(lambda: _answers("pactl", pipewire), "pipewire-pulse")
        yield pipewire
    finally:
        _stop(procs)


def _pactl(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(["pactl", *args], env=env, capture_output=True, text=True, check=True, timeout=10)
    return done.stdout


def _children() -> set[str]:
    """This process's child processes, from /proc (a `pactl subscribe` watcher would be one)."""
    return {pid for task in Path("/proc/self/task").iterdir() for pid in (task / "children").read_text().split()}


@pytest.mark.parametrize("server", ["pulseaudio", "pipewire_pulse"])
def test_volume_and_mute_read_in_process_are_what_pactl_prints(request, server: str) -> None:
    env = request.getfixturevalue(server)
    native = _pulse.Server(_pulse.socket_path(env)[0], env)
    try:
        for volume, mute in (("100%", "0"), ("37%", "1"), ("32767", "0"), ("150%", "1"), ("0%", "0")):
            _pactl(env, "set-sink-volume", "@DEFAULT_SINK@", volume)
            _pactl(env, "set-sink-mute", "@DEFAULT_SINK@", mute)
            printed = set(re.findall(r"/\s*(\d+)%\s*/", _pactl(env, "get-sink-volume", "@DEFAULT_SINK@")))
            assert len(printed) == 1, printed  # the same on every channel
            sink = native.sink()
            assert sink.percent == int(printed.pop())
            assert sink.muted is (_pactl(env, "get-sink-mute", "@DEFAULT_SINK@").strip() == "Mute: yes")
    finally:
        native.close()


def test_in_process_a_change_is_seen_at_the_next_reading_and_only_then_read_again(pulseaudio, native) -> None:
    children, threads = _children(), threading.active_count()
    worker = Worker(start=False)
    volume, muted = (
        PROBES.get(name).factory(ProbeContext(), environ=pulseaudio, worker=worker)  # backend auto
        for name in ("audio.volume", "audio.muted")
    )
    assert len(native) == 1  # one connection for both probes
    worker.run_pending()
    assert (volume(), muted()) == (100, False)
    for _ in range(5):
        assert (volume(), muted()) == (100, False)
    assert worker.pending() == []  # no change announced: the server is not asked again
    _pactl(pulseaudio, "set-sink-volume", "@DEFAULT_SINK@", "37%")
    _wait_until(lambda: volume() is not None and worker.pending() != [], "the volume change event")
    worker.run_pending()
    assert (volume(), muted()) == (37, False)
    _pactl(pulseaudio, "set-sink-mute", "@DEFAULT_SINK@", "1")
    _wait_until(lambda: muted() is not None and worker.pending() != [], "the mute change event")
    worker.run_pending()
    assert (volume(), muted()) == (37, True)
    assert worker.pending() == []
    assert _children() == children and threading.active_count() == threads  # no watcher process, no thread


def test_a_killed_server_is_unavailable_and_readings_resume_after_the_reconnect_delay(tmp_path_factory) -> None:
    runtime = tmp_path_factory.mktemp("pa-restart")
    env, procs = _start_pulseaudio(runtime)
    now = [1000.0]
    native = _pulse.Server(_pulse.socket_path(env)[0], env, clock=lambda: now[0])
    try:
        _wait_until(lambda: _answers("pactl", env), "PulseAudio")
        assert native.sink() == _pulse.Sink("pilot_test", (0x10000, 0x10000), False)
        _stop(procs)
        _wait_until(native.changed, "the hang-up")  # seen at a look, without blocking
        with pytest.raises(ProbeUnavailable, match="^the sound server closed the connection$"):
            native.sink()
        now[0] += _pulse.RECONNECT_AFTER
        with pytest.raises(ProbeUnavailable, match=f"^no sound server at {runtime}/pulse/native: "):
            native.sink()  # tried again after the delay: still gone
        _, procs = _start_pulseaudio(runtime)
        _wait_until(lambda: _answers("pactl", env), "PulseAudio, again")
        with pytest.raises(ProbeUnavailable, match="^no sound server at"):
            native.sink()  # not before the delay
        now[0] += _pulse.RECONNECT_AFTER
        assert native.sink().percent == 100
    finally:
        native.close()
        _stop(procs)


def test_auto_falls_back_to_the_tools_where_no_native_socket_answers(tmp_path: Path, native) -> None:
    worker = Worker(start=False)
    env = {"XDG_RUNTIME_DIR": str(tmp_path), "HOME": str(tmp_path)}
    which = lambda name: f"/usr/bin/{name}" if name == "pactl" else None
    PROBES.get("audio.volume").factory(ProbeContext(), environ=env, worker=worker, which=which)
    assert worker.pending() == [f"audio pactl {tmp_path}"]
    (tmp_path / "pipewire-0").touch()
    which = lambda name: f"/usr/bin/{name}"
    PROBES.get("audio.muted").factory(ProbeContext(), environ=env, worker=worker, which=which)
    assert worker.pending()[-1] == f"audio wpctl {tmp_path}"
    with pytest.raises(ProbeUnavailable) as caught:
        PROBES.get("audio.muted").factory(ProbeContext(), environ=env, worker=worker, which=lambda n: None)
    assert str(caught.value) == (
        f"no sound server at {tmp_path}/pulse/native: No such file or directory; "
        "neither wpctl (PipeWire) nor pactl (PulseAudio) is installed"
    )
