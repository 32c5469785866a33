"""The Windows argv builders (argv layer only: untested on real Windows)."""

from __future__ import annotations

import pytest

from pilot.actions import ActionError, _windows


def test_argv() -> None:
    assert _windows.shutdown() == ["shutdown", "/s", "/t", "0"]
    assert _windows.shutdown(90) == ["shutdown", "/s", "/t", "90"]
    assert _windows.shutdown(0.2) == ["shutdown", "/s", "/t", "1"]  # rounded up: a delay is a minimum
    assert _windows.reboot(60) == ["shutdown", "/r", "/t", "60"]
    assert _windows.hibernate() == ["shutdown", "/h"]
    assert _windows.suspend() == ["rundll32.exe", "powrprof.dll,SetSuspendState", "0,1,0"]
    assert _windows.lock() == ["rundll32.exe", "user32.dll,LockWorkStation"]
    assert _windows.logout() == ["shutdown", "/l"]
    assert _windows.display_power(False) == ["nircmd", "monitor", "off"]
    assert _windows.display_power(True) == ["nircmd", "monitor", "on"]
    assert _windows.power_profile("balanced") == ["powercfg", "/setactive", "SCHEME_BALANCED"]


def test_limits() -> None:
    with pytest.raises(ActionError, match="at most 315360000 s"):
        _windows.shutdown(_windows.MAX_SHUTDOWN_DELAY + 1)
    with pytest.raises(ActionError, match="not a power profile"):
        _windows.power_profile("turbo")
