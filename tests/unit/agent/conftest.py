"""Fixtures shared by the command-service tests (test_guard_chain.py, test_command_service.py)."""

from __future__ import annotations

import pytest

from tests.unit.agent.test_guard_chain import Rig, make_rig


@pytest.fixture
def rigs(tmp_path):
    """make_rig, with every service's held actions released and its pool stopped afterwards."""
    made: list[Rig] = []

    def make(*args, **kwargs) -> Rig:
        rig = make_rig(tmp_path / f"rig{len(made)}", *args, **kwargs)
        made.append(rig)
        return rig

    yield make
    for rig in made:
        rig.system.release()
        rig.svc.stop(timeout=10)
