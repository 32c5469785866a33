"""The running agent never loads the profile compiler: not with an explicit profile, and not when it
picks the matching pack itself (which needs the loader: the compile worker does it in its own process).

Checked from the running process: Python's own import log (-X importtime lists every module the
process imported, lazy imports included) and the shared libraries mapped into it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from testkit.agent import AgentProcess, pilot_argv, pilot_env

HERE = Path(__file__).resolve().parent
BASIC = HERE / "profiles" / "basic.yaml"
COMPILER_LIBRARIES = ("ruamel", "jsonschema", "rpds", "referencing", "pilot.profile")


def _imported(output: str) -> set[str]:
    """Module names from -X importtime lines: `import time:   self |  cumulative | name`."""
    return {
        line.rsplit("|", 1)[1].strip()
        for line in output.splitlines()
        if line.startswith("import time:") and "|" in line
    }


@pytest.mark.parametrize("profile", [BASIC, None], ids=["explicit-profile", "picked-pack"])
def test_the_running_agent_holds_no_compiler(broker, tmp_path, profile):
    argv = pilot_argv(profile, broker.port, tmp_path / "state", "--dry-run")
    argv.insert(1, "-X")
    argv.insert(2, "importtime")
    agent = AgentProcess(argv, env=pilot_env(), log=tmp_path / "agent.log").start()
    try:
        deadline = time.monotonic() + 30
        while "announced" not in agent.output() and agent.running() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "announced" in agent.output(), agent.tail()
        maps = Path(f"/proc/{agent.pid}/maps").read_text()
        loaded = _imported(agent.output())
    finally:
        agent.stop()
    assert "pilot.agent.runtime" in loaded, "the import log was not captured"
    assert not [m for m in loaded if m.split(".")[0] in COMPILER_LIBRARIES or m.startswith("pilot.profile")]
    assert not [line for line in maps.splitlines() if "ruamel" in line or "rpds" in line]
