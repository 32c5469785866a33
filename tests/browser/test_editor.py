"""The profile editor in a real headless Chromium against a real console, broker and dry-run agent: live
validation with the error at its line and a quick fix, completion and hover docs from the catalog, the
form (comments kept), the diff and save (a 409 when the file changed on disk), and signed deploys to the
agent: one applied (its new entity appears in the retained discovery on the broker) and one with a
wrong broker port that the agent rolls back. The tests run in order and share one console."""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import pytest

from testkit.agent import pilot_run
from testkit.broker import Mosquitto, Watcher, free_port
from tests.browser.conftest import HOSTILE_NAME, PASSWORD, ConsoleRig, SimDevice, publish_simulated, sign_in

ADMIN, OPERATOR = "ada", "otto"
AGENT_ID = "office01"
FILE = "office.yaml"

PROFILE = """# Office PC: the profile the editor tests open
pilot: 1
device: {{id: office01, name: Office PC}}
mqtt: {{host: 127.0.0.1, port: {port}}}
sensors:
  # how busy the CPU is
  cpu_usage:
    probe: cpu.percent
    every: 2s
    unit: "%"
  memory_used: {{probe: memory.used_percent, every: 2s, unit: "%"}}   # RAM in use
  uptime: {{probe: system.uptime, every: 10s}}
commands:
  backup: {{action: process.run, args: {{argv: [/bin/echo, backup]}}, platform: button}}
policies:
  allow: [backup]
  hmac: {{keyring: {keyring}, window: 60s}}
"""
PROBE_LINE = 8  # "    probe: cpu.percent"


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    """This module's console: an admin, a profiles folder for the editor, an agent that trusts the
    console's key (deploys are always signed) and connects with its profile's own MQTT settings."""
    from pilot.agent import signing
    from pilot.console.auth import UsersFile

    base = tmp_path_factory.mktemp("editor")
    broker = Mosquitto().start()
    watcher = Watcher(broker.port).start()
    keyring = base / "keyring"
    keyring.write_text(signing.new_key_line("console") + "\n")
    keyring.chmod(0o600)
    users = base / "users"
    UsersFile(users).add(ADMIN, "admin", PASSWORD)
    UsersFile(users).add(OPERATOR, "operator", PASSWORD)
    profiles = base / "profiles"
    profiles.mkdir()
    text = PROFILE.format(port=broker.port, keyring=keyring)
    (profiles / FILE).write_text(text)
    agent_dir = base / "agent"
    agent_dir.mkdir()
    (agent_dir / FILE).write_text(text)
    settings = base / "console.yaml"
    settings.write_text(json.dumps({"editor": {"profiles_dir": str(profiles)}}))
    agent = pilot_run(
        agent_dir / FILE, None, base / "agent-state", "--dry-run", env={"LANG": "C.UTF-8"}, log=base / "agent.log"
    ).start()

    http_port = free_port()
    argv = [
        sys.executable, "-m", "pilot", "console", "run",
        "--config", str(settings),
        "--broker", f"127.0.0.1:{broker.port}",
        "--listen", f"127.0.0.1:{http_port}",
        "--db", f"sqlite:///{base / 'history.db'}",
        "--users", str(users),
        "--keyring", str(keyring),
        "--kid", "console",
        "--state-dir", str(base / "console-state"),
    ]  # fmt: skip
    console = ConsoleRig.make(base, broker, watcher, agent, http_port, argv)
    console.profiles = profiles  # type: ignore[attr-defined]
    console.agent_profile = agent_dir / FILE  # type: ignore[attr-defined]
    console.original = text  # type: ignore[attr-defined]
    try:
        assert watcher.wait_for(lambda m: m.topic == f"pilot/{AGENT_ID}/availability" and m.payload == b"online", 20), (
            agent.tail()
        )
        console.start_console()
        yield console
    finally:
        console.close()


# ------------------------------------------------------------------ helpers


def open_editor(page, query: str = f"?file={FILE}") -> None:
    sign_in(page, ADMIN, path=f"/editor{query}")
    page.wait_for_selector("body[data-page='editor'][data-ready='1']")
    page.wait_for_selector("#diag-summary[data-state='ok']")


def editor_text(page) -> str:
    """The text as the editor shows it (every line is rendered: the profiles here are short)."""
    return page.eval_on_selector_all(".cm-content .cm-line", "els => els.map(e => e.textContent).join('\\n')")


def click_line(page, n: int) -> None:
    page.click(f".cm-content .cm-line:nth-child({n})")
    page.keyboard.press("End")


def completions(page, typed: str) -> list[str]:
    """Types at the cursor and returns the labels of the completion list that opens."""
    page.keyboard.type(typed)
    page.wait_for_selector(".cm-tooltip-autocomplete li")

    word = re.search(r"[\w.]*$", typed).group(0).lower()  # what the list is filtered by: the word being typed

    def narrowed(labels: list[str]) -> bool:  # CodeMirror has filtered by every letter of it, in order
        def fits(label: str) -> bool:
            rest = iter(label.lower())
            return all(ch in rest for ch in word)

        return bool(labels) and all(fits(label) for label in labels)

    labels: list[str] = []
    for _ in range(100):  # the list opens on the first letter and narrows as the rest arrive
        labels = page.eval_on_selector_all(".cm-tooltip-autocomplete li", "els => els.map(e => e.textContent)")
        if narrowed(labels):
            break
        page.wait_for_timeout(50)
    return labels


def replace_text(page, text: str) -> None:
    page.click(".cm-content")
    page.keyboard.press("Control+a")
    page.keyboard.insert_text(text)


# ------------------------------------------------------------------ tests


def test_a_typo_is_underlined_at_its_line_and_the_quick_fix_clears_it(page, rig):
    open_editor(page)
    assert editor_text(page) == rig.original
    click_line(page, PROBE_LINE)  # "    probe: cpu.percent|"
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("Backspace")  # cpu.percnt
    problem = f"li.problem[data-line='{PROBE_LINE}']"
    page.wait_for_selector(problem)
    assert "unknown probe 'cpu.percnt'" in page.text_content(f"{problem} .problem-message")
    assert page.get_attribute(problem, "data-col") == "12"
    # underlined in the editor, on that line, over the word
    page.wait_for_selector(".cm-lintRange-error")
    assert page.text_content(".cm-lintRange-error") == "cpu.percnt"
    line_of_mark = page.evaluate(
        """() => { const root = document.querySelector('#editor-host').shadowRoot;
                   const m = root.querySelector('.cm-lintRange-error');
                   const lines = [...m.closest('.cm-content').children];
                   return lines.indexOf(m.closest('.cm-line')) + 1; }"""
    )
    assert line_of_mark == PROBE_LINE
    assert page.get_attribute("#diag-summary", "data-state") == "errors"
    # hovering the underline shows CodeMirror's tooltip with the message and the fix
    box = page.locator(".cm-lintRange-error").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_selector(".cm-tooltip-lint")
    assert "did you mean 'cpu.percent'?" in page.text_content(".cm-tooltip-lint .cm-diagnosticText")
    assert page.text_content(".cm-tooltip-lint .cm-diagnosticAction") == "Replace with “cpu.percent”"
    page.screenshot(path=str(rig.shots / "console-editor.png"))
    page.click(f"{problem} button.fix")
    page.wait_for_selector("#diag-summary[data-state='ok']")
    assert page.query_selector(".cm-lintRange-error") is None
    assert editor_text(page) == rig.original
    assert page.errors == []


def test_completion_and_hover_come_from_the_catalog(page, rig):
    from pilot.console.editor.catalog import catalog

    open_editor(page)
    # hover over a probe name: its description from the catalog
    x, y = page.evaluate(
        """(n) => { const line = document.querySelector('#editor-host').shadowRoot
                      .querySelectorAll('.cm-content .cm-line')[n - 1];
                    const walk = document.createTreeWalker(line, NodeFilter.SHOW_TEXT);
                    for (let t = walk.nextNode(); t; t = walk.nextNode()) {
                      const i = t.data.indexOf('cpu.percent');
                      if (i < 0) continue;
                      const r = document.createRange(); r.setStart(t, i + 2); r.setEnd(t, i + 3);
                      const b = r.getBoundingClientRect(); return [b.x + b.width / 2, b.y + b.height / 2];
                    } return null; }""",
        PROBE_LINE,
    )
    page.mouse.move(x, y)
    page.wait_for_selector(".cm-tooltip-hover .pilot-doc")
    want = next(p["doc"] for p in catalog()["probes"] if p["name"] == "cpu.percent")
    assert want and want in page.text_content(".cm-tooltip-hover .pilot-doc")
    # completion of a sensor's keys where the cursor is
    click_line(page, 9)  # "    every: 2s"
    page.keyboard.press("Enter")
    labels = completions(page, "pub")
    assert any(label.startswith("publish") for label in labels), labels
    assert not any(label.startswith("probe") for label in labels), labels  # filtered by what was typed
    page.click(".cm-tooltip-autocomplete li:has-text('publish')")  # takes "publish: "
    for _ in range(100):  # the editor redraws the line on its next frame
        if "    publish: " in editor_text(page).split("\n"):
            break
        page.wait_for_timeout(50)
    assert "    publish: " in editor_text(page).split("\n")
    # values: probe names after "probe: "
    click_line(page, 5)  # "sensors:"
    page.keyboard.press("Enter")
    labels = completions(page, "load: {probe: cpu.lo")
    assert any(label.startswith("cpu.load") for label in labels), labels
    # a probe's argument names inside its args mapping
    page.keyboard.press("Escape")
    page.keyboard.press("Enter")
    labels = completions(page, "  nvme: {probe: thermal.sensor, args: {la")
    assert [label for label in labels if label.startswith(("label", "chip"))] == ["labelstring"], labels
    assert page.errors == []


def test_an_operator_validates_but_may_not_save_or_deploy(page, rig):
    sign_in(page, OPERATOR, path="/")
    page.click("#nav-editor")
    page.wait_for_selector("body[data-page='editor'][data-ready='1']")
    page.select_option("#open-pack", "pack:base/linux")
    page.wait_for_selector("#diag-summary[data-state='ok']")
    assert page.is_disabled("#save")
    assert page.is_hidden("#deploy")
    assert page.query_selector("#open-device") is None or page.is_hidden("#open-device")
    page.click("#tab-form")
    page.wait_for_selector("#form-view[data-ready='1'] #form-sensors")
    assert page.is_hidden("#broker-test")
    assert page.errors == []


def test_a_shipped_pack_profile_opens_and_validates(page, rig):
    open_editor(page)
    page.select_option("#open-pack", "pack:linux-desktop/desktop")
    page.wait_for_function(
        "() => document.querySelector('#editor-source').textContent === 'pack linux-desktop/desktop'"
    )
    shipped = (Path(__file__).resolve().parents[2] / "profiles" / "linux-desktop" / "desktop.yaml").read_text()
    assert editor_text(page).startswith("\n".join(shipped.split("\n")[:10]))
    page.wait_for_selector("#diag-summary[data-state='ok']")
    assert page.input_value("#save-name") == "desktop.yaml"
    assert page.errors == []


def test_the_form_edits_the_yaml_in_place_and_keeps_its_comments(page, rig):
    open_editor(page)
    page.click("#tab-form")
    page.wait_for_selector("#form-view[data-ready='1'] tr.form-sensor[data-id='uptime']")
    assert page.input_value("input[name='device.name']") == "Office PC"
    assert page.input_value("input[name='mqtt.port']") == str(rig.broker.port)
    page.screenshot(path=str(rig.shots / "console-editor-form.png"), full_page=True)
    page.uncheck("tr.form-sensor[data-id='uptime'] input[type='checkbox']")
    page.wait_for_selector(
        "#form-view[data-ready='1'] tr.form-sensor[data-id='uptime'] input[type='checkbox']:not(:checked)"
    )
    page.fill("tr.form-sensor[data-id='cpu_usage'] input[name='sensors.cpu_usage.every']", "5s")
    page.keyboard.press("Tab")  # change event
    page.wait_for_selector("#form-view[data-ready='1'] input[name='sensors.cpu_usage.every'][value='5s']")
    page.click("#tab-text")
    text = editor_text(page)
    for comment in ("# Office PC: the profile the editor tests open", "  # how busy the CPU is", "# RAM in use"):
        assert comment in text
    assert "    every: 5s" in text.split("\n")
    assert "enabled: false" in text.split("uptime", 1)[1].split("\n")[0]
    page.wait_for_selector("#diag-summary[data-state='ok']")  # a sensor turned off is a valid profile
    # back on: the key goes away again, and nothing else changed
    page.click("#tab-form")
    page.check("#form-view tr.form-sensor[data-id='uptime'] input[type='checkbox']")
    page.wait_for_selector("#form-view[data-ready='1'] tr.form-sensor[data-id='uptime'] input[type='checkbox']:checked")
    page.click("#tab-text")
    assert editor_text(page) == rig.original.replace("    every: 2s", "    every: 5s", 1)
    assert page.errors == []


def test_the_diff_then_save_writes_the_file_and_a_change_on_disk_gives_a_conflict(page, rig):
    open_editor(page)
    click_line(page, 10)  # '    unit: "%"'
    page.keyboard.insert_text("\n    precision: 1")
    page.wait_for_selector("#diag-summary[data-state='ok']")
    page.click("#save")
    page.wait_for_selector("#diff-view[data-ready='1'] #diff")
    added = page.eval_on_selector_all("#diff .dl.add", "els => els.map(e => e.textContent)")
    assert added == ["+    precision: 1\n"]
    page.click("#save-confirm")
    page.wait_for_selector("#save-status.ok")
    on_disk = (rig.profiles / FILE).read_text()
    assert on_disk == rig.original.replace('    unit: "%"\n', '    unit: "%"\n    precision: 1\n', 1)
    # someone else changes the file: the next save is refused and says why
    (rig.profiles / FILE).write_text(on_disk + "# edited elsewhere\n")
    page.click("#tab-text")
    click_line(page, 11)
    page.keyboard.insert_text("0")  # precision: 10
    page.click("#save")
    page.wait_for_selector("#diff-view[data-ready='1'] #diff")
    page.click("#save-confirm")
    page.wait_for_selector("#save-status.error")
    assert "changed on disk" in page.text_content("#save-status")
    assert (rig.profiles / FILE).read_text() == on_disk + "# edited elsewhere\n"
    (rig.profiles / FILE).write_text(rig.original)
    assert page.errors == []


def test_hostile_names_and_messages_render_as_text(page, rig):
    publish_simulated(rig.watcher, [SimDevice("evil04", HOSTILE_NAME, True, {"cpu_usage": "1"})])
    rig.watcher.publish(
        "pilot/evil04/deploy",
        json.dumps({"state": "rejected", "reason": HOSTILE_NAME, "by": HOSTILE_NAME, "ts": 1}),
        retain=True,
    )
    open_editor(page)
    target = "li.deploy-target[data-id='evil04']"
    page.wait_for_selector(target)
    assert HOSTILE_NAME in page.text_content(f"{target} .deploy-name")
    assert HOSTILE_NAME in page.text_content("#open-device")
    # a key made of markup: the validator's message quotes it, and it stays text everywhere
    click_line(page, 10)
    page.keyboard.insert_text(f"\n    {HOSTILE_NAME}: 1")
    page.wait_for_selector("li.problem[data-line='11']")
    assert "<img src=x" in page.text_content("li.problem[data-line='11'] .problem-message")
    box = page.locator(".cm-lintRange-error").first.bounding_box()
    page.mouse.move(box["x"] + 3, box["y"] + box["height"] / 2)
    page.wait_for_selector(".cm-tooltip-lint")
    images = """() => document.querySelectorAll('img').length
                    + document.querySelector('#editor-host').shadowRoot.querySelectorAll('img').length"""
    assert page.evaluate(images) == 0
    assert page.evaluate("window.__pwned") is None
    # more than the console accepts is not sent at all, and the page says why
    page.click(".cm-content")
    page.keyboard.press("Control+End")
    page.keyboard.insert_text("\n# " + "x" * 270_000)
    page.wait_for_selector("#diag-summary[data-state='failed']")
    assert "too large" in page.text_content("#diag-summary")
    assert page.errors == []
    rig.watcher.publish("pilot/evil04/deploy", "", retain=True)


def test_deploy_applies_on_the_agent_and_its_new_entity_is_in_the_discovery(page, rig):
    open_editor(page)
    click_line(page, 5)  # "sensors:"
    page.keyboard.insert_text("\n  cpu_count: {probe: cpu.count, every: 1m}")
    page.wait_for_selector("#diag-summary[data-state='ok']")
    new_text = rig.original.replace("sensors:\n", "sensors:\n  cpu_count: {probe: cpu.count, every: 1m}\n", 1)
    assert editor_text(page) == new_text
    target = f"li.deploy-target[data-id='{AGENT_ID}']"
    page.check(f"{target} input[type='checkbox']")
    page.click("#deploy-go")
    page.wait_for_selector(f"{target}[data-state='applied']", timeout=60_000)
    assert rig.agent.running()
    assert rig.agent_profile.read_text() == new_text
    # the retained discovery on the broker, read by a new subscriber, has the new entity
    topic = f"homeassistant/device/{AGENT_ID}/config"
    reader = Watcher(rig.broker.port, topics=(topic,)).start()
    try:
        found = reader.wait_for(
            lambda m: m.topic == topic and m.retain and b"pilot_office01_cpu_count" in m.payload, timeout=20
        )
    finally:
        reader.stop()
    assert found is not None, rig.agent.tail()
    assert "pilot_office01_cpu_count" in json.loads(found.payload)["components"]
    # the fleet page shows the rollout on the device's row
    page.click("a.brand")
    page.wait_for_selector(f"li.device[data-id='{AGENT_ID}'] .badge.deploy[data-deploy='applied']")
    assert page.errors == []


def test_a_wrong_broker_port_is_rolled_back_and_the_page_says_so(page, rig):
    before = rig.agent_profile.read_text()
    closed = free_port()
    sign_in(page, ADMIN, path=f"/devices/{AGENT_ID}")
    page.wait_for_selector(".device-head .badge.deploy[data-deploy='applied']")  # the last deploy
    page.click("#edit-profile")  # the profile the device runs now, in the editor
    page.wait_for_selector("body[data-page='editor'][data-ready='1']")
    assert page.url.endswith(f"/editor?device={AGENT_ID}")
    page.wait_for_selector("#diag-summary[data-state='ok']")
    assert editor_text(page) == before
    page.click("#tab-form")
    page.wait_for_selector("#form-view[data-ready='1'] input[name='mqtt.port']")
    page.click("#broker-test")
    page.wait_for_selector("#broker-result[data-ok='true']")
    page.fill("input[name='mqtt.port']", str(closed))
    page.keyboard.press("Tab")
    page.wait_for_selector(f"#form-view[data-ready='1'] input[name='mqtt.port'][value='{closed}']")
    page.click("#broker-test")
    page.wait_for_selector("#broker-result[data-ok='false']")
    page.click("#tab-text")
    assert f"mqtt: {{host: 127.0.0.1, port: {closed}}}" in editor_text(page)
    target = f"li.deploy-target[data-id='{AGENT_ID}']"
    assert page.is_checked(f"{target} input[type='checkbox']")  # ?device= picks it
    page.click("#deploy-go")
    page.wait_for_selector(f"{target}[data-state='rolled_back']", timeout=90_000)
    assert "broker" in page.text_content(f"{target} .deploy-state").lower() + page.text_content(
        f"{target} .deploy-detail"
    )
    assert rig.agent_profile.read_text() == before  # the old file is back
    assert rig.agent.running()
    # and the agent still publishes on the broker with its old settings
    after = time.monotonic()
    assert rig.watcher.wait_for(lambda m: m.topic.startswith(f"pilot/{AGENT_ID}/state/"), 30, since=after)
    assert page.errors == []
