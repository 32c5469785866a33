"""Where the shipped schemas and profile packs live, installed or in a checkout."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_CHECKOUT = _PACKAGE.parent.parent


def _first_existing(name: str) -> Path:
    for candidate in (_PACKAGE / "data" / name, _CHECKOUT / name):
        if candidate.is_dir():
            return candidate
    return _PACKAGE / "data" / name


def schemas_dir() -> Path:
    return _first_existing("schemas")


def profiles_dir() -> Path:
    return _first_existing("profiles")
