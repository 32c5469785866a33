"""Windows argv builders for the built-in actions: pure functions, no imports of Windows modules.

The Linux action modules dispatch here when `ctx.platform == "windows"`. These are
tested at the argv layer only: UNTESTED ON REAL WINDOWS. Notes for whoever tries:

- `shutdown /s /t N` with N > 0 implies `/f` (running applications are closed without warning).
- `SetSuspendState 0,1,0` *hibernates* instead of sleeping when hibernation is enabled
  (`powercfg /hibernate off` makes it sleep); this is the long-standing rundll32 caveat.
- `LockWorkStation` and `shutdown /l` act on the session the agent runs in, so the agent
  must run in the user's interactive session (not as a service) for lock and logout.
"""

from __future__ import annotations

from pilot.actions._base import ActionError

# shutdown.exe's own limit for /t (ten years, in seconds).
MAX_SHUTDOWN_DELAY = 315_360_000

# powercfg's aliases for the three built-in schemes, by power-profiles-daemon's names.
POWER_SCHEMES = {"power-saver": "SCHEME_MAX", "balanced": "SCHEME_BALANCED", "performance": "SCHEME_MIN"}


def _seconds(delay: float) -> str:
    seconds = int(-(-delay // 1))  # whole seconds, rounded up: a delay is a minimum
    if not 0 <= seconds <= MAX_SHUTDOWN_DELAY:
        raise ActionError(f"Windows can delay a shutdown by at most {MAX_SHUTDOWN_DELAY} s")
    return str(seconds)


def shutdown(delay: float = 0) -> list[str]:
    return ["shutdown", "/s", "/t", _seconds(delay)]


def reboot(delay: float = 0) -> list[str]:
    return ["shutdown", "/r", "/t", _seconds(delay)]


def hibernate() -> list[str]:
    return ["shutdown", "/h"]


def suspend() -> list[str]:
    return ["rundll32.exe", "powrprof.dll,SetSuspendState", "0,1,0"]


def lock() -> list[str]:
    return ["rundll32.exe", "user32.dll,LockWorkStation"]


def logout() -> list[str]:
    return ["shutdown", "/l"]


def display_power(on: bool, nircmd: str = "nircmd") -> list[str]:
    """NirCmd's `monitor on|off` (a PowerShell one-liner would need a shell, which Pilot never uses)."""
    return [nircmd, "monitor", "on" if on else "off"]


def power_profile(profile: str) -> list[str]:
    if profile not in POWER_SCHEMES:
        raise ActionError(f"'{profile}' is not a power profile; choose one of {', '.join(POWER_SCHEMES)}")
    return ["powercfg", "/setactive", POWER_SCHEMES[profile]]


# Windows' media keys (virtual-key codes): what a keyboard's media buttons send, and what every
# player that honours media keys (through the system media transport controls) reacts to.
MEDIA_KEYS = {"play_pause": 0xB3, "next": 0xB0, "previous": 0xB1}


def media_key(control: str, nircmd: str = "nircmd") -> list[str]:
    """NirCmd's `sendkeypress` with the VK_MEDIA_* code; Windows has no separate play or pause key."""
    if control not in MEDIA_KEYS:
        raise ActionError(f"Windows has no media key for {control.replace('_', ' ')}: use media.play_pause")
    return [nircmd, "sendkeypress", f"0x{MEDIA_KEYS[control]:X}"]
