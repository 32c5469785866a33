"""power.*: the exact calls planned for each backend, delays, and the unsupported paths."""

from __future__ import annotations

import pytest

from pilot.actions import ActionError, Call, Unsupported, power
from pilot.registry import ACTIONS

BUS = ("busctl", "call", "org.freedesktop.login1", "/org/freedesktop/login1", "org.freedesktop.login1.Manager")
NOW = 1_764_246_000.25  # a fixed "time.time()" for the scheduled-shutdown tests
BOOTED = lambda: True  # noqa: E731
NOT_BOOTED = lambda: False  # noqa: E731


def execs(*argvs: tuple[str, ...]) -> list[Call]:
    return [Call(kind="exec", argv=argv, timeout=30.0) for argv in argvs]


@pytest.mark.parametrize(
    "name, method",
    [
        ("power.shutdown", "PowerOff"),
        ("power.reboot", "Reboot"),
        ("power.suspend", "Suspend"),
        ("power.hibernate", "Hibernate"),
    ],
)
def test_logind_is_used_when_busctl_exists_and_systemd_runs(make_ctx, name, method) -> None:
    ctx = make_ctx(tools=["busctl", "systemctl"])
    calls = ACTIONS.get(name).factory(ctx, "PRESS", booted=BOOTED)
    assert calls == execs(BUS + (method, "b", "true"))


@pytest.mark.parametrize(
    "name, verb",
    [
        ("power.shutdown", "poweroff"),
        ("power.reboot", "reboot"),
        ("power.suspend", "suspend"),
        ("power.hibernate", "hibernate"),
    ],
)
def test_systemctl_when_systemd_is_not_running_or_asked_for(make_ctx, name, verb) -> None:
    factory = ACTIONS.get(name).factory
    assert factory(make_ctx(tools=["busctl", "systemctl"]), "PRESS", booted=NOT_BOOTED) == execs(("systemctl", verb))
    assert factory(make_ctx(tools=["systemctl"]), "PRESS", booted=BOOTED) == execs(("systemctl", verb))
    assert factory(make_ctx(tools=["busctl", "systemctl"]), "PRESS", method="systemctl", booted=BOOTED) == execs(
        ("systemctl", verb)
    )


def test_delayed_shutdown_and_reboot_through_logind_schedule_an_absolute_time(make_ctx) -> None:
    ctx = make_ctx(tools=["busctl"])
    usec = str(int(round((NOW + 60) * 1_000_000)))
    assert usec == "1764246060250000"
    assert power.shutdown(ctx, "PRESS", delay="1m", clock=lambda: NOW, booted=BOOTED) == execs(
        BUS + ("ScheduleShutdown", "st", "poweroff", usec)
    )
    assert power.reboot(ctx, "PRESS", delay="1h30m", clock=lambda: NOW, booted=BOOTED) == execs(
        BUS + ("ScheduleShutdown", "st", "reboot", str(int(round((NOW + 5400) * 1_000_000))))
    )


def test_delay_without_logind_uses_shutdown_in_whole_minutes_rounded_up(make_ctx) -> None:
    ctx = make_ctx(tools=["systemctl", "shutdown"])
    assert power.shutdown(ctx, delay="1m", booted=NOT_BOOTED) == execs(("shutdown", "-h", "+1"))
    assert power.shutdown(ctx, delay="90s", booted=NOT_BOOTED) == execs(("shutdown", "-h", "+2"))
    assert power.reboot(ctx, delay="10s", booted=NOT_BOOTED) == execs(("shutdown", "-r", "+1"))
    assert power.reboot(ctx, delay="2h", method="systemctl", booted=BOOTED) == execs(("shutdown", "-r", "+120"))


def test_zero_delay_means_at_once(make_ctx) -> None:
    ctx = make_ctx(tools=["busctl"])
    assert power.shutdown(ctx, delay="0s", booted=BOOTED) == execs(BUS + ("PowerOff", "b", "true"))


def test_delayed_shutdown_without_logind_needs_shutdown_binary(make_ctx) -> None:
    with pytest.raises(Unsupported, match="shutdown is not installed"):
        power.shutdown(make_ctx(tools=["systemctl"]), delay="5m", booted=NOT_BOOTED)


@pytest.mark.parametrize("factory", [power.suspend, power.hibernate])
def test_suspend_and_hibernate_refuse_a_delay(make_ctx, factory) -> None:
    with pytest.raises(ActionError, match="delay is only supported for power.shutdown and power.reboot"):
        factory(make_ctx(tools=["busctl", "systemctl"]), delay="5m", booted=BOOTED)
    assert "delay" not in ACTIONS.get(f"power.{factory.__name__}").params["properties"]


def test_bad_delay_and_method_are_action_errors(make_ctx) -> None:
    ctx = make_ctx(tools=["busctl", "systemctl"])
    with pytest.raises(ActionError, match="'soon' is not a duration"):
        power.shutdown(ctx, delay="soon", booted=BOOTED)
    with pytest.raises(ActionError, match="method must be auto, logind or systemctl"):
        power.reboot(ctx, method="sysvinit", booted=BOOTED)


def test_unsupported_paths_say_why(make_ctx) -> None:
    with pytest.raises(Unsupported, match="neither logind .* nor systemctl"):
        power.shutdown(make_ctx(tools=[]), booted=BOOTED)
    with pytest.raises(Unsupported, match="busctl .* not installed"):
        power.shutdown(make_ctx(tools=["systemctl"]), method="logind", booted=BOOTED)
    with pytest.raises(Unsupported, match="systemd is not running here"):
        power.shutdown(make_ctx(tools=["busctl"]), method="logind", booted=NOT_BOOTED)
    with pytest.raises(Unsupported, match="systemctl is not installed"):
        power.reboot(make_ctx(tools=["busctl"]), method="systemctl", booted=BOOTED)
    with pytest.raises(Unsupported, match="not supported on darwin"):
        power.suspend(make_ctx(tools=["busctl", "systemctl"], platform="darwin"), booted=BOOTED)


def test_available_reports_the_same_reasons(make_ctx) -> None:
    entry = ACTIONS.get("power.shutdown")
    assert entry.available(make_ctx(tools=["systemctl"]), booted=NOT_BOOTED) is None
    assert entry.available(make_ctx(tools=["busctl"]), booted=BOOTED) is None
    assert "neither logind" in entry.available(make_ctx(tools=[]), booted=NOT_BOOTED)
    assert "systemd is not running" in entry.available(make_ctx(tools=["busctl"]), method="logind", booted=NOT_BOOTED)


def test_systemd_booted_checks_the_runtime_directory(tmp_path) -> None:
    assert power.systemd_booted(str(tmp_path)) is True
    assert power.systemd_booted(str(tmp_path / "missing")) is False


def test_windows_dispatch(make_ctx) -> None:
    ctx = make_ctx(platform="windows")
    assert power.shutdown(ctx) == execs(("shutdown", "/s", "/t", "0"))
    assert power.shutdown(ctx, delay="1m") == execs(("shutdown", "/s", "/t", "60"))
    assert power.reboot(ctx, delay="90s") == execs(("shutdown", "/r", "/t", "90"))
    assert power.hibernate(ctx) == execs(("shutdown", "/h"))
    assert power.suspend(ctx) == execs(("rundll32.exe", "powrprof.dll,SetSuspendState", "0,1,0"))
    with pytest.raises(Unsupported, match="Linux-only"):
        power.shutdown(ctx, method="logind")


# ------------------------------------------------------------ power.profile


@pytest.mark.parametrize("profile", ["power-saver", "balanced", "performance"])
def test_profile_sets_with_powerprofilesctl(make_ctx, profile) -> None:
    assert power.profile(make_ctx(tools=["powerprofilesctl"]), profile) == execs(("powerprofilesctl", "set", profile))


def test_profile_refuses_unknown_profiles_and_missing_daemon(make_ctx) -> None:
    with pytest.raises(
        ActionError, match="'turbo' is not a power profile; choose one of power-saver, balanced, performance"
    ):
        power.profile(make_ctx(tools=["powerprofilesctl"]), "turbo")
    with pytest.raises(Unsupported, match="powerprofilesctl .* not installed"):
        power.profile(make_ctx(tools=[]), "balanced")
    entry = ACTIONS.get("power.profile")
    assert "not installed" in entry.available(make_ctx(tools=[]))
    assert entry.available(make_ctx(tools=["powerprofilesctl"])) is None
    assert entry.state is None


def test_profile_on_windows_uses_powercfg_schemes(make_ctx) -> None:
    ctx = make_ctx(platform="windows")
    assert power.profile(ctx, "power-saver") == execs(("powercfg", "/setactive", "SCHEME_MAX"))
    assert power.profile(ctx, "balanced") == execs(("powercfg", "/setactive", "SCHEME_BALANCED"))
    assert power.profile(ctx, "performance") == execs(("powercfg", "/setactive", "SCHEME_MIN"))
