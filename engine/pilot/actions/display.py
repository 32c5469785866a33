"""Display actions: screen power (DPMS) and backlight brightness.

`display.power` talks to the user's display server, so the agent needs that session's
environment (it reads DISPLAY, XAUTHORITY, WAYLAND_DISPLAY, XDG_CURRENT_DESKTOP,
XDG_RUNTIME_DIR and DBUS_SESSION_BUS_ADDRESS from its own environment and passes only
those on). Backends, first match wins:

- GNOME on Wayland (XDG_CURRENT_DESKTOP contains GNOME, WAYLAND_DISPLAY set): Mutter's
  `PowerSaveMode` property over the session bus with `busctl --user` (0 = on, 3 = off).
- KDE Plasma on Wayland (XDG_CURRENT_DESKTOP contains KDE, WAYLAND_DISPLAY set): `kscreen-doctor --dpms on|off`.
- X11 (DISPLAY set, no WAYLAND_DISPLAY): `xset dpms force on|off`. Under another Wayland
  compositor DISPLAY belongs to Xwayland, where xset cannot switch the screen, so that is
  reported as unsupported rather than tried.
- Windows: NirCmd's `monitor on|off` when nircmd is on PATH (untested on real Windows).

`display.brightness` writes the backlight's sysfs `brightness` file, which needs root or
a udev rule granting write access (as the `video` group rules of brightnessctl do).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pilot.actions import _windows
from pilot.actions._base import ActionContext, ActionError, Call, Unsupported
from pilot.actions._common import SAFE_NAME, as_number, as_switch, env_from, exec_call, is_windows, read_int, read_text
from pilot.params import params, prop
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
NO_DISPLAY = "no X11 display or supported Wayland desktop here"


def _desktops(ctx: ActionContext) -> set[str]:
    return {part.strip().upper() for part in ctx.environ.get("XDG_CURRENT_DESKTOP", "").split(":") if part.strip()}


def _power_backend(ctx: ActionContext) -> str:
    """'gnome', 'kde', 'x11' or 'windows'; Unsupported with the reason when none fits."""
    if is_windows(ctx):
        if not ctx.which("nircmd"):
            raise Unsupported("display.power needs NirCmd (nircmd.exe on PATH) on Windows")
        return "windows"
    if ctx.platform != "linux":
        raise Unsupported(f"display.power is not supported on {ctx.platform or 'this system'}")
    wayland = bool(ctx.environ.get("WAYLAND_DISPLAY"))
    desktops = _desktops(ctx)
    if wayland and "GNOME" in desktops:
        if not ctx.which("busctl"):
            raise Unsupported("busctl (systemd) is not installed, so GNOME's display settings cannot be reached")
        return "gnome"
    if wayland and "KDE" in desktops:
        if not ctx.which("kscreen-doctor"):
            raise Unsupported("kscreen-doctor (libkscreen) is not installed")
        return "kde"
    if ctx.environ.get("DISPLAY") and not wayland:
        if not ctx.which("xset"):
            raise Unsupported("xset is not installed (x11-xserver-utils / xorg-xset)")
        return "x11"
    raise Unsupported(NO_DISPLAY)


def _power_available(ctx: ActionContext, **_: Any) -> str | None:
    try:
        _power_backend(ctx)
    except ActionError as exc:
        return str(exc)
    return None


@ACTIONS.register(
    "display.power", params=params({}), privilege=None, platforms=("switch", "button"), available=_power_available
)
def power(ctx: ActionContext, value: Any) -> list[Call]:
    """Turn the screen on or off (DPMS), as a switch: ON or OFF.

    As a button (value PRESS) it turns the screen off. No state is published: neither xset
    nor Mutter nor KScreen offers a cheap read, and moving the mouse turns the screen back on.
    """
    on = False if value == "PRESS" else as_switch(value, "display.power")
    backend = _power_backend(ctx)
    if backend == "windows":
        return [exec_call(_windows.display_power(on))]
    if backend == "gnome":
        return [
            exec_call(
                MUTTER + ("0" if on else "3",), env=env_from(ctx, ("DBUS_SESSION_BUS_ADDRESS", "XDG_RUNTIME_DIR"))
            )
        ]
    if backend == "kde":
        return [
            exec_call(
                ("kscreen-doctor", "--dpms", "on" if on else "off"),
                env=env_from(ctx, ("WAYLAND_DISPLAY", "XDG_RUNTIME_DIR", "DBUS_SESSION_BUS_ADDRESS")),
            )
        ]
    return [exec_call(("xset", "dpms", "force", "on" if on else "off"), env=env_from(ctx, ("DISPLAY", "XAUTHORITY")))]


# ------------------------------------------------------------ display.brightness

_TYPE_RANK = {"firmware": 0, "platform": 1, "raw": 2}


def _backlights(ctx: ActionContext) -> list[Path]:
    """Backlights in the order a desktop prefers them (firmware, platform, raw), then by name."""
    root = ctx.sys("class", "backlight")
    try:
        found = [p for p in root.iterdir() if p.is_dir() and (p / "max_brightness").exists()]
    except OSError:
        return []
    return sorted(found, key=lambda p: (_TYPE_RANK.get((read_text(p / "type") or "").strip(), 3), p.name))


def _backlight(ctx: ActionContext, device: str | None) -> tuple[Path, int]:
    if is_windows(ctx) or ctx.platform not in ("linux",):
        raise Unsupported(f"display.brightness needs a Linux backlight; not supported on {ctx.platform}")
    lights = _backlights(ctx)
    if device is not None:
        matches = [p for p in lights if p.name == device]
        if not matches:
            names = ", ".join(p.name for p in lights) or "none"
            raise Unsupported(f"no backlight named '{device}' in {ctx.sys('class', 'backlight')} (found: {names})")
        light = matches[0]
    elif lights:
        light = lights[0]
    else:
        raise Unsupported(f"no backlight in {ctx.sys('class', 'backlight')} (external monitors are not supported)")
    top = read_int(light / "max_brightness")
    if not top or top <= 0:
        raise Unsupported(f"the backlight {light.name} reports no usable max_brightness")
    return light, top


def _brightness_available(ctx: ActionContext, device: str | None = None, **_: Any) -> str | None:
    try:
        _backlight(ctx, device)
    except ActionError as exc:
        return str(exc)
    return None


def _brightness_state(ctx: ActionContext, device: str | None = None, **_: Any) -> float | None:
    try:
        light, top = _backlight(ctx, device)
    except ActionError:
        return None
    now = read_int(light / "brightness")
    if now is None:
        return None
    return round(now / top * 100, 1)


_DEVICE = prop(
    "string",
    "Backlight name under /sys/class/backlight (for example intel_backlight); "
    "default: the first, preferring firmware, then platform, then raw backlights.",
    pattern=SAFE_NAME,
)


@ACTIONS.register(
    "display.brightness",
    params=params({"device": _DEVICE}, examples=[{"device": "intel_backlight"}]),
    privilege="root: write /sys/class/backlight/*/brightness",
    platforms=("number",),
    available=_brightness_available,
    state=_brightness_state,
)
def brightness(ctx: ActionContext, value: Any, *, device: str | None = None) -> list[Call]:
    """Set the screen backlight brightness in percent (0 to 100).

    The percentage is scaled to the device's max_brightness and rounded; 0 % is the lowest
    level the device has, which on many laptops switches the backlight off entirely.
    """
    percent = as_number(value, "display.brightness")
    if not 0 <= percent <= 100:
        raise ActionError(f"brightness must be between 0 and 100 %, not {percent:g}")
    light, top = _backlight(ctx, device)
    level = round(percent / 100 * top)
    return [Call(kind="write", path=str(light / "brightness"), data=str(level))]
