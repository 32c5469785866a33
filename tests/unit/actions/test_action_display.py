"""display.power backends by session environment, display.brightness on a sysfs backlight tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from pilot.actions import ActionError, Call, Unsupported, display
from pilot.registry import ACTIONS

MUTTER = (
    "busctl",
    "--user",
    "call",
    "org.gnome.Mutter.DisplayConfig",
    "/org/gnome/Mutter/DisplayConfig",
    "org.freedesktop.DBus.Properties",
    "Set",
    "ssv",
    "org.gnome.Mutter.DisplayConfig",
    "PowerSaveMode",
    "i",
)
TOOLS = ["busctl", "kscreen-doctor", "xset"]


def test_x11_uses_xset_with_only_the_display_environment(make_ctx) -> None:
    environ = {
        "DISPLAY": ":0",
        "XAUTHORITY": "/home/a/.Xauthority",
        "PATH": "/usr/bin",
        "HOME": "/home/a",
        "SECRET_TOKEN": "x",
    }
    ctx = make_ctx(tools=TOOLS, environ=environ)
    env = (("DISPLAY", ":0"), ("PATH", "/usr/bin"), ("XAUTHORITY", "/home/a/.Xauthority"))
    assert display.power(ctx, "OFF") == [
        Call(kind="exec", argv=("xset", "dpms", "force", "off"), timeout=30.0, env=env)
    ]
    assert display.power(ctx, "ON") == [Call(kind="exec", argv=("xset", "dpms", "force", "on"), timeout=30.0, env=env)]
    assert display.power(ctx, "PRESS")[0].argv == ("xset", "dpms", "force", "off")  # a button turns it off


def test_gnome_wayland_sets_mutter_power_save_mode(make_ctx) -> None:
    environ = {
        "XDG_CURRENT_DESKTOP": "ubuntu:GNOME",
        "WAYLAND_DISPLAY": "wayland-0",
        "DISPLAY": ":0",
        "DBUS_SESSION_BUS_ADDRESS": "unix:path=/run/user/1000/bus",
        "XDG_RUNTIME_DIR": "/run/user/1000",
    }
    ctx = make_ctx(tools=TOOLS, environ=environ)
    env = (("DBUS_SESSION_BUS_ADDRESS", "unix:path=/run/user/1000/bus"), ("XDG_RUNTIME_DIR", "/run/user/1000"))
    assert display.power(ctx, "OFF") == [Call(kind="exec", argv=MUTTER + ("3",), timeout=30.0, env=env)]
    assert display.power(ctx, "ON") == [Call(kind="exec", argv=MUTTER + ("0",), timeout=30.0, env=env)]


def test_kde_wayland_uses_kscreen_doctor(make_ctx) -> None:
    environ = {"XDG_CURRENT_DESKTOP": "KDE", "WAYLAND_DISPLAY": "wayland-0", "XDG_RUNTIME_DIR": "/run/user/1000"}
    ctx = make_ctx(tools=TOOLS, environ=environ)
    env = (("WAYLAND_DISPLAY", "wayland-0"), ("XDG_RUNTIME_DIR", "/run/user/1000"))
    assert display.power(ctx, "OFF") == [
        Call(kind="exec", argv=("kscreen-doctor", "--dpms", "off"), timeout=30.0, env=env)
    ]
    assert display.power(ctx, True)[0].argv == ("kscreen-doctor", "--dpms", "on")


def test_power_value_must_be_on_or_off(make_ctx) -> None:
    ctx = make_ctx(tools=TOOLS, environ={"DISPLAY": ":0"})
    with pytest.raises(ActionError, match="display.power takes ON or OFF, not 'dim'"):
        display.power(ctx, "dim")


@pytest.mark.parametrize(
    "environ, tools, reason",
    [
        ({}, TOOLS, "no X11 display or supported Wayland desktop here"),
        (
            {"WAYLAND_DISPLAY": "wayland-1", "XDG_CURRENT_DESKTOP": "sway", "DISPLAY": ":0"},
            TOOLS,
            "no X11 display or supported Wayland desktop here",
        ),  # Xwayland's DISPLAY is not used
        ({"DISPLAY": ":0"}, [], "xset is not installed"),
        ({"WAYLAND_DISPLAY": "w", "XDG_CURRENT_DESKTOP": "GNOME"}, [], "busctl .* not installed"),
        ({"WAYLAND_DISPLAY": "w", "XDG_CURRENT_DESKTOP": "KDE"}, [], "kscreen-doctor .* not installed"),
    ],
)
def test_power_unsupported(make_ctx, environ, tools, reason) -> None:
    ctx = make_ctx(tools=tools, environ=environ)
    with pytest.raises(Unsupported, match=reason):
        display.power(ctx, "OFF")
    assert ACTIONS.get("display.power").available(ctx)


def test_power_on_windows_needs_nircmd(make_ctx) -> None:
    assert display.power(make_ctx(platform="windows", tools=["nircmd"]), "OFF") == [
        Call(kind="exec", argv=("nircmd", "monitor", "off"), timeout=30.0)
    ]
    with pytest.raises(Unsupported, match="NirCmd"):
        display.power(make_ctx(platform="windows"), "OFF")


# ------------------------------------------------------------ display.brightness


def backlight(root: Path, name: str, brightness: int, top: int, kind: str | None = None) -> Path:
    # Made-up values in the layout of /sys/class/backlight/<name>/{brightness,max_brightness,type}:
    # no recorded backlight tree exists under tests/fixtures.
    light = root / "class" / "backlight" / name
    light.mkdir(parents=True)
    (light / "brightness").write_text(f"{brightness}\n")
    (light / "max_brightness").write_text(f"{top}\n")
    if kind:
        (light / "type").write_text(f"{kind}\n")
    return light


def test_brightness_scales_to_max_brightness(make_ctx, tmp_path) -> None:
    root = tmp_path / "sys"
    light = backlight(root, "intel_backlight", 9000, 19393)
    ctx = make_ctx(sysfs_root=root)
    path = str(light / "brightness")
    assert display.brightness(ctx, 50.0) == [Call(kind="write", path=path, data="9696")]  # 9696.5 rounds to even
    assert display.brightness(ctx, 100) == [Call(kind="write", path=path, data="19393")]
    assert display.brightness(ctx, 0) == [Call(kind="write", path=path, data="0")]
    assert display.brightness(ctx, 33.3) == [Call(kind="write", path=path, data="6458")]
    entry = ACTIONS.get("display.brightness")
    assert entry.state(ctx) == round(9000 / 19393 * 100, 1) == 46.4
    assert entry.available(ctx) is None


def test_brightness_picks_a_named_device_or_prefers_firmware(make_ctx, tmp_path) -> None:
    root = tmp_path / "sys"
    backlight(root, "acpi_video0", 5, 10, "firmware")
    backlight(root, "amdgpu_bl0", 128, 255, "raw")
    ctx = make_ctx(sysfs_root=root)
    assert display.brightness(ctx, 50)[0].path.endswith("class/backlight/acpi_video0/brightness")
    assert display.brightness(ctx, 50, device="amdgpu_bl0") == [
        Call(kind="write", path=str(root / "class/backlight/amdgpu_bl0/brightness"), data="128")
    ]  # 127.5 -> 128
    assert ACTIONS.get("display.brightness").state(ctx, device="amdgpu_bl0") == 50.2
    with pytest.raises(Unsupported, match="no backlight named 'intel_backlight' .*found: acpi_video0, amdgpu_bl0"):
        display.brightness(ctx, 50, device="intel_backlight")


def test_brightness_rejects_out_of_range_values(make_ctx, tmp_path) -> None:
    root = tmp_path / "sys"
    backlight(root, "intel_backlight", 1, 100)
    ctx = make_ctx(sysfs_root=root)
    with pytest.raises(ActionError, match="between 0 and 100 %, not 101"):
        display.brightness(ctx, 101)
    with pytest.raises(ActionError, match="between 0 and 100 %, not -1"):
        display.brightness(ctx, -1)
    with pytest.raises(ActionError, match="needs a number"):
        display.brightness(ctx, "bright")


def test_no_backlight_is_unsupported(make_ctx) -> None:
    ctx = make_ctx()
    with pytest.raises(Unsupported, match="no backlight in"):
        display.brightness(ctx, 50)
    entry = ACTIONS.get("display.brightness")
    assert "no backlight" in entry.available(ctx)
    assert entry.state(ctx) is None


def test_zero_max_brightness_is_unsupported(make_ctx, tmp_path) -> None:
    root = tmp_path / "sys"
    backlight(root, "broken", 0, 0)
    with pytest.raises(Unsupported, match="no usable max_brightness"):
        display.brightness(make_ctx(sysfs_root=root), 50)
