"""A review of the profile editor's server side as an attacker: each test is a hole found and closed."""

from __future__ import annotations

import pytest

from pilot.console.editor import MAX_TEXT, EditorError, text


def test_a_deeply_indented_text_is_a_422_from_apply_not_a_recursion_error():
    # 600 maps, each one space deeper, fit in 256 KiB and pass the loader; ruamel's round trip recursed past
    # Python's limit and the console answered 500 with a traceback in its log
    deep = "".join(" " * i + f"k{i}:\n" for i in range(600))
    assert len(deep.encode()) < MAX_TEXT
    with pytest.raises(EditorError) as caught:
        text.apply(deep, [{"path": ["device", "name"], "value": "x"}])
    assert caught.value.status == 422
    assert "\n" not in caught.value.message and "nested" in caught.value.message


HANG = 120  # seconds: not a speed check, a hang check (before the fix these ran for many minutes)


def _in_child(code: str) -> str:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=HANG, check=False)
    assert done.returncode == 0, done.stderr[-500:]
    return done.stdout


def test_apply_on_thousands_of_repeated_lines_ends_and_keeps_the_users_lines():
    # 60,000 `#` lines and a line ruamel re-renders at each end: the line matcher (autojunk off) went quadratic
    out = _in_child(
        "from pilot.console.editor import text\n"
        "src = 'pilot:    1\\n' + '#\\n' * 60000 + 'device:   {name:   x}\\n'\n"
        "new = text.apply(src, [{'path': ['device', 'id'], 'value': 'y'}])['text']\n"
        "print(new.count('#\\n'), 'id: y' in new)\n"
    )
    assert out.split() == ["60000", "True"]


def test_diff_of_two_texts_of_repeated_lines_ends():
    # 10,000 lines of 100 values each just under difflib's popularity cut: 30 s for 39 KB before the fix
    out = _in_child(
        "from pilot.console.editor import text\n"
        "a = ''.join(f'#{i % 120}\\n' for i in range(24000))\n"
        "b = ''.join(f'#{(i * 7) % 120}\\n' for i in range(24000))\n"
        "d = text.diff(a, b)\n"
        "print(d['changed'], d['diff'].startswith('--- a/profile.yaml'))\n"
    )
    assert out.split() == ["True", "True"]


class _CountingPath(tuple):
    """A path that counts how often it is sliced: the registry stage's cost against the schema's findings."""

    slices = 0

    def __getitem__(self, index):
        if isinstance(index, slice):
            _CountingPath.slices += 1
        return tuple.__getitem__(self, index)


def test_registry_checks_cost_linear_in_the_schema_findings_not_their_product():
    # every entity was compared with every schema finding: 5,000 broken sensors in 256 KiB took 40 s to validate
    from pilot.profile import loader
    from pilot.profile.validate import registry_findings

    n = 2000
    source = "pilot: 1\nsensors:\n" + "".join(f"  s{i}: {{probe: cpu.percent, every: 1x}}\n" for i in range(n))
    doc, _ = loader.load_text("p.yaml", source.encode())
    broken = {_CountingPath(("sensors", f"s{i}", "every")) for i in range(n)}
    _CountingPath.slices = 0
    found, _flagged = registry_findings(doc, broken)
    assert found == []  # cpu.percent takes no args: nothing to say
    assert _CountingPath.slices <= 10 * n, _CountingPath.slices
