"""Plugins through real entry points: a distribution's metadata on sys.path, read by importlib.metadata.

Each test writes a small installed distribution (a `.dist-info` with METADATA and entry_points.txt
next to its module) into a temporary folder on sys.path, and uses the real PROBES and ACTIONS
registries, whose state the fixture restores afterwards.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from pilot import cli
from pilot.profile import packs
from pilot.profile.validate import validate_file
from pilot.registry import ACTIONS, BUILTIN, PROBES
from tests.support.files import write

PROBE_MODULE = '''
from pilot.params import params, prop
from pilot.registry import PROBES


@PROBES.register(
    "{prefix}.answer",
    params=params({{"plus": prop("integer", "Added to the answer.", minimum=0, maximum=10)}}),
    defaults={{"unit": "x"}},
)
def answer(ctx, plus=0):
    """The answer, plus something."""
    return lambda: 42 + plus
'''

ACTION_MODULE = '''
from pilot.actions import Call
from pilot.params import params, prop
from pilot.registry import ACTIONS


@ACTIONS.register("{prefix}.say", params=params({{"word": prop("string", "What to say.", maxLength=8)}}),
                  platforms=("button",))
def say(ctx, value=None, *, word="hi"):
    """Say a word."""
    return [Call(kind="exec", argv=("/bin/echo", word))]
'''


class Dist:
    """One installed distribution in a folder on sys.path."""

    def __init__(self, root: Path, name: str, version: str = "1.2.3") -> None:
        self.root, self.name, self.version = root, name, version
        self.groups: dict[str, list[str]] = {}
        self.modules: list[str] = []

    def module(self, source: str, *, package: bool = False) -> str:
        mod = f"plug_{uuid.uuid4().hex[:10]}"
        if package:
            (self.root / mod).mkdir()
            (self.root / mod / "__init__.py").write_text(source, encoding="utf-8")
        else:
            (self.root / f"{mod}.py").write_text(source, encoding="utf-8")
        self.modules.append(mod)
        return mod

    def entry(self, group: str, name: str, value: str) -> Dist:
        self.groups.setdefault(group, []).append(f"{name} = {value}")
        return self

    def install(self) -> Dist:
        info = self.root / f"{self.name.replace('-', '_')}-{self.version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {self.name}\nVersion: {self.version}\n", encoding="utf-8"
        )
        text = "".join(f"[{g}]\n" + "\n".join(lines) + "\n\n" for g, lines in self.groups.items())
        (info / "entry_points.txt").write_text(text, encoding="utf-8")
        return self


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A fresh folder on sys.path and registries that forget every plugin after the test."""
    root = tmp_path / "site"
    root.mkdir()
    for registry in (PROBES, ACTIONS):
        registry.names()  # the built-ins, loaded before the snapshot
        monkeypatch.setattr(registry, "_entries", dict(registry._entries))
        monkeypatch.setattr(registry, "_plugins_loaded", False)
        monkeypatch.setattr(registry, "_problems", [])
    monkeypatch.syspath_prepend(str(root))
    before = set(sys.modules)
    yield root
    for name in set(sys.modules) - before:
        if name.startswith("plug_"):
            del sys.modules[name]


def _dist(root: Path, name: str = "acme-pilot", version: str = "1.2.3") -> Dist:
    return Dist(root, name, version)


def test_a_plugin_probe_is_found_by_name_with_its_origin_and_works(site: Path) -> None:
    d = _dist(site)
    mod = d.module(PROBE_MODULE.format(prefix="acme"))
    d.entry("pilot.probes", "acme", mod).install()
    entry = PROBES.get("acme.answer")
    assert entry is not None
    assert entry.origin == "acme-pilot 1.2.3"
    assert entry.is_plugin and entry.summary == "The answer, plus something."
    assert entry.factory(None, plus=3)() == 45
    assert PROBES.get("cpu.percent").origin == BUILTIN
    assert PROBES.problems == []


def test_built_in_names_and_listings_import_no_plugin(site: Path) -> None:
    d = _dist(site)
    mod = d.module(PROBE_MODULE.format(prefix="acme"))
    d.entry("pilot.probes", "acme", mod).install()
    assert PROBES.get("cpu.percent") is not None
    assert "acme.answer" not in PROBES.names()  # iteration is the built-ins and what is loaded
    assert mod not in sys.modules
    PROBES.load_plugins()
    assert mod in sys.modules
    assert "acme.answer" in PROBES.names()


def test_a_plugin_may_not_replace_a_built_in_and_nothing_of_it_is_kept(site: Path) -> None:
    d = _dist(site, "evil-pilot", "0.1")
    source = PROBE_MODULE.format(prefix="evil") + textwrap.dedent(
        '''
        @PROBES.register("cpu.percent")
        def fake(ctx):
            """Not the CPU."""
            return lambda: 0
        '''
    )
    d.entry("pilot.probes", "evil", d.module(source)).install()
    problems = PROBES.load_plugins()
    assert problems == [
        "plugin 'evil' (pilot.probes) from evil-pilot 0.1 is not loaded: "
        "probe 'cpu.percent' is built into Pilot; a plugin may not replace it"
    ]
    assert PROBES.get("cpu.percent").origin == BUILTIN
    assert PROBES.get("evil.answer") is None  # registered before the refusal, then taken back


def test_an_action_plugin_may_not_replace_a_built_in_action_either(site: Path) -> None:
    d = _dist(site, "evil-actions", "2")
    source = ACTION_MODULE.format(prefix="evil").replace('"evil.say"', '"notify.desktop"')
    d.entry("pilot.actions", "evil", d.module(source)).install()
    assert ACTIONS.load_plugins() == [
        "plugin 'evil' (pilot.actions) from evil-actions 2 is not loaded: "
        "action 'notify.desktop' is built into Pilot; a plugin may not replace it"
    ]
    assert ACTIONS.get("notify.desktop").origin == BUILTIN


def test_two_plugins_with_one_name_the_second_is_refused(site: Path) -> None:
    first = _dist(site, "a-first", "1")
    first.entry("pilot.probes", "a", first.module(PROBE_MODULE.format(prefix="same"))).install()
    second = _dist(site, "b-second", "1")
    second.entry("pilot.probes", "b", second.module(PROBE_MODULE.format(prefix="same"))).install()
    problems = PROBES.load_plugins()
    assert PROBES.get("same.answer").origin == "a-first 1"
    assert problems == [
        "plugin 'b' (pilot.probes) from b-second 1 is not loaded: probe 'same.answer' is already provided by a-first 1"
    ]


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("raise ImportError('needs libacme')", "ImportError: needs libacme"),
        ("import plug_no_such_module_anywhere", "ModuleNotFoundError: No module named 'plug_no_such_module_anywhere'"),
        ("def broken(:\n", "SyntaxError: "),
        ("import sys\nsys.exit(3)", "SystemExit: 3"),
        ("raise RuntimeError('line one\\n\\x1b[31mred\\r')", "RuntimeError: line one \\x1b[31mred"),
    ],
)
def test_a_broken_plugin_is_one_line_naming_it_and_the_built_ins_still_work(
    site: Path, source: str, reason: str
) -> None:
    d = _dist(site, "broken-pilot", "0.9")
    d.entry("pilot.probes", "broken", d.module(source)).install()
    problems = PROBES.load_plugins()
    assert len(problems) == 1
    line = problems[0]
    assert line.startswith("plugin 'broken' (pilot.probes) from broken-pilot 0.9 is not loaded: " + reason)
    assert "\n" not in line and "\x1b" not in line and "\r" not in line
    assert PROBES.get("cpu.percent") is not None


def test_a_missing_module_and_a_misnamed_entry_are_lines_too(site: Path) -> None:
    d = _dist(site, "odd-pilot", "1")
    bad_name = PROBE_MODULE.format(prefix="x").replace('"x.answer"', '"Answer Me"')
    not_object = textwrap.dedent(
        '''
        from pilot.registry import PROBES

        @PROBES.register("y.answer", params=["not", "an", "object"])
        def answer(ctx):
            """An answer."""
            return lambda: 1
        '''
    )
    d.entry("pilot.probes", "gone", "plug_gone_for_good")
    d.entry("pilot.probes", "named", d.module(bad_name))
    d.entry("pilot.probes", "shaped", d.module(not_object)).install()
    problems = PROBES.load_plugins()
    assert len(problems) == 3
    assert problems[0].startswith("plugin 'gone' (pilot.probes) from odd-pilot 1 is not loaded: ModuleNotFoundError")
    assert problems[1] == (
        "plugin 'named' (pilot.probes) from odd-pilot 1 is not loaded: "
        "probe name 'Answer Me' is not lower-case words joined by dots (like 'vendor.thing')"
    )
    assert problems[2] == (
        "plugin 'shaped' (pilot.probes) from odd-pilot 1 is not loaded: "
        "probe 'y.answer': params must be an object schema (see pilot.params.params)"
    )


def test_an_oversized_error_is_cut(site: Path) -> None:
    d = _dist(site, "loud-pilot", "1")
    d.entry("pilot.probes", "loud", d.module("raise ValueError('x' * 100000)")).install()
    (line,) = PROBES.load_plugins()
    assert len(line) < 400 and line.endswith("chars)")


PROFILE = """\
pilot: 1
device: {{name: Plugged}}
sensors:
  answer: {{probe: acme.answer, every: 10s, args: {args}}}
"""


def test_the_validator_checks_a_plugins_arguments_like_a_built_ins(site: Path, tmp_path: Path) -> None:
    d = _dist(site)
    d.entry("pilot.probes", "acme", d.module(PROBE_MODULE.format(prefix="acme"))).install()
    good = write(tmp_path, "good.yaml", PROFILE.format(args="{plus: 2}"))
    assert validate_file(good)[1] == []
    bad = write(tmp_path, "bad.yaml", PROFILE.format(args="{plus: 11, minus: 1}"))
    found = sorted((x.line, x.col, x.message) for x in validate_file(bad)[1])
    assert [(line, col) for line, col, _ in found] == [(4, 57), (4, 61)]  # the value 11; the key minus
    assert found[0][2] == "11 is out of range: must be at most 10"
    assert "minus" in found[1][2]


def test_a_profile_naming_a_broken_plugins_probe_hears_why(site: Path, tmp_path: Path) -> None:
    d = _dist(site, "broken-pilot", "0.9")
    d.entry("pilot.probes", "acme", d.module("raise ImportError('needs libacme')")).install()
    profile = write(tmp_path, "p.yaml", PROFILE.format(args="{}"))
    (diag,) = validate_file(profile)[1]
    assert (diag.line, diag.col) == (4, 19)  # the probe name
    assert diag.message.startswith("unknown probe 'acme.answer'")
    assert (
        "plugin 'acme' (pilot.probes) from broken-pilot 0.9 is not loaded: ImportError: needs libacme" in diag.message
    )


def test_a_malformed_argument_schema_is_a_diagnostic_not_a_traceback(site: Path, tmp_path: Path) -> None:
    d = _dist(site)
    source = PROBE_MODULE.format(prefix="acme").replace('prop("integer"', 'prop("integr"')
    d.entry("pilot.probes", "acme", d.module(source)).install()
    profile = write(tmp_path, "p.yaml", PROFILE.format(args="{plus: 1}"))
    (diag,) = validate_file(profile)[1]
    assert diag.message.startswith("probe 'acme.answer' from acme-pilot 1.2.3 has an unusable argument schema")


def test_pilot_probes_and_actions_show_where_each_came_from(site: Path, capsys: pytest.CaptureFixture) -> None:
    d = _dist(site)
    d.entry("pilot.probes", "acme", d.module(PROBE_MODULE.format(prefix="acme")))
    d.entry("pilot.actions", "acme", d.module(ACTION_MODULE.format(prefix="acme")))
    d.entry("pilot.actions", "broken", d.module("raise OSError('no device')")).install()

    assert cli.main(["probes", "--no-values", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["acme.answer"]["origin"] == "acme-pilot 1.2.3"
    assert rows["acme.answer"]["params"]["plus"]["maximum"] == 10
    assert rows["cpu.percent"]["origin"] == "pilot"

    assert cli.main(["probes", "--no-values"]) == 0
    text = capsys.readouterr().out
    assert "acme.answer" in text and "The answer, plus something.  [plugin: acme-pilot 1.2.3]" in text
    assert "[plugin: pilot]" not in text

    assert cli.main(["actions"]) == 0
    captured = capsys.readouterr()
    assert "from: acme-pilot 1.2.3;" in captured.out.split("acme.say", 1)[1].split("\n")[1]
    assert "from: pilot;" in captured.out.split("notify.desktop", 1)[1].split("\n")[1]
    assert captured.err == (
        "pilot: warning: plugin 'broken' (pilot.actions) from acme-pilot 1.2.3 is not loaded: OSError: no device\n"
    )


PACK = """\
pack: 1
name: {name}
version: "2.0.0"
description: A plugin's pack.
default: only
match: {{os: linux}}
"""


def _pack_dist(site: Path, dist: str, *names: str) -> Dist:
    d = _dist(site, dist, "3.1")
    pkg = d.module("", package=True)
    for name in names:
        folder = site / pkg / name
        folder.mkdir()
        (folder / "pack.yaml").write_text(PACK.format(name=name), encoding="utf-8")
        (folder / "only.yaml").write_text("pilot: 1\ndevice: {name: X}\n", encoding="utf-8")
    return d.entry("pilot.packs", "p", pkg)


def test_packs_from_an_installed_package_with_their_origin(site: Path) -> None:
    _pack_dist(site, "acme-packs", "acme-box").install()
    found, problems = packs.discover_all()
    assert problems == []
    by_name = {p.name: p for p in found}
    assert by_name["acme-box"].origin == "acme-packs 3.1"
    assert by_name["acme-box"].default_profile.read_text(encoding="utf-8").startswith("pilot: 1")
    assert by_name["base"].origin == BUILTIN
    assert "acme-box" in [p.name for p in packs.matching({"os": "linux", "has": []})]


def test_a_plugin_pack_never_replaces_a_shipped_one(site: Path) -> None:
    _pack_dist(site, "evil-packs", "base", "fine").install()
    found, problems = packs.discover_all()
    by_name = {p.name: p for p in found}
    assert by_name["base"].origin == BUILTIN
    assert by_name["fine"].origin == "evil-packs 3.1"
    assert problems == ["pack 'base' from evil-packs 3.1 is not loaded: a pack of that name is shipped with Pilot"]


def test_a_pack_entry_that_is_not_a_package_is_a_line(site: Path, capsys: pytest.CaptureFixture) -> None:
    d = _dist(site, "odd-packs", "1")
    d.entry("pilot.packs", "mod", d.module("X = 1"))
    d.entry("pilot.packs", "gone", "plug_nothing_here.packs").install()
    _, problems = packs.discover_all()
    assert len(problems) == 2
    assert problems[0].startswith("plugin 'gone' (pilot.packs) from odd-packs 1 is not loaded: ModuleNotFoundError")
    assert problems[1].startswith("plugin 'mod' (pilot.packs) from odd-packs 1 is not loaded: ")
    assert problems[1].endswith("is not an installed package (a folder)")
    assert cli.main(["detect", "--json"]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and err.startswith("pilot: warning: plugin 'gone'")


def test_an_agent_with_built_in_names_never_looks_for_plugins() -> None:
    """In a fresh interpreter with the agent's modules: entry points are read on the first unknown name only."""
    code = (
        "import sys\n"
        "import pilot.agent.runtime, pilot.agent.supervise\n"
        "from pilot.registry import ACTIONS, PROBES\n"
        "PROBES.get('cpu.percent'); ACTIONS.get('notify.desktop'); PROBES.names(); ACTIONS.names()\n"
        "print('importlib.metadata' in sys.modules)\n"
        "PROBES.get('acme.nothing')\n"
        "print('importlib.metadata' in sys.modules)\n"
    )
    env = {"PYTHONPATH": str(Path(__file__).resolve().parents[3] / "engine"), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "True"]


@pytest.mark.parametrize(
    ("register", "reason"),
    [
        ('PROBES.register("z.p", defaults={"colour": "red"})', "probe 'z.p': unknown defaults colour"),
        (
            'PROBES.register("z.p", defaults={"platform": "switch"})',
            "probe 'z.p': platform must be sensor or binary_sensor",
        ),
        ('PROBES.register("z.p", defaults=["unit"])', "probe 'z.p': defaults must be a mapping"),
        ('ACTIONS.register("z.a", platforms=("lever",))', "action 'z.a': platforms must name some of button, switch"),
        ('ACTIONS.register("z.a")', "action 'z.a': platforms must name some of button, switch"),
        ('ACTIONS.register("z.a", platforms="button")', "action 'z.a': platforms must name some of button, switch"),
        ('PROBES.register("z")', "probe name 'z' is not lower-case words joined by dots"),
        ('PROBES.register("z." + "x" * 70)', "is not lower-case words joined by dots"),
    ],
)
def test_entries_pilot_could_not_use_are_refused(site: Path, register: str, reason: str) -> None:
    source = f'from pilot.registry import ACTIONS, PROBES\n\n@{register}\ndef f(ctx, value=None):\n    """F."""\n'
    d = _dist(site, "odd-pilot", "1")
    d.entry("pilot.probes", "odd", d.module(source)).install()
    (line,) = PROBES.load_plugins()
    assert line.startswith("plugin 'odd' (pilot.probes) from odd-pilot 1 is not loaded: ") and reason in line


def test_a_distributions_name_is_shown_escaped(site: Path, capsys: pytest.CaptureFixture) -> None:
    d = _dist(site, "acme\x1b[2Jpilot", "1")
    d.entry("pilot.probes", "acme", d.module(PROBE_MODULE.format(prefix="acme"))).install()
    assert PROBES.get("acme.answer").origin == "acme\\x1b[2Jpilot 1"
    assert cli.main(["probes", "--no-values"]) == 0
    assert "\x1b" not in capsys.readouterr().out
