"""Shared test fixtures: repository paths and the recorded fixtures beside the checkout."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# `pilot run` refuses to start as root (see docs/service.md). The tests run as root in CI and start
# `pilot run` many times; this lets them (subprocesses inherit it). tests/service checks the refusal itself.
os.environ.setdefault("PILOT_ALLOW_ROOT", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PILOT_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"recorded fixtures not found at {SHARED} (set PILOT_SHARED)")
    return SHARED
