"""The profile editor's API end to end: the console as a process with a profiles folder, a real Mosquitto.

Roles, CSRF and origin, size caps and hostile bodies on every editor route; the real validator's answer;
the form's round trip; files saved with their conflict check; the broker test against the real broker and
a closed port, rate limited; a device deploy refused before anything is sent when the text is invalid.
"""

from __future__ import annotations

import time

import httpx
import pytest

from pilot.agent import signing
from pilot.console.editor import MAX_TEXT
from testkit.broker import Mosquitto, Watcher, free_port
from testkit.console import ConsoleProcess
from tests.live.console.conftest import wait

PASSWORDS = {"victor": "victor-viewer-pw", "olga": "olga-operator-pw", "ada": "ada-admin-pw-1", "ann": "ann-admin-pw-1"}
OFFICE = """\
# the office profile
pilot: 1
device: {id: office, name: Office}
sensors:
  cpu:
    probe: cpu.percent   # how busy
    every: 10s
"""


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("editor-api")
    folder = tmp / "profiles"
    folder.mkdir()
    (folder / "office.yaml").write_text(OFFICE)
    (tmp / "outside.yaml").write_text("secret: 1\n")
    (folder / "escape.yaml").symlink_to(tmp / "outside.yaml")
    (tmp / "console.yaml").write_text(f"editor:\n  profiles_dir: {folder}\n")
    broker = Mosquitto().start()
    watcher = Watcher(broker.port).start()
    users = [("victor", "viewer", PASSWORDS["victor"]), ("olga", "operator", PASSWORDS["olga"])]
    users += [("ada", "admin", PASSWORDS["ada"]), ("ann", "admin", PASSWORDS["ann"])]
    ring = tmp / "console-keyring"
    ring.write_text(signing.new_key_line("console") + "\n")
    ring.chmod(0o600)
    console = ConsoleProcess(broker.port, users=users, keyring=ring, extra_args=["--config", str(tmp / "console.yaml")])
    console.start()
    console.wait_subscribed()
    watcher.publish("pilot/ghost/availability", "online", retain=True)  # a device that never answers

    class Rig:
        pass

    r = Rig()
    r.tmp, r.folder, r.broker, r.watcher, r.console = tmp, folder, broker, watcher, console
    for name in PASSWORDS:
        setattr(r, name, console.client(name, PASSWORDS[name]))
    wait(lambda: any(d["id"] == "ghost" for d in r.ada.get("/api/fleet").json()["devices"]))
    yield r
    console.cleanup()
    watcher.stop()
    broker.cleanup()


# ------------------------------------------------------------------ roles, CSRF, origin
def test_viewers_read_the_catalog_and_packs_only(rig):
    catalog = rig.victor.get("/api/editor/catalog")
    assert catalog.status_code == 200
    assert "cpu.percent" in {p["name"] for p in catalog.json()["probes"]}
    assert "sensors" in catalog.json()["keys"]
    packs = rig.victor.get("/api/editor/packs").json()["packs"]
    assert "base" in {p["name"] for p in packs}
    opened = rig.victor.get("/api/editor/packs/base/linux").json()
    assert opened["name"] == "linux.yaml" and opened["text"].startswith(("#", "pilot"))
    assert rig.victor.post("/api/editor/validate", json={"text": OFFICE}).status_code == 403
    assert rig.victor.get("/api/editor/files").status_code == 403
    anonymous = httpx.Client(base_url=rig.console.url)
    assert anonymous.get("/api/editor/catalog").status_code == 401


@pytest.mark.parametrize(
    ("user", "method", "path", "body", "status"),
    [
        ("olga", "POST", "/api/editor/validate", {"text": OFFICE}, 200),
        ("olga", "POST", "/api/editor/form", {"text": OFFICE}, 200),
        ("olga", "POST", "/api/editor/apply", {"text": OFFICE, "edits": []}, 200),
        ("olga", "POST", "/api/editor/diff", {"old": OFFICE, "new": OFFICE}, 200),
        ("olga", "GET", "/api/editor/files", None, 200),
        ("olga", "PUT", "/api/editor/files/new.yaml", {"text": OFFICE, "base_sha256": None}, 403),
        ("olga", "POST", "/api/editor/broker-test", {"host": "127.0.0.1", "port": 1}, 403),
        ("olga", "GET", "/api/devices/ghost/profile", None, 403),
        ("olga", "POST", "/api/devices/ghost/deploy", {"text": OFFICE}, 403),
    ],
)
def test_each_route_needs_its_role(rig, user, method, path, body, status):
    answer = getattr(rig, user).request(method, path, json=body)
    assert answer.status_code == status, answer.text


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/api/editor/validate"), ("PUT", "/api/editor/files/x.yaml"), ("POST", "/api/devices/ghost/deploy")],
)
def test_a_state_changing_request_needs_the_csrf_token_and_the_same_origin(rig, method, path):
    bare = rig.console.client()
    bare.cookies = rig.ada.cookies
    no_token = bare.request(method, path, json={"text": OFFICE})
    assert no_token.status_code == 403 and "CSRF" in no_token.json()["error"]
    foreign = rig.ada.request(method, path, json={"text": OFFICE}, headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 403 and "cross-origin" in foreign.json()["error"]


# ------------------------------------------------------------------ bounds and hostile bodies
def test_a_text_over_256_kib_is_413_and_a_body_over_the_bound_too(rig):
    big = "#" * (MAX_TEXT + 1)
    for path, body in (
        ("/api/editor/validate", {"text": big}),
        ("/api/editor/form", {"text": big}),
        ("/api/editor/apply", {"text": big, "edits": []}),
        ("/api/editor/diff", {"old": "", "new": big}),
    ):
        answer = rig.olga.post(path, json=body)
        assert answer.status_code == 413, path
    huge = rig.olga.post(
        "/api/editor/validate",
        content=b'{"text": "' + b"x" * (5 * MAX_TEXT) + b'"}',
        headers={"content-type": "application/json"},
    )
    assert huge.status_code == 413
    assert rig.ada.post("/api/devices/ghost/deploy", json={"text": big}).status_code == 413
    assert rig.ada.put("/api/editor/files/big.yaml", json={"text": big, "base_sha256": None}).status_code == 413


@pytest.mark.parametrize(
    ("content", "content_type", "status"),
    [
        (b'{"text": "\xff\xfe"}', "application/json", 400),
        (b"[" * 100_000 + b"]" * 100_000, "application/json", 400),
        (b'{"text": ' * 50_000 + b'""' + b"}" * 50_000, "application/json", 400),
        (b'["text"]', "application/json", 400),
        (b"text=x", "application/x-www-form-urlencoded", 415),
        (b'{"text": 5}', "application/json", 400),
        (b'{"text": "\\ud800"}', "application/json", 400),
    ],
)
def test_hostile_bodies_are_refused_with_one_line(rig, content, content_type, status):
    answer = rig.olga.post("/api/editor/validate", content=content, headers={"content-type": content_type})
    assert answer.status_code == status
    assert "\n" not in answer.json()["error"]


def test_a_yaml_bomb_and_deep_nesting_get_a_positioned_error_and_the_console_stays_up(rig):
    bomb = "a: &a [1, 1]\nb: &b [*a, *a, *a, *a]\nc: &c [*b, *b, *b, *b]\nd: [*c, *c, *c, *c]\n"
    for text in (bomb, "x: " + "[" * 100_000 + "\n", "".join(" " * i + f"k{i}:\n" for i in range(700))):
        answer = rig.olga.post("/api/editor/validate", json={"text": text})
        assert answer.status_code == 200
        assert answer.json()["ok"] is False and answer.json()["diagnostics"][0]["line"] >= 1
    assert rig.olga.get("/api/fleet").status_code == 200


# ------------------------------------------------------------------ the editor's work
def test_validate_answers_with_positions_and_a_quick_fix(rig):
    text = OFFICE.replace("cpu.percent", "cpu.percnt")
    answer = rig.olga.post("/api/editor/validate", json={"text": text, "name": "office.yaml"}).json()
    assert answer["ok"] is False
    [finding] = answer["diagnostics"]
    assert (finding["line"], finding["col"], finding["end_col"], finding["severity"]) == (6, 12, 22, "error")
    assert finding["fix"] == {"line": 6, "col": 12, "end_line": 6, "end_col": 22, "insert": "cpu.percent"}


def test_form_apply_and_diff_keep_the_comments(rig):
    form = rig.olga.post("/api/editor/form", json={"text": OFFICE}).json()
    assert form["form"]["sensors"] == [{"id": "cpu", "enabled": True, "every": "10s", "deadband": None}]
    edits = [{"path": ["sensors", "cpu", "every"], "value": "5s"}]
    edited = rig.olga.post("/api/editor/apply", json={"text": OFFICE, "edits": edits}).json()["text"]
    assert edited == OFFICE.replace("every: 10s", "every: 5s")
    diff = rig.olga.post("/api/editor/diff", json={"old": OFFICE, "new": edited, "name": "office.yaml"}).json()
    assert diff["changed"] is True and "-    every: 10s\n+    every: 5s\n" in diff["diff"]


def test_files_open_save_and_refuse_a_stale_save(rig):
    listing = rig.olga.get("/api/editor/files").json()
    assert listing["dir"] == str(rig.folder)
    assert [f["name"] for f in listing["files"]] == ["office.yaml"]  # the link is not offered
    opened = rig.olga.get("/api/editor/files/office.yaml").json()
    assert opened["text"] == OFFICE
    new = OFFICE + "# saved from the console\n"
    saved = rig.ada.put("/api/editor/files/office.yaml", json={"text": new, "base_sha256": opened["sha256"]})
    assert saved.status_code == 200
    assert (rig.folder / "office.yaml").read_text() == new
    stale = rig.ada.put("/api/editor/files/office.yaml", json={"text": OFFICE, "base_sha256": opened["sha256"]})
    assert stale.status_code == 409
    assert (rig.folder / "office.yaml").read_text() == new


@pytest.mark.parametrize(
    ("name", "statuses"),
    [
        ("..%2Fconsole.yaml", (400, 404)),
        ("%2E%2E", (400, 404)),
        ("office.yaml%0A", (400,)),
        ("off%1Bice.yaml", (400,)),
        ("office%00.yaml", (400,)),
        (".hidden.yaml", (400,)),
        ("escape.yaml", (403,)),
    ],
)
def test_names_with_traversal_control_characters_or_links_are_refused(rig, name, statuses):
    read = rig.olga.get(f"/api/editor/files/{name}")
    assert read.status_code in statuses
    write = rig.ada.put(f"/api/editor/files/{name}", json={"text": "pilot: 1\n", "base_sha256": None})
    assert write.status_code in statuses
    assert (rig.tmp / "outside.yaml").read_text() == "secret: 1\n"
    assert (rig.tmp / "console.yaml").read_text().startswith("editor:")


# ------------------------------------------------------------------ broker test
def test_the_broker_test_reaches_the_real_broker_and_names_a_closed_port(rig):
    ok = rig.ada.post("/api/editor/broker-test", json={"host": "127.0.0.1", "port": rig.broker.port, "tls": False})
    assert ok.status_code == 200
    assert (ok.json()["ok"], ok.json()["kind"]) == (True, "ok")
    closed = rig.ada.post("/api/editor/broker-test", json={"host": "127.0.0.1", "port": free_port(), "tls": False})
    assert (closed.json()["ok"], closed.json()["kind"]) == (False, "refused")
    assert closed.json()["summary"] and set(closed.json()) == {"ok", "kind", "summary", "advice"}
    text = f"pilot: 1\nmqtt: {{host: 127.0.0.1, port: {rig.broker.port}}}\n"
    from_text = rig.ada.post("/api/editor/broker-test", json={"text": text})
    assert from_text.json()["kind"] == "ok"
    bad = rig.ada.post("/api/editor/broker-test", json={"host": "x\ny", "port": 1})
    assert bad.status_code == 400


def test_broker_tests_are_rate_limited_per_user(rig):
    port = free_port()
    answers = [
        rig.ann.post("/api/editor/broker-test", json={"host": "127.0.0.1", "port": port}).status_code for _ in range(11)
    ]
    assert answers == [200] * 10 + [429]
    assert rig.ada.post("/api/editor/broker-test", json={"host": "127.0.0.1", "port": port}).status_code == 200


# ------------------------------------------------------------------ devices
def test_an_invalid_deploy_is_422_with_diagnostics_and_nothing_is_sent(rig):
    since = time.monotonic()
    answer = rig.ada.post("/api/devices/ghost/deploy", json={"text": OFFICE.replace("probe:", "prob:")})
    assert answer.status_code == 422
    assert answer.json()["diagnostics"][0]["line"] == 6
    time.sleep(0.5)
    assert rig.watcher.on("pilot/ghost/cmd/_profile/set", since) == []


def test_a_device_that_does_not_answer_is_504_and_an_unknown_one_404(rig):
    assert rig.ada.get("/api/devices/nobody/profile").status_code == 404
    assert rig.ada.post("/api/devices/nobody/deploy", json={"text": OFFICE}).status_code == 404
    assert rig.ada.get("/api/devices/bad%0Aname/profile").status_code == 404
    answer = rig.ada.get("/api/devices/ghost/profile", timeout=30)
    assert answer.status_code == 504
    assert rig.watcher.latest("pilot/ghost/cmd/_profile/get") is not None  # it was asked, signed
