"""CommandService beyond the guard chain's table: the exact frames it publishes, the answers to a
signed command in every outcome, confirmations, the counters the health report reads, reloads,
stopping, and the errors an action or the machine can raise.

Same rig as tests/unit/agent/test_guard_chain.py: injected clocks, real signatures, and a Recorder
as the System, so nothing here changes the machine.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import pytest

from pilot.actions import ActionContext
from pilot.actions._base import Call, Outcome
from pilot.agent import policy, signing
from pilot.agent.commands import CommandService
from tests.unit.agent.test_guard_chain import (
    NONCE,
    PROFILE,
    WALL,
    Recorder,
    Rig,
    make_rig,
    signed,
)

TS = int(WALL)

EXTRA = """  arm2: {action: process.run, args: {argv: [/bin/true]}, policy: {confirm: 20s}}
  armsw: {action: process.run, args: {argv: [/bin/echo, "{value}"], value_arg: "{value}"}, platform: switch,
          policy: {confirm: 20s}}
  s_armed: {action: process.run, args: {argv: [/bin/true]}, policy: {signed: true, confirm: 20s}}
  s_fail: {action: process.run, args: {argv: [/bin/false]}, policy: {signed: true}}
  s_slow: {action: process.run, args: {argv: [/bin/sleep, "60"]}, policy: {signed: true}}
  s_opt: {action: process.run, args: {argv: [/bin/echo, "{value}"], value_arg: "{value}"}, platform: text,
          policy: {signed: true}}
  gov: {action: cpufreq.set_governor, platform: select, options: [performance, powersave]}
"""
MORE = (PROFILE + EXTRA).replace("allow: [", "allow: [arm2, armsw, s_armed, s_fail, s_slow, s_opt, gov, ")


def results(rig: Rig, since: int = 0) -> list[tuple[str, str | None]]:
    return [(a["status"], a.get("reason")) for _, a in rig.results(since)]


def rebuilt(rig: Rig, plan=None, **kwargs) -> CommandService:
    """A second CommandService on the rig's wire, machine and clocks (a reload, or a doctored plan)."""
    kwargs.setdefault("guards", rig.svc.guards)
    return CommandService(
        plan or rig.svc.plan,
        rig.svc.publish,
        rig.system,
        kwargs.pop("state_dir", rig.svc.state_dir),
        wall=rig.svc.wall,
        mono=rig.svc.mono,
        **kwargs,
    )


# ------------------------------------------------------------------ the exact frames


def test_an_ok_switch_publishes_its_retained_state_then_its_result_then_the_audit_event(rigs):
    rig = rigs()
    rig.send("sw", b"ON")
    assert rig.frames == [
        ("pilot/d/cmd/sw/state", "ON", 1, True),
        ("pilot/d/cmd/sw/result", '{"status":"ok","ts":1700000000}', 1, False),
        ("pilot/d/audit", '{"event_type":"ok","command":"sw","origin":"mqtt"}', 0, False),
    ]


def test_a_rejection_is_published_compact_with_qos_1_and_its_audit_event_with_qos_0(rigs):
    rig = rigs()
    rig.send("sw", b"on")
    assert rig.frames == [
        ("pilot/d/cmd/sw/result", '{"status":"rejected","reason":"bad_value","ts":1700000000}', 1, False),
        ("pilot/d/audit", '{"event_type":"rejected","command":"sw","origin":"mqtt","reason":"bad_value"}', 0, False),
    ]


def test_a_button_publishes_no_state(rigs):
    rig = rigs()
    rig.send("press", b"PRESS")
    assert [t for t, *_ in rig.frames] == ["pilot/d/cmd/press/result", "pilot/d/audit"]


def test_actions_run_on_the_action_pool_never_on_the_thread_that_received_the_message(rigs):
    rig = rigs()
    rig.send("press", b"PRESS")
    rig.send("sw", b"ON")
    assert len(rig.system.threads) == 2
    assert all(name.startswith("pilot-action") for name in rig.system.threads), rig.system.threads


# ------------------------------------------------------------------ state read back


@pytest.fixture
def cpus(tmp_path: Path) -> ActionContext:
    """A made-up sysfs with one CPU whose governor is powersave (the Recorder never writes it)."""
    root = tmp_path / "sys"
    folder = root / "devices/system/cpu/cpu0/cpufreq"
    folder.mkdir(parents=True)
    (folder / "scaling_available_governors").write_text("performance powersave\n")
    (folder / "scaling_governor").write_text("powersave\n")
    return ActionContext(sysfs_root=root, platform="linux", environ={}, which=lambda _: None)


def test_the_state_published_is_what_the_action_reads_back_not_the_value_sent(rigs, cpus):
    rig = rigs(MORE, ctx=cpus)
    rig.send("gov", b"performance")
    path = str(cpus.sysfs_root / "devices/system/cpu/cpu0/cpufreq/scaling_governor")
    assert [(c["kind"], c["path"], c["data"]) for c in rig.system.calls] == [("write", path, "performance")]
    assert [f for f in rig.frames if f[0].endswith("/state")] == [("pilot/d/cmd/gov/state", "powersave", 1, True)]
    assert rig.svc.read_state(rig.svc._by_id["gov"]) == "powersave"


def test_a_state_that_cannot_be_read_publishes_the_value_applied(rigs, cpus):
    (cpus.sysfs_root / "devices/system/cpu/cpu0/cpufreq/scaling_governor").unlink()
    rig = rigs(MORE, ctx=cpus)
    rig.send("gov", b"performance")
    assert [f for f in rig.frames if f[0].endswith("/state")] == [("pilot/d/cmd/gov/state", "performance", 1, True)]
    assert rig.svc.read_state(rig.svc._by_id["gov"]) is None
    assert rig.svc.read_state(rig.svc._by_id["sw"]) is None  # process.run has no state reader


def test_a_write_that_fails_names_the_kind_of_call_in_its_detail(rigs, cpus):
    class FailingWrites(Recorder):
        def perform(self, call: Call) -> Outcome:
            super().perform(call)
            return Outcome(returncode=1)

    rig = rigs(MORE, ctx=cpus, system=FailingWrites())
    rig.send("gov", b"performance")
    assert [a for _, a in rig.results()] == [
        {"status": "failed", "reason": "exit_status", "detail": "write exited 1", "ts": TS}
    ]
    assert [f for f in rig.frames if f[0].endswith("/state")] == []


# ------------------------------------------------------------------ answers to signed commands


def _break_system(error: Exception):
    def setup(rig: Rig) -> None:
        def perform(call):
            raise error

        rig.system.perform = perform

    return setup


def _unknown_action(rig: Rig) -> None:
    plan = rig.svc.plan
    commands = tuple(replace(c, action="no.such_action") if c.id == "signed" else c for c in plan.commands)
    rig.svc = rebuilt(rig, replace(plan, commands=commands))


SIGNED_OUTCOMES = {
    "ok": ("signed", "ON", None, {"status": "ok"}),
    "armed": ("s_armed", "PRESS", None, {"status": "armed", "confirm_within": 20.0}),
    "bad_value (the reason is signed too)": ("signed", "on", None, {"status": "rejected", "reason": "bad_value"}),
    "exit_status": (
        "s_fail",
        "PRESS",
        None,
        {"status": "failed", "reason": "exit_status", "detail": "/bin/false exited 1"},
    ),
    "an action that refuses its value": ("s_opt", "-rf", None, {"status": "failed", "reason": "unavailable"}),
    "OSError": (
        "signed",
        "ON",
        _break_system(OSError("disk on fire")),
        {"status": "failed", "reason": "unavailable", "detail": "disk on fire"},
    ),
    "an unexpected error": (
        "signed",
        "ON",
        _break_system(RuntimeError("bug")),
        {"status": "failed", "reason": "unavailable"},
    ),
    "an action that is not registered": (
        "signed",
        "ON",
        _unknown_action,
        {"status": "failed", "reason": "unavailable"},
    ),
}


@pytest.mark.parametrize("case", SIGNED_OUTCOMES.values(), ids=SIGNED_OUTCOMES.keys())
def test_every_answer_to_a_signed_command_echoes_its_nonce_and_verifies(rigs, case):
    command, value, setup, expect = case
    rig = rigs(MORE)
    if setup:
        setup(rig)
    rig.send(command, signed(value, command, nonce=NONCE))
    [(name, answer)] = rig.results()
    assert name == command
    sig = answer.pop("sig")
    detail = answer.pop("detail", None) if "detail" not in expect else None
    assert answer == {**expect, "ts": TS, "nonce": NONCE}
    answer["sig"] = sig
    if detail is not None:
        answer["detail"] = detail
    key = rig.signer.keys["k1"]
    assert signing.verify_result(answer, key, "d", f"pilot/d/cmd/{command}/set", NONCE)
    assert not signing.verify_result({**answer, "ts": TS + 1}, key, "d", f"pilot/d/cmd/{command}/set", NONCE)
    event = {"event_type": expect["status"], "command": command, "origin": "mqtt"}
    event |= {"reason": expect["reason"]} if "reason" in expect else {}
    assert rig.audit() == [{**event, "kid": "k1"}]  # every one of these verified: the audit names the key


def test_dry_run_and_interrupted_answers_to_a_signed_command_are_signed(rigs):
    key_topic = "pilot/d/cmd/s_slow/set"
    rig = rigs(MORE, dry_run=True)
    rig.send("s_slow", signed("PRESS", "s_slow", nonce=NONCE))
    [(_, answer)] = rig.results()
    assert (answer["status"], answer["nonce"]) == ("dry_run", NONCE)
    assert signing.verify_result(answer, rig.signer.keys["k1"], "d", key_topic, NONCE)

    rig = rigs(MORE)
    rig.send("s_slow", signed("PRESS", "s_slow", nonce=NONCE))
    rig.svc.stop(timeout=10)
    [(_, answer)] = rig.results()
    assert (answer["status"], answer["nonce"]) == ("interrupted", NONCE)
    assert signing.verify_result(answer, rig.signer.keys["k1"], "d", key_topic, NONCE)


# ------------------------------------------------------------------ confirmations


def test_arming_one_confirm_command_does_not_confirm_another(rigs):
    rig = rigs(MORE)
    rig.send("armed", b"PRESS")
    rig.send("arm2", b"PRESS")
    rig.send("arm2", b"PRESS")
    assert [(c, a["status"]) for c, a in rig.results()] == [("armed", "armed"), ("arm2", "armed"), ("arm2", "ok")]
    assert len(rig.system.calls) == 1


def test_a_confirmation_must_repeat_the_armed_value_off_then_on_runs_nothing(rigs):
    rig = rigs(MORE)
    rig.send("armsw", b"OFF")
    rig.send("armsw", b"ON")  # a different value: arms ON, does not run it
    rig.send("armsw", b"ON")
    assert results(rig) == [("armed", None), ("armed", None), ("ok", None)]
    assert [c["argv"] for c in rig.system.calls] == [("/bin/echo", "ON")]


# ------------------------------------------------------------------ counters (the health report reads them)


def test_each_outcome_is_counted(rigs):
    rig = rigs(MORE, dry_run=True)
    rig.send("press", b"PRESS")
    rig.tick(10)
    rig.send("press", b"PRESS")
    assert rig.svc.guards.stats.dry_run == 2

    rig = rigs(MORE)
    rig.send("failing", b"PRESS")
    rig.send("failing", b"PRESS")
    rig.tick(10)
    _break_system(OSError("x" * 300))(rig)
    rig.send("press", b"PRESS")
    rig.send("other", b"PRESS")
    rig.tick(10)
    _break_system(RuntimeError("bug"))(rig)
    rig.send("press", b"PRESS")
    rig.send("other", b"PRESS")
    stats = rig.svc.guards.stats
    assert (stats.executed, stats.failed, stats.dry_run) == (0, 6, 0)
    details = [a.get("detail") for _, a in rig.results()]
    assert details[2:4] == ["x" * 200] * 2  # an error text is cut to 200 characters
    assert details[4:] == [None, None]  # an unexpected error says nothing of itself


def test_an_unexpected_error_in_an_action_is_logged_with_the_action(rigs, caplog):
    rig = rigs()
    _break_system(RuntimeError("bug"))(rig)
    with caplog.at_level(logging.ERROR, logger="pilot.commands"):
        rig.send("press", b"PRESS")
    assert [r.getMessage() for r in caplog.records] == ["action process.run failed"]


# ------------------------------------------------------------------ topics, rules, broken plans


def test_a_command_for_another_device_of_the_same_name_length_runs_nothing(rigs):
    rig = rigs()
    rig.svc.handle("pilot/x/cmd/press/set", b"PRESS", False)
    rig.settle()
    assert [t for t, *_ in rig.frames] == ["pilot/d/cmd/_unknown/result", "pilot/d/audit"]
    assert results(rig) == [("rejected", "not_allowed")]
    assert rig.system.calls == []


def test_an_unexpected_error_for_an_unknown_command_is_audited_without_its_name(rigs, caplog):
    rig = rigs()
    rig.svc = rebuilt(rig, replace(rig.svc.plan, policy=replace(rig.svc.plan.policy, max_payload=None)))
    with caplog.at_level(logging.ERROR, logger="pilot.commands"):
        rig.send("ghost", b"PRESS")
    assert results(rig) == [("failed", "unavailable")]
    assert rig.audit() == [{"event_type": "failed", "command": None, "origin": "mqtt", "reason": "unavailable"}]
    assert [r.getMessage() for r in caplog.records] == ["command 'ghost': unexpected TypeError while handling it"]


def test_a_rule_is_audited_with_the_command_it_named_and_its_value_checked(rigs):
    rig = rigs()
    rig.svc.run_local("hidden", None, "rule:r")
    rig.svc.run_local("press", "ON", "rule:r")  # a button takes no value but its press
    rig.svc.run_local("sw", None, "schedule:s")
    rig.settle()
    assert rig.audit() == [
        {"event_type": "rejected", "command": "hidden", "origin": "rule:r", "reason": "not_allowed"},
        {"event_type": "rejected", "command": "press", "origin": "rule:r", "reason": "bad_value"},
        {"event_type": "rejected", "command": "sw", "origin": "schedule:s", "reason": "bad_value"},
    ]
    assert rig.system.calls == []


# ------------------------------------------------------------------ keys and nonces


def test_a_missing_keyring_is_logged_with_its_reason(tmp_path, caplog):
    with caplog.at_level(logging.ERROR, logger="pilot.commands"):
        rig = make_rig(tmp_path, keyring=False)
    try:
        [message] = [r.getMessage() for r in caplog.records]
        assert message.startswith("signed commands are refused until the keyring is fixed: ")
        assert str(tmp_path / "ring") in message
    finally:
        rig.svc.stop()


def test_the_nonce_is_recorded_in_nonces_log_in_the_state_directory(rigs):
    rig = rigs()
    rig.send("signed", signed(nonce=NONCE))
    assert (rig.svc.state_dir / "nonces.log").read_text() == f"{NONCE} {TS}\n"


def test_nonces_are_forgotten_on_the_services_monotonic_clock(rigs):
    """Forgotten after 2 x window (60 s) of the injected monotonic clock, with the watermark raised:
    the same envelope is then `expired`, not `replayed`."""
    rig = rigs()
    first = signed(nonce=NONCE)(rig)
    rig.send("signed", first)
    rig.clock["mono"] += 120
    rig.clock["wall"] += 1  # a later envelope, above the watermark the forgotten nonce leaves
    rig.send("signed", signed("OFF"))
    rig.send("signed", first)
    assert results(rig) == [("ok", None), ("ok", None), ("rejected", "expired")]


def test_a_reload_keeps_the_nonce_store_and_applies_a_new_window(rigs):
    rig = rigs()
    store = rig.svc.guards.nonces
    plan = rig.svc.plan
    new = rebuilt(rig, replace(plan, policy=replace(plan.policy, window=30.0)))
    try:
        assert new.nonces is store and store.window == 30.0
    finally:
        new.stop()
    other = rebuilt(rig, state_dir=rig.svc.state_dir.parent / "elsewhere")
    try:
        assert other.nonces is not store and other.nonces.path == rig.svc.state_dir.parent / "elsewhere/nonces.log"
    finally:
        other.stop()


# ------------------------------------------------------------------ reloads and the rate limit


def test_a_reload_with_the_same_rate_limit_keeps_the_spent_budget_and_a_new_limit_starts_afresh(rigs):
    rig = rigs()  # rate_limit: 2 per 10 s
    rig.send("press", b"PRESS")
    rig.send("other", b"PRESS")
    rig.svc.retire()
    rig.svc = rebuilt(rig)
    rig.send("sw", b"ON")
    assert results(rig)[-1] == ("rejected", "rate_limited")
    plan = rig.svc.plan
    rig.svc.retire()
    rig.svc = rebuilt(rig, replace(plan, policy=replace(plan.policy, rate_max=3)))
    rig.send("sw", b"ON")
    assert results(rig)[-1] == ("ok", None)


def test_a_service_without_guards_makes_its_own_on_its_clocks(rigs):
    rig = rigs()
    rig.svc = rebuilt(rig, guards=None)
    rig.svc.guards.running = type(rig.svc.guards.running)()  # plain set: nothing held, nothing to wait for
    rig.svc.handle("pilot/d/cmd/cool/set", b"PRESS", False)
    rig.svc.stop(timeout=10)
    rig.svc = rebuilt(rig, guards=rig.svc.guards)
    rig.clock["mono"] += 3599
    rig.svc.handle("pilot/d/cmd/cool/set", b"PRESS", False)
    assert results(rig) == [("ok", None), ("rejected", "cooldown")]
    rig.svc.stop(timeout=10)


# ------------------------------------------------------------------ retire and stop


def test_retire_returns_at_once_and_a_running_action_still_answers_ok(rigs):
    rig = rigs()
    rig.send("slow", b"PRESS")
    rig.svc.retire()
    assert rig.results() == []  # retire did not wait for the action
    rig.system.release()
    with rig.svc.guards.running.changed:
        assert rig.svc.guards.running.changed.wait_for(lambda: not rig.svc.guards.running, 20)
    assert results(rig) == [("ok", None)]


def test_a_reload_between_the_guards_and_the_start_answers_busy(rigs):
    """A retire on another thread after this command passed every guard: `busy`, send it again."""
    rig = rigs()

    class RetireWhileChecking(policy.RateLimit):
        def allow(self) -> bool:
            rig.svc.retire()
            return True

    rig.svc.guards.rate = RetireWhileChecking(None, None)
    rig.send("press", b"PRESS")
    assert results(rig) == [("rejected", "busy")]
    assert not rig.svc.guards.running and rig.system.calls == []


def test_a_command_after_stop_is_unavailable_and_leaves_nothing_running(rigs):
    rig = rigs()
    rig.svc.stop(timeout=10)
    rig.send("press", b"PRESS")
    rig.send("press", b"PRESS")
    assert results(rig) == [("rejected", "unavailable")] * 2
    assert not rig.svc.guards.running and rig.system.calls == []


def test_stop_gives_running_programs_at_most_2_s_or_half_its_timeout(rigs):
    rig = rigs()
    rig.svc.stop(timeout=10)
    rig.svc.stop(timeout=3)
    rig.svc.stop()
    assert rig.system.graces == [2.0, 1.5, 2.0]


def test_an_action_missing_from_this_build_counts_as_a_failure_like_any_other(rigs):
    rig = rigs(MORE)
    _unknown_action(rig)
    rig.send("signed", signed("ON", "signed", nonce=NONCE))
    rig.send("signed", signed("OFF", "signed"))  # a fresh nonce
    assert [a["status"] for _, a in rig.results()] == ["failed", "failed"]
    assert rig.svc.guards.stats.failed == 2


def test_a_command_is_no_longer_running_when_its_answer_goes_out(rigs):
    """A client that sends again as soon as it hears the answer must not be told `busy`."""
    rig = rigs()
    seen: list[tuple[str, bool]] = []
    publish = rig.svc.publish

    def watching(topic: str, payload: str, qos: int, retain: bool) -> None:
        if topic.endswith("/result"):
            seen.append((topic, topic.split("/")[3] in rig.svc.guards.running))
        publish(topic, payload, qos, retain)

    rig.svc.publish = watching
    rig.send("press", b"PRESS")
    rig.send("press", b"PRESS")
    assert seen == [("pilot/d/cmd/press/result", False)] * 2
    assert results(rig) == [("ok", None), ("ok", None)]
