"""`pilot deploy` without a broker: its arguments, the local validation that sends nothing, how each
answer is judged (only our signed answer counts) and the line or JSON each outcome prints.
The broker round trip is tests/live/agent/test_deploy.py's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pilot import cli
from pilot.agent import deploy, signing
from pilot.cli.deploy import Rollout, Target, _json, _line

KEY = signing.Key("k1", b"\x05" * 32)
NOW = 1_800_000_000


def run(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def target(device: str = "dev1") -> Target:
    base = f"pilot/{device}"
    return Target(device, base, deploy.build_deploy(KEY, device, base, "pilot: 1\n", ts=NOW))


def signed(t: Target, status: str, reason: str | None = None, **extra) -> bytes:
    sig = signing.sign_result(KEY, t.device, t.request.topic, t.request.nonce, status, reason, NOW)
    body = {"status": status, "reason": reason, "op": "set", "ts": NOW, "nonce": t.request.nonce, "sig": sig}
    return json.dumps({**body, **extra}).encode()


def test_to_is_required_and_must_be_a_device_id(tmp_path, capsys):
    path = tmp_path / "p.yaml"
    path.write_text("pilot: 1\n")
    code, _, err = run(capsys, "deploy", str(path))
    assert code == 2 and "--to" in err
    code, _, err = run(capsys, "deploy", str(path), "--to", "a/b#")
    assert code == 2 and "is not a device id" in err


def test_an_invalid_profile_is_reported_with_its_position_and_nothing_is_sent(tmp_path, capsys, monkeypatch):
    import pilot.cli.deploy as module

    sent = []
    monkeypatch.setattr(module, "_publish_all", lambda *a: sent.append(a) or True)
    path = tmp_path / "bad.yaml"
    path.write_text("pilot: 1\nsensors:\n  cpu: {probe: cpu.percnt}\n")
    code, out, err = run(capsys, "deploy", str(path), "--to", "dev1", "--state-dir", str(tmp_path / "s"))
    assert code == 1 and out == "" and sent == []
    assert f"{path}:3:" in err and "cpu.percent" in err


def test_a_profile_changed_while_it_was_checked_is_not_sent(tmp_path, capsys, monkeypatch):
    """What is sent is exactly what validated: a file rewritten during validation is refused."""
    import pilot.cli.deploy as module

    sent = []
    monkeypatch.setattr(module, "_publish_all", lambda *a: sent.append(a) or True)
    path = tmp_path / "ok.yaml"
    path.write_text("pilot: 1\nsensors:\n  cpu: {probe: cpu.percent}\n")
    checked = module.load_plan

    def rewritten_meanwhile(*args, **kwargs):
        result = checked(*args, **kwargs)
        path.write_text("pilot: 1\nsensors:\n  cpu: {probe: cpu.percnt}\n")  # after the check, before the send
        return result

    monkeypatch.setattr(module, "load_plan", rewritten_meanwhile)
    code, out, err = run(capsys, "deploy", str(path), "--to", "dev1", "--state-dir", str(tmp_path / "s"))
    assert code == 1 and sent == [] and out == ""
    assert err == f"pilot: error: {path} changed while it was being checked; run pilot deploy again\n"


def test_a_missing_keyring_is_one_line_and_nothing_is_sent(tmp_path, capsys, monkeypatch):
    import pilot.cli.deploy as module

    sent = []
    monkeypatch.setattr(module, "_publish_all", lambda *a: sent.append(a) or True)
    path = tmp_path / "ok.yaml"
    path.write_text("pilot: 1\nsensors:\n  cpu: {probe: cpu.percent}\n")
    code, out, err = run(
        capsys, "deploy", str(path), "--to", "dev1", "--keyring", str(tmp_path / "nope"), "--state-dir", str(tmp_path)
    )
    assert code == 1 and sent == [] and err.startswith("pilot: error: cannot read keyring") and err.count("\n") == 1


def test_only_our_signed_answer_counts_and_unsigned_ones_are_remembered():
    t = target()
    rollout = Rollout([t], KEY)
    topic = t.result_topic
    rollout.take(topic, b'{"status":"rejected","reason":"unauthorized","op":"set","ts":1}')
    forged = json.loads(signed(t, "ok"))
    forged["sig"] = "A" * 43
    rollout.take(topic, json.dumps(forged).encode())
    rollout.take(topic, signed(t, "rejected", "replayed"))  # someone re-sent our envelope
    rollout.take("pilot/other/cmd/_profile/result", signed(t, "ok"))
    assert t.answer is None and not rollout.done.is_set()
    assert t.unsigned == ["rejected/unauthorized"]
    rollout.take(topic, signed(t, "ok", profile_hash="abcd"))
    rollout.take(topic, signed(t, "failed", "unavailable"))  # the first answer stands
    assert t.answer["status"] == "ok" and rollout.done.is_set()


@pytest.mark.parametrize(
    "status, reason, extra, line",
    [
        ("ok", None, {"profile_hash": "ab12"}, "dev1: applied (profile hash ab12)"),
        (
            "rolled_back",
            "broker_unreachable",
            {"detail": "no broker within 20 s"},
            "dev1: rolled back: broker_unreachable (no broker within 20 s)",
        ),
        (
            "rejected",
            "invalid_profile",
            {"errors": ["device.yaml:3:5: error: x", "device.yaml:4:1: error: \x1b[2Jy"]},
            "dev1: rejected: invalid_profile\n  device.yaml:3:5: error: x\n  device.yaml:4:1: error: \\x1b[2Jy",
        ),
        ("busy", None, {}, "dev1: busy: None"),
    ],
)
def test_each_outcome_prints_one_line_and_escapes_what_the_device_sent(status, reason, extra, line):
    t = target()
    Rollout([t], KEY).take(t.result_topic, signed(t, status, reason, **extra))
    assert _line(t, 60) == line


def test_no_answer_names_the_unsigned_answers_it_ignored_and_json_says_no_answer():
    t = target()
    t.unsigned = ["rejected/unavailable"]
    assert _line(t, 4) == "dev1: no answer within 4 s (ignored 1 unsigned answer(s): rejected/unavailable)"
    assert _json(t) == {
        "device": "dev1",
        "status": "no_answer",
        "reason": None,
        "detail": None,
        "errors": [],
        "profile_hash": None,
        "unsigned_answers": ["rejected/unavailable"],
    }


def test_deploy_is_on_the_manual_page():
    from pilot.manpage import render

    page = render(date="2025-01-02").replace("\\-", "-")
    assert '.SS "pilot deploy"' in page and "--to" in page and "--json" in page


def test_a_payload_over_the_devices_limit_is_refused_before_sending():
    with pytest.raises(ValueError, match="at most 262144"):
        deploy.build_deploy(KEY, "dev1", "pilot/dev1", "#" * deploy.MAX_DEPLOY_BYTES)


def test_connect_reaches_the_broker_with_the_senders_own_settings(tmp_path, capsys):
    from testkit.broker import free_port

    keyring = tmp_path / "keyring"
    keyring.write_text(signing.new_key_line("k1") + "\n")
    keyring.chmod(0o600)
    device = tmp_path / "device.yaml"
    device.write_text(
        "pilot: 1\nmqtt: {host: 127.0.0.1, username: pilot, password_file: /nonexistent/mqtt-password}\n"
        "sensors:\n  cpu: {probe: cpu.percent}\n"
    )
    sender = tmp_path / "sender.yaml"
    sender.write_text(f"pilot: 1\nmqtt: {{host: 127.0.0.1, port: {free_port()}}}\n")
    common = ("--to", "dev1", "--keyring", str(keyring), "--state-dir", str(tmp_path / "s"))
    code, out, err = run(capsys, "deploy", str(device), *common)
    assert code == 2 and "cannot read mqtt.password_file /nonexistent/mqtt-password" in err  # the device's file
    code, out, err = run(capsys, "deploy", str(device), *common, "--connect", str(sender))
    assert code == 1 and out == "" and "cannot reach the broker 127.0.0.1:" in err  # got as far as connecting


def test_the_deploy_deadline_is_20_seconds_unless_pilot_run_says_otherwise(capsys):
    from pilot.agent.deployer import CONNECT_DEADLINE
    from pilot.agent.supervise import RunOptions

    parser = cli.build_parser()
    assert CONNECT_DEADLINE == 20.0 and RunOptions(state_dir=Path(".")).deploy_deadline == 20.0
    assert parser.parse_args(["run", "p.yaml"]).deploy_deadline == 20.0
    assert parser.parse_args(["run", "p.yaml", "--deploy-deadline", "3"]).deploy_deadline == 3.0
    code, _, err = run(capsys, "run", "p.yaml", "--deploy-deadline", "0")
    assert code == 2 and "not a number of seconds from 0.5 to 600" in err
