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
