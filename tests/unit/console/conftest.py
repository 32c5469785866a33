"""Shared fixtures for the console's unit tests."""

from __future__ import annotations

import pytest

from pilot.agent import signing


@pytest.fixture
def keyring(tmp_path):
    """A console keyring file with one active key, kid `console`, mode 0600 as the loader demands."""
    path = tmp_path / "keyring"
    path.write_text(signing.new_key_line("console") + "\n")
    path.chmod(0o600)
    return path
