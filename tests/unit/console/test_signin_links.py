"""One-time sign-in links (`pilot console --open`): good once, for a while, and only the exact token."""

from __future__ import annotations

import pytest

from pilot.console.auth import LINK_LIFETIME, MAX_LINKS, AuthError, SignInLinks


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_a_link_signs_its_user_in_once():
    links = SignInLinks(Clock())
    token = links.mint("ann")
    assert len(token) == 43
    assert links.redeem(token) == "ann"
    assert links.redeem(token) is None


def test_a_link_expires_after_its_lifetime():
    clock = Clock()
    links = SignInLinks(clock)
    early, late = links.mint("ann"), links.mint("ann")
    clock.now += LINK_LIFETIME - 0.5
    assert links.redeem(early) == "ann"
    clock.now += 0.5
    assert links.redeem(late) is None
    assert LINK_LIFETIME == 120.0


@pytest.mark.parametrize(
    "guess",
    [None, 42, b"x" * 43, "", "A" * 42, "A" * 44, "A" * 43, "../../etc/passwd", "A" * 42 + "\n", "é" * 43],
)
def test_anything_but_a_minted_token_signs_no_one_in(guess):
    links = SignInLinks(Clock())
    token = links.mint("ann")
    assert links.redeem(guess) is None
    assert links.redeem(token) == "ann"  # a wrong guess does not use the real link up


def test_a_near_miss_does_not_sign_in():
    links = SignInLinks(Clock())
    token = links.mint("ann")
    other = ("B" if token[0] != "B" else "C") + token[1:]
    assert links.redeem(other) is None
    assert links.redeem(token) == "ann"


def test_only_the_newest_links_are_kept():
    links = SignInLinks(Clock())
    tokens = [links.mint("ann") for _ in range(MAX_LINKS + 1)]
    assert MAX_LINKS == 8
    assert links.redeem(tokens[0]) is None
    assert all(links.redeem(t) == "ann" for t in tokens[1:])


def test_a_link_is_only_minted_for_a_valid_user_name():
    links = SignInLinks(Clock())
    with pytest.raises(AuthError):
        links.mint("Ann\nadmin")


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/devices/d1?tab=log", "/devices/d1?tab=log"),
        ("/" + "a" * 511, "/" + "a" * 511),
        ("/" + "a" * 512, "/"),  # oversized
        ("//evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("https://evil.example/", "/"),
        ("evil", "/"),
        ("", "/"),
        ("/\x1b[2J", "/"),
        ("/a\r\nset-cookie: x=1", "/"),
        ("/\u20ac", "/"),
        ("/\udcff", "/"),  # a lone surrogate, as undecodable bytes arrive
    ],
)
def test_a_link_goes_on_only_to_a_page_of_this_console(target, expected):
    from pilot.console.app import own_page

    assert own_page(target) == expected
