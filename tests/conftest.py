"""Shared test fixtures: the repository path; every test runs as a user would (PILOT_ALLOW_ROOT for root)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# `pilot run` refuses to start as root (see docs/service.md). The tests run as root in CI and start
# `pilot run` many times; this lets them (subprocesses inherit it). tests/service checks the refusal itself.
os.environ.setdefault("PILOT_ALLOW_ROOT", "1")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO
