"""A review of the profile editor and the signed deploy, as an attacker: each test is a hole found and closed.

The editor validates browser text inside the console's own process, so anything that crashes the YAML parser
takes every signed-in user's console down with it; these run the parse in a child process to see a crash as
what it is (a signal), not as a dead test runner.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

VALIDATE = """
import json, sys
from pilot.console.editor import text
print(json.dumps(text.validate(sys.stdin.read())))
"""


def validate_in_child(source: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", VALIDATE], input=source, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, f"the validator died with {done.returncode}: {done.stderr[-500:]}"
    return json.loads(done.stdout)


@pytest.mark.parametrize("indicator", ["- ", "? ", "- ? ", ": "])
def test_compact_block_nesting_on_one_line_is_refused_not_a_segfault(indicator):
    # 40,000 nested block collections in 80-160 KB: libyaml's composer recursed in C until the stack ran out
    answer = validate_in_child(indicator * 40_000 + "1\n")
    assert answer["ok"] is False
    first = answer["diagnostics"][0]
    assert first["line"] == 1 and "nested more than" in first["message"]


# ------------------------------------------------------------------ _profile/get redaction
@pytest.mark.parametrize(
    "profile",
    [
        "mqtt:\n  password:\n    hunter2\n",  # the value on the next line
        "mqtt:\n  password:   # the broker's\n    hunter2\n",
        'mqtt:\n  password: "hunter\n    hunter2"\n',  # a quoted value over two lines
        "mqtt:\n  password: hunter\n    hunter2\n",  # a plain one
        'mqtt:\n  "pass\\u0077ord": hunter2\n',  # an escaped key that reads `password`
        "mqtt:\n  ? password\n  : hunter2\n",  # an explicit key
        "mqtt: {password:\n   hunter2}\n",
        "commands:\n  b:\n    args:\n      env:\n        API_TOKEN:\n          hunter2\n",
    ],
)
def test_get_redacts_a_secret_however_the_yaml_spells_it(profile):
    from pilot.agent.deployer import redact

    shown, paths = redact(profile)
    assert "hunter2" not in shown, shown
    assert paths


def test_redaction_still_keeps_what_follows_a_secret():
    from pilot.agent.deployer import redact

    profile = "mqtt:\n  password:\n    hunter2\n  host: broker.lan\nsensors: {}\n"
    shown, paths = redact(profile)
    assert paths == ["mqtt.password"]
    assert shown == "mqtt:\n  password:\n    <redacted>\n  host: broker.lan\nsensors: {}\n"


def test_a_secret_in_a_sequence_item_hides_its_continuation_not_the_next_key():
    from pilot.agent.deployer import redact

    shown, paths = redact("- password: hunter\n   hunter2\n  other: kept\n")
    assert (shown, paths) == ("- password: <redacted>\n   <redacted>\n  other: kept\n", ["password"])


# ------------------------------------------------------------------ a deploy that renames the device
def test_a_deploy_that_changes_the_device_id_is_answered_so_the_sender_can_verify_it(tmp_path):
    # the answer was signed with the new plan's device id, so the sender (who signed for the old one) threw
    # away every answer as forged and reported no answer for a deploy that had been applied
    from tests.unit.agent.test_deploy import DEVICE, Rig, profile

    rig = Rig(tmp_path)
    request = rig.request(profile(rig.keyring).replace(f"id: {DEVICE},", "id: renamed,"))
    rig.send(request.payload)
    answer = rig.answer(request)  # exactly one answer that verifies with the key and the addressed device
    assert answer["status"] == "ok"
    assert "id: renamed" in rig.path.read_text()
