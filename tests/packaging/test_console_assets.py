"""The console's built pages (engine/pilot/console/static/, committed so users need no Node): small enough,
nothing fetched from elsewhere, nothing the server's CSP would block, and reproducible from web/ with
`npm ci && npm run build` byte for byte. The profile editor (CodeMirror) is a chunk the fleet page
never loads: only a dynamic import() reaches it."""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
STATIC = REPO / "engine" / "pilot" / "console" / "static"
WEB = REPO / "web"
BUDGET = 200 * 1024  # the fleet page, gzip-compressed
EDITOR_BUDGET = 250 * 1024  # what /editor adds on top of it (CodeMirror and the editor), gzip-compressed
EXTERNAL = re.compile(rb"https?://|//cdn", re.IGNORECASE)
# The SVG namespace inside CodeMirror's data: URL images (the lint underline): an identifier, not fetched.
SVG_NS = b'xmlns="http://www.w3.org/2000/svg"'
STATIC_IMPORT = re.compile(rb'(?:\bfrom|\bimport)\s*"\./([a-z]+\.[A-Z0-9]{8}\.js)"')
DYNAMIC_IMPORT = re.compile(rb'\bimport\(\s*"\./([a-z]+\.[A-Z0-9]{8}\.js)"\s*\)')
EDITOR_MARK = b"cm-content"  # CodeMirror's content class: in the editor's code only


class _Page(HTMLParser):
    """What index.html loads and anything in it a strict CSP would refuse."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[str] = []
        self.styles: list[str] = []
        self.inline: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        for name, _ in attrs:
            if name == "style" or name.startswith("on"):
                self.inline.append(f"<{tag} {name}=...>")
        if tag == "style":
            self.inline.append("<style> element")
        if tag == "script":
            self._in_script = True
            if a.get("src"):
                self.scripts.append(a["src"] or "")
            else:
                self.inline.append("<script> without src")
        if tag == "link" and a.get("rel") == "stylesheet":
            self.styles.append(a.get("href") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline.append(f"<script> body {data.strip()[:40]!r}")


def _page() -> _Page:
    p = _Page()
    p.feed((STATIC / "index.html").read_text(encoding="utf-8"))
    return p


def _imports(name: str, pattern: re.Pattern[bytes]) -> set[str]:
    return {m.decode() for m in pattern.findall((STATIC / "assets" / name).read_bytes())}


def _closure(names: set[str], *, dynamic: bool) -> set[str]:
    """The scripts loaded with `names`: their static imports, and with dynamic=True what import() reaches."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo += _imports(name, STATIC_IMPORT)
        if dynamic:
            todo += _imports(name, DYNAMIC_IMPORT)
    return seen


def _gz(names: set[str]) -> int:
    return sum(len(gzip.compress((STATIC / "assets" / n).read_bytes(), compresslevel=9)) for n in names)


def _tree(root: Path) -> dict[str, str]:
    files = sorted(f for f in root.rglob("*") if f.is_file())
    return {str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


def test_index_loads_one_hashed_script_and_stylesheet_that_exist():
    page = _page()
    assert len(page.scripts) == 1 and len(page.styles) == 1, (page.scripts, page.styles)
    for url in page.scripts + page.styles:
        assert re.fullmatch(r"/assets/[a-z]+\.[A-Z0-9]{8}\.(js|css)", url), url
        assert (STATIC / url.lstrip("/")).is_file(), url
    # nothing stale beside them: every asset is one the page loads, or one its scripts import
    entry = {u.removeprefix("/assets/") for u in page.scripts}
    loaded = _closure(entry, dynamic=True) | {u.removeprefix("/assets/") for u in page.styles}
    assert {f.name for f in (STATIC / "assets").iterdir()} == loaded


def test_index_has_no_inline_script_style_or_event_handler():
    assert _page().inline == []


def test_a_page_with_an_inline_script_would_be_caught():
    p = _Page()
    p.feed('<div style="color:red"><script>alert(1)</script><img onerror="x()"></div>')
    assert p.inline == ["<div style=...>", "<script> without src", "<script> body 'alert(1)'", "<img onerror=...>"]


def test_fleet_page_is_under_its_gzip_budget():
    page = _page()
    scripts = _closure({u.removeprefix("/assets/") for u in page.scripts}, dynamic=False)
    files = (
        [STATIC / "index.html"]
        + [STATIC / "assets" / n for n in scripts]
        + [STATIC / u.lstrip("/") for u in page.styles]
    )
    total = sum(len(gzip.compress(f.read_bytes(), compresslevel=9)) for f in files)
    assert total < BUDGET, f"{total} bytes gzip-compressed"


def test_the_editor_is_a_chunk_only_the_editor_page_loads():
    entry = {u.removeprefix("/assets/") for u in _page().scripts}
    fleet = _closure(entry, dynamic=False)
    editor = _closure(entry, dynamic=True) - fleet
    assert editor, "no dynamically imported chunk: the editor would load with the fleet page"
    assert not any(EDITOR_MARK in (STATIC / "assets" / n).read_bytes() for n in fleet)
    assert any(EDITOR_MARK in (STATIC / "assets" / n).read_bytes() for n in editor)
    assert _gz(editor) < EDITOR_BUDGET, f"{_gz(editor)} bytes gzip-compressed"


def test_no_asset_references_an_external_url():
    offenders = {
        str(f.relative_to(STATIC)): EXTERNAL.findall(f.read_bytes().replace(SVG_NS, b""))[:3]
        for f in STATIC.rglob("*")
        if f.is_file() and EXTERNAL.search(f.read_bytes().replace(SVG_NS, b""))
    }
    assert offenders == {}


def test_no_asset_uses_eval_or_writes_html_from_strings():
    js = b"".join(f.read_bytes() for f in (STATIC / "assets").glob("*.js"))
    for needle in (b"eval(", b"new Function(", b"innerHTML", b"outerHTML", b"insertAdjacentHTML", b"document.write"):
        assert needle not in js, needle


def test_web_pins_exact_versions_with_a_lockfile():
    import json

    pkg = json.loads((WEB / "package.json").read_text())
    deps = {**pkg.get("dependencies", {}), **pkg.get("devDependencies", {})}
    assert set(deps) >= {"esbuild", "uplot"}
    for name, version in deps.items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"{name} {version} is not pinned exactly"
    lock = json.loads((WEB / "package-lock.json").read_text())
    for name, version in deps.items():
        assert lock["packages"][f"node_modules/{name}"]["version"] == version


def test_npm_ci_and_build_reproduce_the_committed_output(tmp_path):
    npm = shutil.which("npm")
    assert npm, "npm is needed to rebuild the console's pages (./dev installs nodejs and npm)"
    src = tmp_path / "web"
    src.mkdir()
    for name in ("package.json", "package-lock.json", "build.mjs"):
        shutil.copy2(WEB / name, src / name)
    shutil.copytree(WEB / "src", src / "src")
    env = {**os.environ, "npm_config_audit": "false", "npm_config_fund": "false", "npm_config_update_notifier": "false"}
    ci = subprocess.run([npm, "ci", "--offline"], cwd=src, env=env, capture_output=True, text=True, timeout=300)
    if ci.returncode != 0:  # nothing in npm's cache yet: fetch from the registry
        ci = subprocess.run([npm, "ci"], cwd=src, env=env, capture_output=True, text=True, timeout=300)
    assert ci.returncode == 0, ci.stderr[-2000:]
    out = tmp_path / "static"
    build = subprocess.run(
        [npm, "run", "build"],
        cwd=src,
        env={**env, "PILOT_CONSOLE_OUT": str(out)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    assert _tree(out) == _tree(STATIC)
