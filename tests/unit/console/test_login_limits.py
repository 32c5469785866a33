"""Sign-in attempts sent all at once are judged one after another, and a stranger's failures cannot lock a
user out of an address they signed in from before."""

from __future__ import annotations

from pilot.console.auth import LoginLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_runs_at_most_two_at_once_per_address_and_per_name():
    limiter = LoginLimiter(Clock())
    started = [limiter.begin("10.0.0.9", "alice") for _ in range(60)]
    assert started[:2] == [None, None]
    assert started[2:] == [1.0] * 58  # the rest are told to come back in a second, not checked


def test_failures_in_a_burst_are_counted_one_after_another_and_lock_at_the_fifth():
    limiter = LoginLimiter(Clock())
    answers = []
    for _ in range(8):
        wait = limiter.begin("10.0.0.9", "alice")
        answers.append(wait)
        if wait is None:
            limiter.end("10.0.0.9", "alice", ok=False)
    assert answers == [None] * 5 + [30.0] * 3


def test_end_frees_the_slot_whether_it_succeeded_or_not():
    limiter = LoginLimiter(Clock())
    assert limiter.begin("a", "alice") is None and limiter.begin("b", "alice") is None
    assert limiter.begin("c", "alice") == 1.0
    limiter.end("a", "alice", ok=True)
    assert limiter.begin("c", "alice") is None


def test_a_strangers_failures_lock_the_name_but_not_for_an_address_that_signed_in_before():
    clock = Clock()
    limiter = LoginLimiter(clock)
    assert limiter.begin("home", "alice") is None
    limiter.end("home", "alice", ok=True)
    for _ in range(5):
        assert limiter.begin("attacker", "alice") is None
        limiter.end("attacker", "alice", ok=False)
    assert limiter.begin("elsewhere", "alice") == 30.0  # the name is locked for new addresses
    assert limiter.begin("attacker", "alice") == 30.0
    assert limiter.begin("home", "alice") is None  # but alice at home still signs in
    limiter.end("home", "alice", ok=True)


def test_trust_in_an_address_ends_after_trust_for():
    clock = Clock()
    limiter = LoginLimiter(clock, trust_for=100.0)
    limiter.begin("home", "alice")
    limiter.end("home", "alice", ok=True)
    clock.now += 101
    for _ in range(5):
        limiter.begin("attacker", "alice")
        limiter.end("attacker", "alice", ok=False)
    assert limiter.begin("home", "alice") == 30.0
