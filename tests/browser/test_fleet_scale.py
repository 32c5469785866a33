"""The fleet page with more rows than fit the window: sparklines are drawn for rows in view and for the
others only once scrolled to, live values and summaries reach every row however many arrive together,
and search and sort still give every row back in order. (How fast: bench/console.py, never asserted.)"""

from __future__ import annotations

import pytest

from tests.browser.conftest import AGENT_ID, OPERATOR, SimDevice, publish_simulated, sign_in

BULK = [f"bulk{i:03d}" for i in range(60)]
# by name: the hostile '<img…' name sorts first, then "Bulk 000".."Bulk 059", Hall, Lab, Office
BY_NAME = ["evil04", *BULK, "kiosk03", "lab02", AGENT_ID]


def row(device_id: str) -> str:
    return f'li.device[data-id="{device_id}"]'


def cpu(device_id: str) -> str:
    return f'{row(device_id)} .key[data-entity="cpu_usage"]'


def ids(page) -> list[str]:
    return page.eval_on_selector_all("#devices > li.device", "els => els.map(e => e.dataset.id)")


def points(page, device_id: str) -> str | None:
    """The cpu_usage sparkline's points, or None while the row has no sparkline element."""
    return page.eval_on_selector(
        cpu(device_id),
        "el => { const p = el.querySelector('svg.spark polyline'); return p && p.getAttribute('points'); }",
    )


def publish_round(page, rig, value: str, devices: list[str]) -> None:
    """One cpu_usage value for each device, then wait until every row shows it (the stream coalesces values
    of one key within a quarter second, so each round is read before the next is sent)."""
    for d in devices:
        rig.watcher.publish(f"pilot/{d}/state/cpu_usage", value)
    for d in devices:
        page.wait_for_function(
            "([sel, want]) => document.querySelector(sel).textContent === want",
            arg=[f"{cpu(d)} .key-value", f"{value} %"],
        )


@pytest.fixture(scope="module")
def bulk(rig):
    """60 more devices on the broker (retained), beside the agent and the conftest's three."""
    publish_simulated(
        rig.watcher, [SimDevice(d, f"Bulk {d[4:]}", True, {"cpu_usage": "1", "memory_used": "2"}) for d in BULK]
    )


def test_sparklines_are_drawn_for_rows_in_view_and_for_others_once_scrolled_to(page, rig, bulk):
    sign_in(page, OPERATOR)
    page.wait_for_function(f"() => document.querySelectorAll('#devices > li.device').length === {len(BY_NAME)}")
    assert ids(page) == BY_NAME
    for n, value in enumerate(("20", "60", "35")):
        publish_round(page, rig, value, ["bulk000", "bulk059"])
        if n == 0:
            assert points(page, "bulk059") is None  # far below the window: not drawn, not even made
    page.wait_for_function(
        "sel => (document.querySelector(sel).getAttribute('points') || '').split(' ').length >= 3",
        arg=f"{cpu('bulk000')} svg.spark polyline",
    )
    assert points(page, "bulk059") is None
    page.eval_on_selector(row("bulk059"), "el => el.scrollIntoView()")
    page.wait_for_function(
        "sel => (document.querySelector(sel)?.getAttribute('points') || '').split(' ').length >= 3",
        arg=f"{cpu('bulk059')} svg.spark polyline",
    )
    before = points(page, "bulk059")
    publish_round(page, rig, "90", ["bulk059"])  # in view now: redrawn with the new value
    page.wait_for_function(
        "([sel, old]) => document.querySelector(sel).getAttribute('points') !== old",
        arg=[f"{cpu('bulk059')} svg.spark polyline", before],
    )
    assert page.errors == []


def test_values_and_summaries_arriving_together_reach_every_row_in_order(page, rig, bulk):
    sign_in(page, OPERATOR)
    page.wait_for_function(f"() => document.querySelectorAll('#devices > li.device').length === {len(BY_NAME)}")
    publish_round(page, rig, "42", BULK)  # 60 values in one or two stream events
    for d in ("bulk010", "bulk020"):
        rig.watcher.publish(f"pilot/{d}/availability", "offline", retain=True)
    page.wait_for_selector(f"{row('bulk010')}.offline .dot.offline")
    page.wait_for_selector(f"{row('bulk020')}.offline")
    assert page.text_content(f"{cpu('bulk010')} .key-value") == "42 %"  # the rebuilt row keeps the value
    assert ids(page) == BY_NAME
    page.select_option("#sort", "status")
    by_status = ids(page)
    assert by_status[-3:] == ["bulk010", "bulk020", "kiosk03"]  # offline last, by name among them
    page.fill("#search", "bulk 05")
    assert ids(page) == [f"bulk05{i}" for i in range(10)]
    page.fill("#search", "")
    assert ids(page) == by_status
    page.select_option("#sort", "name")
    assert ids(page) == BY_NAME
    assert page.errors == []
