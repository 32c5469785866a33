"""The console's pages in a real headless Chromium against a real console, broker and agent (dry-run):
sign in, the fleet live, charts, commands and their answers, roles, sign out, and hostile input.
The wrong-password case locks this address out of signing in, so it comes last."""

from __future__ import annotations

import re

from tests.browser.conftest import AGENT_ID, HOSTILE_NAME, OPERATOR, PASSWORD, VIEWER, sign_in


def row(page, device_id: str) -> str:
    return f'li.device[data-id="{device_id}"]'


def test_sign_in_shows_the_real_agent_and_simulated_devices(page, rig):
    for i in range(12):  # some history for the sparklines
        rig.watcher.publish("pilot/lab02/state/cpu_usage", f"{10 + (i * 7) % 30}.5")
        rig.watcher.publish("pilot/lab02/state/cpu_temp", str(50 + i % 5))
        rig.watcher.publish("pilot/kiosk03/state/memory_used", str(60 + (i * 3) % 12))
    rig.watcher.publish("pilot/lab02/state/cpu_usage", "12.5", retain=True)
    rig.watcher.publish("pilot/lab02/state/cpu_temp", "51", retain=True)
    sign_in(page, OPERATOR)
    assert page.url == f"{rig.url}/"
    page.wait_for_selector(f"{row(page, AGENT_ID)}.online .dot.online")
    page.wait_for_selector(f'{row(page, AGENT_ID)} .key[data-entity="cpu_usage"]')
    assert page.text_content(f"{row(page, AGENT_ID)} .device-name") == "Office PC"
    page.wait_for_selector(f"{row(page, 'kiosk03')}.offline")
    assert page.text_content(f"{row(page, 'lab02')} .key[data-entity='cpu_temp'] .key-value") == "51 °C"
    assert page.text_content("#user") == f"{OPERATOR} (operator)"
    page.wait_for_function("() => document.querySelector('#fleet-count').textContent.startsWith('4 devices')")
    office_cpu = f"{row(page, AGENT_ID)} .key[data-entity='cpu_usage'] .key-value"
    page.wait_for_function(f"() => document.querySelector({office_cpu!r}).textContent.endsWith('%')")
    page.screenshot(path=str(rig.shots / "console-fleet.png"))
    assert page.errors == []


def test_search_and_sort_order_the_rows(page, rig):
    sign_in(page, OPERATOR)
    page.wait_for_selector(row(page, "kiosk03"))
    ids = lambda: page.eval_on_selector_all("li.device", "els => els.map(e => e.dataset.id)")  # noqa: E731
    assert ids() == ["evil04", "kiosk03", "lab02", AGENT_ID]  # by name: '<img…', Hall, Lab, Office
    page.select_option("#sort", "status")
    assert ids()[-1] == "kiosk03"  # offline last
    page.fill("#search", "lab")
    assert ids() == ["lab02"]


def test_a_value_and_a_new_device_published_on_the_broker_appear_without_reload(page, rig):
    from tests.browser.conftest import SimDevice, publish_simulated

    sign_in(page, OPERATOR)
    value = f"{row(page, 'lab02')} .key[data-entity='cpu_usage'] .key-value"
    page.wait_for_selector(value)
    page.evaluate("window.__same_document = true")
    rig.watcher.publish("pilot/lab02/state/cpu_usage", "87.5", retain=True)
    page.wait_for_function(f"() => document.querySelector({value!r}).textContent === '87.5 %'")
    publish_simulated(rig.watcher, [SimDevice("new05", "Garage NAS", True, {"cpu_usage": "5"})])
    page.wait_for_selector(f"{row(page, 'new05')} .device-name")
    assert page.text_content(f"{row(page, 'new05')} .device-name") == "Garage NAS"
    assert page.evaluate("window.__same_document") is True  # no reload happened


def test_a_hostile_device_name_renders_as_text(page, rig):
    sign_in(page, OPERATOR)
    name = f"{row(page, 'evil04')} .device-name"
    page.wait_for_selector(name)
    assert page.text_content(name) == HOSTILE_NAME
    assert page.eval_on_selector_all("#devices img", "els => els.length") == 0
    page.click(name)
    page.wait_for_selector("#device-name")
    assert page.text_content("#device-name") == HOSTILE_NAME
    assert page.eval_on_selector_all("main img", "els => els.length") == 0
    assert page.evaluate("window.__pwned") is None
    assert page.errors == []


def test_a_chart_over_each_range_has_the_seeded_history(page, rig):
    sign_in(page, OPERATOR, path=f"/devices/{AGENT_ID}")
    page.click('tr.entity[data-key="cpu_usage"] button.entity-chart')
    page.wait_for_selector('#chart[data-range="24h"] .uplot canvas')
    assert int(page.get_attribute("#chart", "data-points")) > 100  # 24 h of 10-minute readings: 144
    span = lambda: (int(page.get_attribute("#chart", "data-xmin")), int(page.get_attribute("#chart", "data-xmax")))  # noqa: E731
    full = span()
    over = page.locator("#chart .uplot .u-over").bounding_box()
    y = over["y"] + over["height"] / 2
    page.mouse.move(over["x"] + over["width"] * 0.4, y)
    page.mouse.down()
    page.mouse.move(over["x"] + over["width"] * 0.6, y, steps=5)
    page.mouse.up()
    zoomed = span()
    assert full[0] < zoomed[0] < zoomed[1] < full[1]  # drag-to-zoom narrowed the time axis
    page.dblclick("#chart .uplot .u-over")
    page.wait_for_function(f"() => document.querySelector('#chart').dataset.xmin !== '{zoomed[0]}'")
    assert span() == full
    page.click('#chart button.range[data-range="30d"]')
    page.wait_for_selector('#chart[data-range="30d"] .uplot canvas')
    assert int(page.get_attribute("#chart", "data-points")) > 500  # 30 days: coarser tiers, still many points
    page.click('#chart button.range[data-range="1h"]')
    page.wait_for_selector('#chart[data-range="1h"]')
    box = page.locator("#chart .uplot .u-over").bounding_box()
    assert box is not None and box["width"] > 300
    # the seeded readings are 10 minutes apart, so the first one in the hour is at least 8 minutes in: the axis
    # still spans the whole hour the server answered for, not just the readings
    start, end = int(page.get_attribute("#chart", "data-start")), int(page.get_attribute("#chart", "data-end"))
    assert end - start == 3600
    assert span() == (start, end)


def test_a_confirm_command_arms_then_answers_dry_run_with_its_calls(page, rig):
    sign_in(page, OPERATOR, path=f"/devices/{AGENT_ID}")
    press = '.control[data-command="reboot"] button.cmd-press'
    answer = '.control[data-command="reboot"] .cmd-answer'
    page.click(press)
    page.wait_for_selector(f'{answer}[data-status="armed"]')
    assert re.search(r"press again within 20 s to confirm", page.text_content(answer))
    page.click(press)
    page.wait_for_selector(f'{answer}[data-status="dry_run"]')
    assert page.text_content(f"{answer} ul.calls li") == "exec: systemctl reboot"
    page.wait_for_selector('#presses li.press[data-status="dry_run"]')
    page.wait_for_selector("#audit li.audit")
    page.screenshot(path=str(rig.shots / "console-device.png"))
    assert page.errors == []


def test_an_out_of_range_value_is_rejected_with_its_reason(page, rig):
    sign_in(page, OPERATOR, path="/devices/lab02")
    control = '.control[data-command="fan_speed"]'
    page.fill(f"{control} input", "150")
    page.click(f"{control} button.cmd-set")
    page.wait_for_selector(f'{control} .cmd-answer[data-status="rejected"]')
    assert "refused this value" in page.text_content(f"{control} .cmd-answer")


def test_a_viewer_sees_controls_disabled_and_the_server_refuses_a_press(page, rig):
    sign_in(page, VIEWER, path=f"/devices/{AGENT_ID}")
    page.wait_for_selector("#viewer-note")
    assert page.eval_on_selector_all(".control button", "els => els.length > 0 && els.every(b => b.disabled)")
    # a viewer who enables the button by hand is still refused by the server, and told why
    page.eval_on_selector('.control[data-command="backup"] button', "b => { b.disabled = false; }")
    page.click('.control[data-command="backup"] button')
    answer = '.control[data-command="backup"] .cmd-answer[data-status="rejected"]'
    page.wait_for_selector(answer)
    assert "Your role may not send commands" in page.text_content(answer)


def test_sign_out_ends_the_session(page, rig):
    sign_in(page, OPERATOR)
    page.click("#signout")
    page.wait_for_url(f"{rig.url}/login")
    page.goto("/")
    page.wait_for_url(f"{rig.url}/login?next=%2F")
    assert page.is_visible("#login-form")


def test_an_expired_session_goes_to_sign_in_and_back(page, rig, browser):
    sign_in(page, OPERATOR)
    cookies = page.context.cookies()
    assert any(c["name"] == "pilot_session" for c in cookies)
    page.context.add_cookies(
        [{**c, "value": "A" * 43} for c in cookies if c["name"] == "pilot_session"]  # unknown to the console
    )
    page.goto(f"/devices/{AGENT_ID}")
    page.wait_for_url(f"{rig.url}/login?next=%2Fdevices%2F{AGENT_ID}")
    page.fill("#username", OPERATOR)
    page.fill("#password", PASSWORD)
    page.click("#login-submit")
    page.wait_for_url(f"{rig.url}/devices/{AGENT_ID}")
    page.wait_for_selector("#device-name")


def test_the_banner_shows_while_the_broker_or_the_stream_is_away_and_clears(page, rig):
    sign_in(page, OPERATOR)
    page.wait_for_selector(row(page, AGENT_ID))
    assert page.is_hidden("#banner")
    rig.broker.stop()
    try:
        page.wait_for_selector('#banner[data-kind="broker"]')
        assert "disconnected from the MQTT broker" in page.text_content("#banner")
    finally:
        rig.broker.start()
    page.wait_for_selector("#banner", state="hidden")
    rig.stop_console()
    try:
        page.wait_for_selector('#banner[data-kind="stream"]')
        assert "reconnecting" in page.text_content("#banner")
    finally:
        rig.start_console()
    page.wait_for_selector("#banner", state="hidden")
    page.wait_for_selector(row(page, AGENT_ID))  # the same page, fed again


def test_wrong_passwords_are_refused_then_rate_limited(page, rig):
    page.goto("/login")
    for _ in range(5):
        page.fill("#username", OPERATOR)
        page.fill("#password", "not the password")
        page.click("#login-submit")
        page.wait_for_selector("#login-error:not([hidden])")
        text = page.text_content("#login-error")
        if text.startswith("Too many"):
            break
        assert text == "Wrong user name or password."
        page.wait_for_selector("#login-submit:not([disabled])")
        page.eval_on_selector("#login-error", "e => { e.hidden = true; }")
    page.fill("#username", OPERATOR)
    page.fill("#password", PASSWORD)  # even the right password waits
    page.click("#login-submit")
    page.wait_for_selector("#login-error:not([hidden])")
    assert re.fullmatch(r"Too many attempts, wait \d+ s\.", page.text_content("#login-error"))
    assert page.is_disabled("#login-submit")
