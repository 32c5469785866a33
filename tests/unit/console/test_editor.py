"""The profile editor's server side, without a browser: the real validator's findings at the right line and
column with quick fixes, the form model, edits that keep comments and layout, diff, the profiles folder
against traversal, links and lost updates, the catalog against the registries, and the bounds."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from pilot.console.editor import MAX_DIAGNOSTICS, MAX_TEXT, EditorError, catalog, text
from pilot.console.editor.files import ProfilesDir, sha256
from pilot.console.editor.runner import RateLimit, Runner
from pilot.console.editor.service import broker_settings
from pilot.profile import packs
from pilot.profile.schema import base_profile_schema
from pilot.registry import ACTIONS, PROBES

ROOT = Path(__file__).resolve().parents[3]

# columns counted by hand: `    probe: cpu.percnt` puts the value at column 12
TYPOS = """\
pilot: 1
device: {id: rig, name: Rig}
sensors:
  cpu:
    probe: cpu.percnt
    evry: 10s
  mem: {probe: memory.used_percent, every: 5x}
  quoted: {probe: "cpu.percnt"}
commands:
  off:
    action: power.shutdwn
    platform: button
policies:
  allow: [off, nothere]
"""

COMMENTED = """\
# Office PC: the profile the whole office copies.
pilot: 1
device:
  id: office   # never the host name
  name: Office PC

sensors:
  # how busy it is
  cpu_usage:
    probe: cpu.percent
    every: 10s   # fast enough for a chart
  memory_usage: {probe: memory.used_percent, every: 30s}  # flow style stays flow style
  uptime:
    probe: system.uptime
    every: 1h
    publish:
      min_change: 60

commands:
  reboot:
    action: power.reboot
    args: {method: systemctl}
    platform: button
    policy:
      confirm: 20s   # a second press within 20 s
      cooldown: 5m
  shutdown:
    action: power.shutdown
    platform: button
    policy: {signed: true}
policies:
  allow: [reboot, shutdown]
  hmac: {keyring: /etc/pilot/keyring}
# the end
"""


def fix_text(source: str, fix: dict) -> str:
    lines = source.split("\n")
    line = lines[fix["line"] - 1]
    lines[fix["line"] - 1] = line[: fix["col"] - 1] + fix["insert"] + line[fix["end_col"] - 1 :]
    return "\n".join(lines)


# ------------------------------------------------------------------ validate
def test_each_finding_is_at_its_line_and_column_with_the_word_underlined():
    answer = text.validate(TYPOS, "rig.yaml")
    assert answer["ok"] is False
    found = {(d["line"], d["col"], d["end_line"], d["end_col"], d["code"]) for d in answer["diagnostics"]}
    assert found == {
        (5, 12, 5, 22, "registry"),  # cpu.percnt
        (6, 5, 6, 9, "schema"),  # evry
        (7, 44, 7, 46, "schema"),  # 5x
        (8, 19, 8, 31, "registry"),  # "cpu.percnt", quotes included
        (11, 13, 11, 26, "registry"),  # power.shutdwn
        (14, 16, 14, 23, "reference"),  # nothere
    }


def test_a_did_you_mean_becomes_a_fix_that_replaces_only_the_word_and_clears_the_finding():
    diagnostics = text.validate(TYPOS)["diagnostics"]
    fixes = {d["line"]: d["fix"] for d in diagnostics if d["fix"]}
    assert fixes[5] == {"line": 5, "col": 12, "end_line": 5, "end_col": 22, "insert": "cpu.percent"}
    assert fixes[6]["insert"] == "every"
    assert fixes[8] == {"line": 8, "col": 20, "end_line": 8, "end_col": 30, "insert": "cpu.percent"}  # in the quotes
    assert fixes[11]["insert"] == "power.shutdown"
    assert {d["line"] for d in diagnostics if d["fix"] is None} == {7, 14}
    fixed = TYPOS
    for line in sorted(fixes, reverse=True):
        fixed = fix_text(fixed, fixes[line])
    assert '  quoted: {probe: "cpu.percent"}' in fixed.split("\n")
    left = text.validate(fixed)["diagnostics"]
    assert {(d["line"], d["code"]) for d in left} == {(7, "schema"), (14, "reference")}


def test_a_valid_profile_is_ok_with_nothing_to_show():
    assert text.validate(COMMENTED) == {"diagnostics": [], "ok": True}


def test_files_the_profile_names_are_the_devices_and_never_opened_on_the_console(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # opening it for reading would block until a writer came
    profile = (
        f"pilot: 1\nmqtt: {{host: b.lan, username: u, password_file: {fifo}, tls: {{ca_file: /nonexistent/ca}}}}\n"
        "commands:\n  off: {action: power.shutdown, platform: button, policy: {signed: true}}\n"
        "policies:\n  allow: [off]\n  hmac: {keyring: /root/keyring}\n"
    )
    answer = asyncio.run(Runner(timeout=30).run(text.validate, profile))
    assert answer == {"diagnostics": [], "ok": True}
    bad = profile.replace("hmac: {keyring: /root/keyring}", "hmac: {keyring: 5}")
    assert [(d["line"], d["code"]) for d in text.validate(bad)["diagnostics"]] == [(7, "schema")]


def test_a_pack_base_is_composed_and_a_path_base_is_refused_at_its_entry():
    good = "pilot: 1\nextends: base/linux\ndevice: {id: x}\nsensors:\n  extra: {probe: cpu.percnt}\n"
    diagnostics = text.validate(good)["diagnostics"]
    assert [(d["line"], d["col"], d["code"]) for d in diagnostics] == [(5, 18, "registry")]
    for ref in ("../../etc/passwd.yaml", "/etc/pilot/secret.yaml", "~/x.yaml", "base/../../etc/x", "./sibling"):
        answer = text.validate(f"pilot: 1\nextends: [base/linux, {ref!r}]\n")
        assert answer["ok"] is False
        assert [(d["line"], d["code"]) for d in answer["diagnostics"]] == [(2, "extends")]


@pytest.mark.parametrize(
    "hostile",
    [
        "a: &a [1]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\nc: [*b, *b, *b, *b, *b, *b, *b, *b]\n",  # alias bomb
        "x: " + "[" * 100_000 + "]" * 100_000 + "\n",  # deep flow nesting
        "".join(" " * i + f"k{i}:\n" for i in range(600)),  # deep block nesting
        "pilot: 1\nsensors:\n\tcpu: {probe: cpu.percent}\n",  # a tab
        "pilot: 1\n\x85sensors: {}\n",  # a line break editors do not show
        "x: " + "9" * 5000 + "\n",
    ],
)
def test_hostile_texts_end_in_a_positioned_error_not_a_hang(hostile):
    answer = asyncio.run(Runner(timeout=30).run(text.validate, hostile, "bomb.yaml"))
    assert answer["ok"] is False
    assert answer["diagnostics"] and all(d["line"] >= 1 and d["col"] >= 1 for d in answer["diagnostics"])


def test_findings_are_capped():
    many = "pilot: 1\nsensors:\n" + "".join(f"  s{i}: {{probe: nope.{i}}}\n" for i in range(MAX_DIAGNOSTICS + 50))
    answer = text.validate(many)
    assert len(answer["diagnostics"]) == MAX_DIAGNOSTICS and answer["ok"] is False


@pytest.mark.parametrize(
    ("value", "status"), [("x" * (MAX_TEXT + 1), 413), ("é" * (MAX_TEXT // 2 + 1), 413), ("\ud800", 400), (5, 400)]
)
def test_oversized_and_unencodable_texts_are_refused(value, status):
    for work in (lambda: text.validate(value), lambda: text.form(value), lambda: text.apply(value, [])):
        with pytest.raises(EditorError) as caught:
            work()
        assert caught.value.status == status


def test_the_file_name_shown_is_a_plain_name_or_the_default():
    assert text.file_name("office.yaml") == "office.yaml"
    for bad in ("../x.yaml", "a/b.yaml", ".hidden.yaml", "x.txt", "x\n.yaml", None, 3):
        assert text.file_name(bad) == "profile.yaml"


# ------------------------------------------------------------------ runner
def test_work_past_the_deadline_is_abandoned_and_the_pool_stays_bounded():
    release = threading.Event()

    async def scenario():
        runner = Runner(workers=1, queue=1, timeout=0.05)
        with pytest.raises(EditorError) as slow:
            await runner.run(release.wait)
        assert slow.value.status == 503 and "longer than" in slow.value.message
        waiting = asyncio.ensure_future(runner.run(release.wait))
        await asyncio.sleep(0)
        with pytest.raises(EditorError) as busy:  # one running past its deadline, one queued: full
            await runner.run(lambda: 1)
        assert busy.value.status == 503 and "busy" in busy.value.message
        release.set()
        await asyncio.gather(waiting, return_exceptions=True)
        for _ in range(100):
            try:
                return await runner.run(lambda: 42)
            except EditorError:
                await asyncio.sleep(0.01)

    assert asyncio.run(scenario()) == 42


def test_broker_tests_are_limited_per_user():
    now = [0.0]
    limit = RateLimit(in_flight=1, per_minute=10, clock=lambda: now[0])
    limit.begin("ada")
    with pytest.raises(EditorError) as running:
        limit.begin("ada")
    assert running.value.status == 429
    limit.begin("bob")  # another user is not held back
    limit.end("ada")
    for _ in range(9):
        limit.begin("ada")
        limit.end("ada")
    with pytest.raises(EditorError) as minute:
        limit.begin("ada")
    assert minute.value.status == 429 and "10 broker tests a minute" in minute.value.message
    now[0] = 60.0
    limit.begin("ada")


def test_broker_settings_come_from_the_request_or_the_profile_text():
    assert broker_settings({"host": "mqtt.lan", "port": 1884, "tls": False}) == ("mqtt.lan", 1884, False)
    assert broker_settings({"host": "mqtt.lan", "tls": True}) == ("mqtt.lan", 8883, True)
    profile = "pilot: 1\nmqtt:\n  host: broker.lan\n  tls: {ca_file: /etc/ca.pem}\n"
    assert broker_settings({"text": profile}) == ("broker.lan", 8883, True)
    for bad in (
        {"host": "a b"},
        {"host": "x\n"},
        {"host": "x", "port": 0},
        {"host": "x", "port": True},
        {"host": "x", "tls": "yes"},
        {"host": ""},
        {"text": "pilot: 1\n"},
    ):
        with pytest.raises(EditorError):
            broker_settings(bad)


# ------------------------------------------------------------------ form
def test_the_form_reads_what_people_change_most():
    answer = text.form(COMMENTED)
    assert answer["ok"] is True
    form = answer["form"]
    assert form["device"] == {"name": "Office PC", "id": "office"}
    assert form["mqtt"] == {"host": None, "port": None, "tls": False, "username": None}
    assert form["sensors"] == [
        {"id": "cpu_usage", "enabled": True, "every": "10s", "deadband": None},
        {"id": "memory_usage", "enabled": True, "every": "30s", "deadband": None},
        {"id": "uptime", "enabled": True, "every": "1h", "deadband": 60},
    ]
    assert form["commands"] == [
        {"id": "reboot", "enabled": True, "confirm": "20s", "cooldown": "5m", "signed": False},
        {"id": "shutdown", "enabled": True, "confirm": None, "cooldown": None, "signed": True},
    ]
    mqtt = text.form("pilot: 1\nmqtt: {host: b.lan, port: 8883, username: pi, tls: {}}\n")["form"]["mqtt"]
    assert mqtt == {"host": "b.lan", "port": 8883, "tls": True, "username": "pi"}


def test_a_text_the_form_cannot_read_says_where():
    assert text.form("pilot: 1\nsensors: [\n") == {"ok": False, "error": text.form("pilot: 1\nsensors: [\n")["error"]}
    error = text.form("pilot: 1\ndevice:\n\tid: x\n")["error"]
    assert error.startswith("3:1: tab character")
    assert text.form("- a\n- b\n")["ok"] is False


# ------------------------------------------------------------------ apply
def shipped_profiles() -> list[Path]:
    return sorted((ROOT / "profiles").glob("*/*.yaml"))


@pytest.mark.parametrize("source", [COMMENTED, TYPOS, *[p.read_text() for p in shipped_profiles()]])
def test_no_edit_gives_the_text_back_byte_for_byte(source):
    assert text.apply(source, [])["text"] == source


def test_toggling_a_sensor_keeps_every_comment_and_changes_one_place():
    edited = text.apply(COMMENTED, [{"path": ["sensors", "cpu_usage", "enabled"], "value": False}])["text"]
    comments = [line for line in COMMENTED.split("\n") if "#" in line]
    assert all(line in edited.split("\n") for line in comments)
    assert text.diff(COMMENTED, edited)["diff"].count("\n+") == 2  # the `+++` header and one added line
    assert "    enabled: false\n" in edited
    assert text.form(edited)["form"]["sensors"][0]["enabled"] is False


def test_edits_set_add_and_remove_values_keeping_the_rest():
    edits = [
        {"path": ["sensors", "cpu_usage", "every"], "value": "5s"},
        {"path": ["sensors", "uptime", "publish", "min_change"], "value": None},
        {"path": ["commands", "reboot", "policy", "confirm"], "value": None},
        {"path": ["commands", "shutdown", "policy", "cooldown"], "value": "1m"},
        {"path": ["mqtt", "host"], "value": "broker.lan"},
    ]
    edited = text.apply(COMMENTED, edits)["text"]
    lines = edited.split("\n")
    assert "    every: 5s    # fast enough for a chart" in lines  # ruamel keeps the comment's column
    assert not any("confirm" in line for line in lines)
    assert "    publish:" not in lines  # emptied by the removal: gone too
    assert lines[lines.index("    every: 1h") + 1 : lines.index("    every: 1h") + 3] == ["", "commands:"]
    assert "    policy: {signed: true, cooldown: 1m}" in lines
    assert "mqtt:" in lines and "  host: broker.lan" in lines
    assert "# Office PC: the profile the whole office copies." == lines[0]
    form = text.form(edited)["form"]
    assert form["sensors"][0]["every"] == "5s" and form["sensors"][2]["deadband"] is None
    assert form["commands"][0]["confirm"] is None and form["commands"][1]["cooldown"] == "1m"
    assert text.validate(edited)["ok"] is True


def test_an_edit_next_to_a_line_ruamel_would_rewrite_leaves_that_line_as_written():
    laptop = (ROOT / "profiles" / "linux-laptop" / "laptop.yaml").read_text()
    quirky = next(line for line in laptop.split("\n") if line.strip().startswith("do: [{command: screen_brightness"))
    edited = text.apply(laptop, [{"path": ["rules", "save_battery", "clear"], "value": "on_ac"}])["text"]
    assert quirky in edited.split("\n")
    changed = [line for line in text.diff(laptop, edited)["diff"].split("\n") if line.startswith(("+", "-"))]
    assert changed[2:] == ['-    clear: "ac_power"', '+    clear: "on_ac"']
    # an edit of that very line takes ruamel's rendering of it, and nothing else changes
    edited = text.apply(laptop, [{"path": ["rules", "save_battery", "do", 0, "value"], "value": 20}])["text"]
    changed = [line for line in text.diff(laptop, edited)["diff"].split("\n") if line.startswith(("+", "-"))][2:]
    assert len(changed) == 2 and "value: 20" in changed[1]


def test_the_form_tls_switch_adds_an_empty_tls_map_or_removes_it_keeping_its_settings():
    plain = "pilot: 1\nmqtt:\n  host: b.lan   # the broker\n"
    on = text.apply(plain, [{"path": ["mqtt", "tls"], "value": True}])["text"]
    assert on == "pilot: 1\nmqtt:\n  host: b.lan   # the broker\n  tls: {}\n"
    assert text.form(on)["form"]["mqtt"]["tls"] is True and text.validate(on)["ok"] is True
    assert text.apply(on, [{"path": ["mqtt", "tls"], "value": False}])["text"] == plain
    custom = plain + "  tls: {ca_file: /etc/ca.pem}\n"
    assert text.apply(custom, [{"path": ["mqtt", "tls"], "value": True}])["text"] == custom


@pytest.mark.parametrize(
    ("edits", "status"),
    [
        ("not a list", 400),
        ([{"value": 1}], 400),
        ([{"path": [], "value": 1}], 400),
        ([{"path": ["a"] * 13, "value": 1}], 400),
        ([{"path": ["sensors", "x\ny"], "value": 1}], 400),
        ([{"path": ["sensors", ""], "value": 1}], 400),
        ([{"path": ["sensors", "cpu_usage", "every"], "value": float("nan")}], 400),
        ([{"path": ["sensors", "cpu_usage", "every"], "value": "x" * 5000}], 400),
        ([{"path": ["sensors", "cpu_usage", "args"], "value": {"a": {"b": {"c": {"d": {"e": 1}}}}}}], 400),
        ([{"path": ["sensors", "cpu_usage", "every", "deeper"], "value": 1}], 422),
        ([{"path": ["commands", "reboot", "args", 3], "value": 1}], 400),
        ([{"path": ["pilot", 0], "value": 1}], 422),
        ([{"path": ["sensors", "x"], "value": 1}] * 201, 400),
    ],
)
def test_bad_edits_are_refused_plainly(edits, status):
    with pytest.raises(EditorError) as caught:
        text.apply(COMMENTED, edits)
    assert caught.value.status == status


def test_apply_refuses_a_text_the_loader_refuses_before_ruamel_sees_it():
    with pytest.raises(EditorError) as caught:
        text.apply("a: &x [1]\nb: *x\n", [{"path": ["c"], "value": 1}])
    assert caught.value.status == 422 and caught.value.message.startswith("1:4:")


def test_apply_to_an_empty_text_makes_the_key():
    assert text.apply("", [{"path": ["pilot"], "value": 1}])["text"] == "pilot: 1\n"


# ------------------------------------------------------------------ diff
def test_diff_is_unified_and_says_whether_anything_changed():
    answer = text.diff("a: 1\nb: 2\n", "a: 1\nb: 3\n", "office.yaml")
    assert answer == {
        "diff": "--- a/office.yaml\n+++ b/office.yaml\n@@ -1,2 +1,2 @@\n a: 1\n-b: 2\n+b: 3\n",
        "changed": True,
    }
    assert text.diff("a: 1\n", "a: 1\n") == {"diff": "", "changed": False}
    assert text.diff("a: 1", "a: 2")["diff"].endswith("+a: 2\n\\ No newline at end of file\n")


# ------------------------------------------------------------------ files
@pytest.fixture
def folder(tmp_path):
    inside = tmp_path / "profiles"
    inside.mkdir()
    (inside / "office.yaml").write_text(COMMENTED)
    (inside / "office.yaml").chmod(0o600)
    (tmp_path / "secret.yaml").write_text("password: hunter2\n")
    (inside / "link.yaml").symlink_to(tmp_path / "secret.yaml")
    (inside / "notes.txt").write_text("x")
    (inside / "sub.yaml").mkdir()
    return inside


def test_the_folder_lists_plain_profile_files_only(folder):
    listing = ProfilesDir(folder).listing()
    assert listing["dir"] == str(folder)
    assert [(f["name"], f["size"], f["sha256"]) for f in listing["files"]] == [
        ("office.yaml", len(COMMENTED.encode()), sha256(COMMENTED.encode()))
    ]
    assert ProfilesDir(None).listing() == {"dir": None, "files": []}


def test_read_and_save_with_the_base_hash(folder):
    files = ProfilesDir(folder)
    (folder / "office.yaml").chmod(0o640)  # an owner's choice, which a save keeps
    opened = files.read("office.yaml")
    assert opened == {"text": COMMENTED, "sha256": sha256(COMMENTED.encode())}
    new = COMMENTED.replace("every: 10s", "every: 5s")
    saved = files.save("office.yaml", new, opened["sha256"])
    assert saved == {"sha256": sha256(new.encode())}
    assert (folder / "office.yaml").read_text() == new
    assert (folder / "office.yaml").stat().st_mode & 0o777 == 0o640  # the mode it had
    assert sorted(os.listdir(folder)) == ["link.yaml", "notes.txt", "office.yaml", "sub.yaml"]  # no temp file left
    created = files.save("new-one.yml", "pilot: 1\n", None)
    assert created["sha256"] == sha256(b"pilot: 1\n")
    assert (folder / "new-one.yml").stat().st_mode & 0o777 == 0o600  # may hold a password: private


def test_a_save_over_a_change_made_meanwhile_is_refused(folder):
    files = ProfilesDir(folder)
    opened = files.read("office.yaml")
    (folder / "office.yaml").write_text(COMMENTED + "# someone else\n")
    with pytest.raises(EditorError) as caught:
        files.save("office.yaml", "pilot: 1\n", opened["sha256"])
    assert caught.value.status == 409
    assert (folder / "office.yaml").read_text().endswith("# someone else\n")
    with pytest.raises(EditorError) as exists:  # "new" over an existing file
        files.save("office.yaml", "pilot: 1\n", None)
    assert exists.value.status == 409
    with pytest.raises(EditorError) as gone:
        files.save("gone.yaml", "pilot: 1\n", "0" * 64)
    assert gone.value.status == 409


@pytest.mark.parametrize(
    "name",
    ["../secret.yaml", "..", "a/b.yaml", ".hidden.yaml", "office.yaml\n", "x" * 200 + ".yaml", "notes.txt", "", None],
)
def test_names_outside_the_pattern_never_reach_the_disk(folder, name):
    files = ProfilesDir(folder)
    for work in (lambda: files.read(name), lambda: files.save(name, "pilot: 1\n", None)):
        with pytest.raises(EditorError) as caught:
            work()
        assert caught.value.status == 400
    assert (folder.parent / "secret.yaml").read_text() == "password: hunter2\n"


def test_links_and_folders_are_not_followed_or_replaced(folder):
    files = ProfilesDir(folder)
    for name in ("link.yaml", "sub.yaml"):
        with pytest.raises(EditorError) as read:
            files.read(name)
        assert read.value.status == 403
        with pytest.raises(EditorError) as save:
            files.save(name, "pilot: 1\n", None)
        assert save.value.status == 403
    assert (folder.parent / "secret.yaml").read_text() == "password: hunter2\n"
    assert (folder / "link.yaml").is_symlink()


def test_oversized_non_utf8_and_bad_hashes_are_refused(folder):
    files = ProfilesDir(folder)
    (folder / "big.yaml").write_bytes(b"x" * (MAX_TEXT + 1))
    (folder / "latin.yaml").write_bytes(b"name: caf\xe9\n")
    for name, status in (("big.yaml", 413), ("latin.yaml", 422), ("missing.yaml", 404)):
        with pytest.raises(EditorError) as caught:
            files.read(name)
        assert caught.value.status == status
    for bad in ("abc", "G" * 64, "A" * 64, 5):
        with pytest.raises(EditorError) as caught:
            files.save("office.yaml", "pilot: 1\n", bad)
        assert caught.value.status == 400
    with pytest.raises(EditorError) as none:
        ProfilesDir(None).read("office.yaml")
    assert none.value.status == 404


# ------------------------------------------------------------------ catalog and packs
def test_the_catalog_holds_every_probe_and_action_with_their_arguments():
    cat = catalog.catalog()
    assert [p["name"] for p in cat["probes"]] == PROBES.names()
    assert [a["name"] for a in cat["actions"]] == ACTIONS.names()
    shutdown = next(a for a in cat["actions"] if a["name"] == "power.shutdown")
    entry = ACTIONS.get("power.shutdown")
    assert shutdown["platforms"] == list(entry.platforms)
    assert [a["name"] for a in shutdown["args"]] == list(entry.params["properties"])
    method = next(a for a in shutdown["args"] if a["name"] == "method")
    assert method["enum"] == ["auto", "logind", "systemctl"] and method["required"] is False
    assert method["doc"] == " ".join(entry.params["properties"]["method"]["description"].split())
    assert next(p for p in cat["probes"] if p["name"] == "cpu.percent")["args"][0]["name"] == "core"


def test_the_catalog_keys_follow_the_schema():
    cat = catalog.catalog()
    schema = base_profile_schema()
    assert set(cat["keys"]) == {k for k in schema["properties"] if not k.startswith("$")}
    sensor = cat["keys"]["sensors"]
    assert sensor["type"] == "map"
    assert set(sensor["items"]["children"]) == set(schema["$defs"]["sensor"]["properties"])
    assert sensor["items"]["children"]["every"]["type"] == "duration"
    assert sensor["items"]["children"]["platform"]["enum"] == ["sensor", "binary_sensor"]
    policy = cat["keys"]["commands"]["items"]["children"]["policy"]["children"]
    assert set(policy) == {"signed", "cooldown", "confirm"}
    assert cat["keys"]["mqtt"]["children"]["port"]["type"] == "integer"


def test_packs_are_the_shipped_ones_and_only_their_profiles_open():
    listed = catalog.pack_list()["packs"]
    assert sorted(p["name"] for p in listed) == sorted(p.name for p in packs.discover())
    laptop = next(p for p in listed if p["name"] == "linux-laptop")
    assert laptop["profiles"] == ["laptop"]
    opened = catalog.pack_profile("linux-laptop", "laptop")
    assert opened == {"text": (ROOT / "profiles/linux-laptop/laptop.yaml").read_text(), "name": "laptop.yaml"}
    for pack, profile in (("linux-laptop", "pack"), ("..", "base"), ("base", "../base/linux"), ("nope", "x")):
        with pytest.raises(EditorError) as caught:
            catalog.pack_profile(pack, profile)
        assert caught.value.status == 404


# ------------------------------------------------------------------ what loads what
def test_a_console_that_never_opens_the_editor_does_not_load_the_compiler():
    code = (
        "import sys, pilot.console.app, pilot.console.server, pilot.console.deploy\n"
        "loaded = [m for m in sys.modules if m.startswith(('pilot.profile', 'jsonschema', 'ruamel'))]\n"
        "print(loaded)\n"
        "import pilot.console.editor.service\n"
        "print('pilot.profile.validate' in sys.modules)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT / "engine"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.split("\n")[:2] == ["[]", "True"]


# ------------------------------------------------------------------ settings
def test_the_editor_settings_are_read_with_file_line_column_errors(tmp_path):
    from pilot.console.config import ConfigError, load_config

    (tmp_path / "profiles").mkdir()
    good = tmp_path / "console.yaml"
    good.write_text("editor:\n  enabled: false\n  profiles_dir: profiles\n")
    config = load_config(good)
    assert (config.editor.enabled, config.editor.profiles_dir) == (False, (tmp_path / "profiles").absolute())
    assert load_config(None).editor.enabled is True and load_config(None).editor.profiles_dir is None
    for body, message in (
        ("editor:\n  profile_dir: x\n", "console.yaml:2:3: unknown setting editor.profile_dir"),
        ("editor:\n  profiles_dir: nowhere\n", "console.yaml:2:3: editor.profiles_dir"),
        ("editor:\n  enabled: yes please\n", "console.yaml:2:3: editor.enabled must be true or false"),
        ("editor: [x]\n", "console.yaml:1:1: editor must be a mapping"),
    ):
        good.write_text(body)
        with pytest.raises(ConfigError) as caught:
            load_config(good)
        assert str(caught.value).startswith(str(tmp_path / message))


def test_an_editor_switched_off_answers_404_on_every_editor_route(tmp_path):
    from dataclasses import replace

    from starlette.testclient import TestClient

    from pilot.console import app as console_app
    from pilot.console.config import AuthConfig, ConsoleConfig, EditorConfig
    from pilot.console.fleet import Fleet

    config = ConsoleConfig(state_dir=tmp_path, auth=AuthConfig(anonymous_read=True), editor=EditorConfig(enabled=False))
    console = console_app.Console(config, Fleet(), None, None, None, None, None, None)
    client = TestClient(console_app.build(console))
    for path in ("/api/editor/catalog", "/api/editor/packs", "/api/editor/packs/base/linux"):
        answer = client.get(path)
        assert answer.status_code == 404 and "editor.enabled" in answer.json()["error"]
    assert console.editor_service is None
    console.config = replace(config, editor=EditorConfig(enabled=True))
    assert client.get("/api/editor/packs").status_code == 200
