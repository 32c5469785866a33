"""A profile text in, what the editor shows out: positioned diagnostics with quick fixes, the form model,
edits applied with comments and layout kept, and a diff.

Validation is the real one (pilot.profile: loader, schema, registries, semantics), on the text itself;
`extends` may name shipped packs only, and the files a profile names (password, TLS, keyring) are not
opened here: either would let a browser have the console read files of its own host. Edits go through
ruamel's round trip, and only the lines an edit changed are taken from ruamel's output: every other line
is the user's own, byte for byte (merge()).
"""

from __future__ import annotations

import difflib
import io
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from pilot.console.editor import MAX_DIAGNOSTICS, MAX_EDITS, MAX_PATH, MAX_TEXT, EditorError
from pilot.diagnostics import ERROR, Diagnostic
from pilot.profile import loader
from pilot.profile.semantics import NEEDED_FILES
from pilot.profile.validate import validate_document

FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}\.ya?ml")
PACK_REF = re.compile(r"(?:pack:)?[A-Za-z0-9][A-Za-z0-9_-]{0,63}/[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
DID_YOU_MEAN = re.compile(r"\(did you mean '([^'\n]{1,200})'\?\)")
QUOTED = re.compile(r"'([^'\n]{1,200})'")
WORD_END = set(" \t,[]{}#")
MAX_VALUE_TEXT = 4096
MAX_VALUE_DEPTH = 4
MAX_MATCH = 1_000_000  # lines x lines difflib may match one by one (_opcodes)
_BASES: loader.BaseCache = {}  # the shipped packs' composed bases, shared by every validation


def file_name(name: Any) -> str:
    return name if isinstance(name, str) and FILE_NAME.fullmatch(name) else "profile.yaml"


def encoded(text: Any, what: str = "text") -> bytes:
    if not isinstance(text, str):
        raise EditorError(400, f"{what} must be a string")
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError:
        raise EditorError(400, f"{what} is not valid Unicode (a lone surrogate)") from None
    if len(raw) > MAX_TEXT:
        raise EditorError(413, f"{what} is larger than {MAX_TEXT // 1024} KiB")
    return raw


# ------------------------------------------------------------------ validate
def _span(lines: list[str], line: int, col: int) -> tuple[int, int, int, int, int, int]:
    """(line, col, end_line, end_col, word_start, word_end) of the token at a 1-based position: a quoted
    string's inside, or the run of characters up to a space, a flow bracket, a comma or `: `."""
    if line < 1 or line > len(lines):
        line, col = 1, 1
    text = lines[line - 1]
    col = min(max(col, 1), len(text) + 1)
    start = col - 1
    if start < len(text) and text[start] in "'\"":
        quote = text[start]
        close = text.find(quote, start + 1)
        end = close if close > start else len(text)
        return line, col, line, end + 2 if close > start else end + 1, start + 1, end
    end = start
    while end < len(text) and text[end] not in WORD_END:
        if text[end] == ":" and (end + 1 == len(text) or text[end + 1] in " \t"):
            break
        end += 1
    if end == start:  # nothing to underline here: the rest of the line, or one column
        return line, col, line, max(len(text) + 1, col + 1), start, start
    return line, col, line, end + 1, start, end


def _fix(lines: list[str], diag: dict[str, Any], word: tuple[int, int], message: str) -> dict[str, Any] | None:
    found = DID_YOU_MEAN.search(message)
    if found is None:
        return None
    offending = QUOTED.search(message)
    start, end = word
    text = lines[diag["line"] - 1] if 0 < diag["line"] <= len(lines) else ""
    if offending is None or text[start:end] != offending.group(1):
        return None  # the word under the position is not the one the message names: no blind replacement
    return {
        "line": diag["line"],
        "col": start + 1,
        "end_line": diag["line"],
        "end_col": end + 1,
        "insert": found.group(1),
    }


def _compose_text(name: str, raw: bytes) -> tuple[loader.Document | None, list[Diagnostic], str]:
    """Load (and, for pack bases, compose) a text; the third item is the file name diagnostics carry."""
    doc, diags = loader.load_text(name, raw)
    if doc is None or not isinstance(doc.data, dict) or "extends" not in doc.data:
        return doc, diags, name
    refs = doc.data["extends"]
    entries = [((("extends",)), refs)] if isinstance(refs, str) else []
    if isinstance(refs, list):
        entries = [(("extends", i), ref) for i, ref in enumerate(refs)]
    bad = [
        doc.diag(
            path,
            "the editor resolves only shipped packs here (`base/linux`, `pack:NAME/PROFILE`); check a profile "
            "that extends a file with `pilot validate` next to it",
            code="extends",
        )
        for path, ref in entries
        if not (isinstance(ref, str) and PACK_REF.fullmatch(ref))
    ]
    if bad or not entries:
        return doc, diags + bad, name
    with tempfile.TemporaryDirectory(prefix="pilot-editor-") as folder:
        path = os.path.join(folder, name)
        with open(path, "wb") as handle:
            handle.write(raw)
        composed, found = loader.compose(path, cache=_BASES)
        own = [_own(d, path, name, doc) for d in found]
        if composed is not None:
            composed.file = name
        return composed, own, path


def _own(d: Diagnostic, path: str, name: str, doc: loader.Document) -> Diagnostic:
    """A finding of the composition, told in the editor's terms: this text's lines, or the `extends`
    entry that brought in the base the finding is about."""
    message = d.message.replace(path, name)
    if d.file == path:
        return Diagnostic(name, d.line, d.col, d.severity, d.path, message, d.code)
    at = doc.locate(("extends",))
    where = f"{Path(d.file).name}:{d.line}:{d.col}" if d.line else Path(d.file).name
    return Diagnostic(name, at.line, at.col, d.severity, d.path, f"in {where}: {message}", d.code)


def _device_files(data: Any) -> None:
    """The files a profile names (password, TLS, keyring) are the device's: the validator would open each on
    this host to warn when it cannot be read, which here would tell a browser what the console's host holds
    (and a FIFO there would block). Each is pointed at the null device instead; its type is kept."""
    for path, _what in NEEDED_FILES:
        node = _get(data, *path[:-1])
        if isinstance(node, dict) and isinstance(node.get(path[-1]), str) and node[path[-1]]:
            node[path[-1]] = os.devnull


def validate(text: Any, name: Any = "profile.yaml") -> dict[str, Any]:
    raw = encoded(text)
    name = file_name(name)
    doc, diags, path = _compose_text(name, raw)
    if doc is not None and not any(d.severity == ERROR for d in diags):
        _device_files(doc.data)
        found = validate_document(doc)
        diags = diags + [_own(d, path, name, doc) if path != name else d for d in found]
    lines = raw.decode("utf-8").lstrip("\ufeff").split("\n")
    out = []
    for d in sorted(dict.fromkeys(diags), key=lambda d: (d.line, d.col, d.message))[:MAX_DIAGNOSTICS]:
        line, col, end_line, end_col, start, end = _span(lines, d.line, d.col)
        item: dict[str, Any] = {
            "line": line,
            "col": col,
            "end_line": end_line,
            "end_col": end_col,
            "severity": d.severity,
            "message": d.message[:1000],
            "path": d.path[:500],
            "code": d.code,
        }
        item["fix"] = _fix(lines, item, (start, end), d.message)
        out.append(item)
    return {"diagnostics": out, "ok": not any(d.severity == ERROR for d in diags)}


def check_first(text: Any, name: Any = "profile.yaml") -> tuple[bool, list[dict[str, Any]]]:
    answer = validate(text, name)
    return answer["ok"], answer["diagnostics"]


# ------------------------------------------------------------------ form
def _scalar(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value if not isinstance(value, str) else value[:MAX_VALUE_TEXT]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return None


def _get(node: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


def form(text: Any) -> dict[str, Any]:
    raw = encoded(text)
    doc, diags = loader.load_text("profile.yaml", raw)
    if doc is None:
        d = diags[0]
        return {"ok": False, "error": f"{d.line}:{d.col}: {d.message}"}
    data = doc.data if doc.data is not None else {}
    if not isinstance(data, dict):
        return {"ok": False, "error": "1:1: a profile is a map of settings (pilot: 1, device: ..., sensors: ...)"}
    mqtt = data.get("mqtt")
    sensors, commands = data.get("sensors"), data.get("commands")
    port = _get(mqtt, "port")
    return {
        "ok": True,
        "form": {
            "device": {"name": _scalar(_get(data, "device", "name")), "id": _scalar(_get(data, "device", "id"))},
            "mqtt": {
                "host": _scalar(_get(mqtt, "host")),
                "port": port if isinstance(port, int) and not isinstance(port, bool) else None,
                "tls": isinstance(mqtt, dict) and mqtt.get("tls") not in (None, False),
                "username": _scalar(_get(mqtt, "username")),
            },
            "sensors": [
                {
                    "id": str(sid),
                    "enabled": _get(item, "enabled") is not False,
                    "every": _text(_get(item, "every")),
                    "deadband": _deadband(_get(item, "publish", "min_change")),
                }
                for sid, item in (sensors.items() if isinstance(sensors, dict) else ())
            ],
            "commands": [
                {
                    "id": str(cid),
                    "enabled": _get(item, "enabled") is not False,
                    "confirm": _text(_get(item, "policy", "confirm")),
                    "cooldown": _text(_get(item, "policy", "cooldown")),
                    "signed": _get(item, "policy", "signed") is True,
                }
                for cid, item in (commands.items() if isinstance(commands, dict) else ())
            ],
        },
    }


def _text(value: Any) -> str | None:
    value = _scalar(value)
    return None if value is None or isinstance(value, bool) else str(value)


def _deadband(value: Any) -> float | int | str | None:
    value = _scalar(value)
    return None if isinstance(value, bool) else value


# ------------------------------------------------------------------ apply
def _yaml(text: str) -> Any:
    from ruamel.yaml import YAML
    from ruamel.yaml.util import load_yaml_guess_indent

    _data, indent, block_seq = load_yaml_guess_indent(text)
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096  # never fold a long line the user wrote on one
    indent = indent or 2
    yaml.indent(mapping=indent, sequence=indent + (block_seq or 0), offset=block_seq or 0)
    if text.lstrip().startswith("---"):
        yaml.explicit_start = True
    return yaml


def _dump(yaml: Any, data: Any) -> str:
    out = io.StringIO()
    yaml.dump(data, out)
    return out.getvalue()


def _value(value: Any, depth: int = 0) -> Any:
    """A JSON value from the page as YAML data: finite numbers, bounded text, small lists and maps."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise EditorError(400, "a value must be a finite number")
        return value
    if isinstance(value, str):
        if len(value) > MAX_VALUE_TEXT:
            raise EditorError(400, f"a value is at most {MAX_VALUE_TEXT} characters")
        return value
    if depth >= MAX_VALUE_DEPTH:
        raise EditorError(400, "a value is nested too deeply")
    if isinstance(value, list) and len(value) <= 256:
        return CommentedSeq(_value(v, depth + 1) for v in value)
    if isinstance(value, dict) and len(value) <= 256:
        out = CommentedMap()
        if not value:
            out.fa.set_flow_style()  # `{}`, not an empty block
        for k, v in value.items():
            out[_key(k)] = _value(v, depth + 1)
        return out
    raise EditorError(400, "a value is text, a number, true/false, null, or a small list or map of them")


def _key(part: Any) -> str:
    if not isinstance(part, str) or not 0 < len(part) <= 64 or any(ord(c) < 32 or c == "\x7f" for c in part):
        raise EditorError(400, "a key in an edit's path is 1 to 64 characters of text without control characters")
    return part


def _block_map(value: Any) -> bool:
    return isinstance(value, dict) and len(value) > 0 and not value.fa.flow_style()


def _trailing(node: Any, key: Any) -> tuple[Any, Any]:
    """The map and key whose comment holds what follows `node[key]` in the file (its last block-style leaf)."""
    while _block_map(node[key]):
        node = node[key]
        key = list(node)[-1]
    return node, key


def _remove(node: Any, key: str) -> None:
    """Delete a key, keeping the blank lines and full-line comments that followed its value: ruamel keeps them
    on the value's last key, and they belong to whatever comes next, not to what is removed."""
    from ruamel.yaml.error import CommentMark
    from ruamel.yaml.tokens import CommentToken

    keys = list(node)
    leaf, leaf_key = _trailing(node, key)
    entry = leaf.ca.items.get(leaf_key)
    token = entry[2] if entry and len(entry) > 2 else None
    kept = token.value.split("\n", 1)[1] if token is not None and "\n" in token.value else ""
    del node[key]
    index = keys.index(key)
    if not kept or index == 0:
        return
    prev, prev_key = _trailing(node, keys[index - 1])
    entry = prev.ca.items.setdefault(prev_key, [None, None, None, None])
    if entry[2] is None:
        entry[2] = CommentToken("\n" + kept, CommentMark(0), None)
    else:
        entry[2].value += kept


def _edit(data: Any, path: Any, value: Any) -> None:
    from ruamel.yaml.comments import CommentedMap

    if not isinstance(path, list) or not 0 < len(path) <= MAX_PATH:
        raise EditorError(400, f"an edit's path is a list of 1 to {MAX_PATH} keys")
    if path == ["mqtt", "tls"] and isinstance(value, bool):  # the form's switch: `tls:` present means TLS on
        mqtt = data.get("mqtt")
        if value and isinstance(mqtt, dict) and isinstance(mqtt.get("tls"), dict):
            return  # on already, with its own settings kept
        if value:
            value = {}
        else:
            value = None
    node = data
    trail: list[tuple[Any, Any]] = []  # the maps walked through, to drop those a removal leaves empty
    for depth, part in enumerate(path):
        last = depth == len(path) - 1
        where = ".".join(str(p) for p in path[: depth + 1])
        if isinstance(node, list):
            if isinstance(part, bool) or not isinstance(part, int) or not -len(node) <= part < len(node):
                raise EditorError(422, f"{where}: no such list item")
            if last:
                if value is None:
                    del node[part]
                else:
                    node[part] = _value(value)
                return
            trail = []
            node = node[part]
            continue
        if not isinstance(node, dict):
            raise EditorError(422, f"{where}: the value above it is not a map")
        key = _key(part)
        if last:
            if value is not None:
                node[key] = _value(value)
            elif key in node:
                while trail and len(node) == 1:  # a map this removal empties goes too
                    node, key = trail.pop()
                _remove(node, key)
            return
        if key not in node or node[key] is None:
            if value is None:
                return  # removing under something absent: nothing to do
            node[key] = CommentedMap()
        trail.append((node, key))
        node = node[key]


def apply(text: Any, edits: Any) -> dict[str, Any]:
    raw = encoded(text)
    if not isinstance(edits, list) or len(edits) > MAX_EDITS:
        raise EditorError(400, f"edits is a list of at most {MAX_EDITS} edits")
    doc, diags = loader.load_text("profile.yaml", raw)  # the loader's checks first: no alias, tab or bomb
    if doc is None and not (diags and diags[0].code == "empty"):
        d = diags[0]
        raise EditorError(422, f"{d.line}:{d.col}: {d.message}")
    source = raw.decode("utf-8")
    bom = "\ufeff" if source.startswith("\ufeff") else ""
    source = source[len(bom) :]
    try:
        return {"text": bom + _apply(source, edits)}
    except RecursionError:  # ruamel's round trip recurses per level: deep indentation the loader lets through
        raise EditorError(422, "the document is nested too deeply for the form; edit it as text") from None


def _apply(source: str, edits: list[Any]) -> str:
    yaml = _yaml(source)
    data = yaml.load(source)
    baseline = _dump(yaml, data)
    from ruamel.yaml.comments import CommentedMap

    if data is None:
        data = CommentedMap()
    for edit in edits:
        if not isinstance(edit, dict) or "path" not in edit:
            raise EditorError(400, 'each edit is {"path": [...], "value": ...}')
        if not isinstance(data, dict):
            raise EditorError(422, "1:1: a profile is a map of settings")
        _edit(data, edit["path"], edit.get("value"))
    edited = _dump(yaml, data) if data else ""
    result = merge(source, baseline, edited)
    if len(result.encode("utf-8")) > MAX_TEXT:
        raise EditorError(413, f"the edited text would be larger than {MAX_TEXT // 1024} KiB")
    return result


def _boundary(opcodes: list[tuple[str, int, int, int, int]], i: int, *, end: bool) -> int | None:
    """Where boundary `i` of the first sequence falls in the second: before what was inserted there for a
    start, after it for an end; None when `i` is inside a changed block."""
    for tag, i1, i2, j1, j2 in reversed(opcodes) if end else opcodes:
        if i1 <= i <= i2:
            if tag == "equal":
                return j1 + (i - i1)
            if i == i1:
                return j1
            if i == i2:
                return j2
            return None
    return None


def _overlap(s: int, e: int, bs: int, be: int) -> bool:
    return max(s, bs) < min(e, be) or (s == e and bs < s < be)


def _opcodes(x: list[str], y: list[str]) -> list[tuple[str, int, int, int, int]]:
    """difflib's opcodes from `x` to `y`, matched line by line only between their common head and tail
    (an edit is local), and one whole `replace` where that middle is too large: difflib is quadratic or
    worse on repeated lines (`#`, blank, `every: 10s`), and these lines come from a browser."""
    p, n = 0, min(len(x), len(y))
    while p < n and x[p] == y[p]:
        p += 1
    t = 0
    while t < n - p and x[len(x) - 1 - t] == y[len(y) - 1 - t]:
        t += 1
    xm, ym = x[p : len(x) - t], y[p : len(y) - t]
    ops = [("equal", 0, p, 0, p)] if p else []
    if len(xm) * len(ym) <= MAX_MATCH:
        matcher = difflib.SequenceMatcher(None, xm, ym, autojunk=False)
        ops += [(tag, i1 + p, i2 + p, j1 + p, j2 + p) for tag, i1, i2, j1, j2 in matcher.get_opcodes()]
    else:
        ops.append(("replace" if xm and ym else "delete" if xm else "insert", p, p + len(xm), p, p + len(ym)))
    if t:
        ops.append(("equal", len(x) - t, len(x), len(y) - t, len(y)))
    return ops


def merge(original: str, baseline: str, edited: str) -> str:
    """`original` with the changes from `baseline` (ruamel's rendering of it) to `edited` (its rendering after
    the edits): lines no edit touched stay the user's own even where ruamel renders them differently. A
    change that falls where ruamel re-rendered a line takes ruamel's rendering of that region only."""
    if baseline == original:
        return edited
    a, b, c = (s.splitlines(keepends=True) for s in (original, baseline, edited))
    b_to_a, b_to_c = _opcodes(b, a), _opcodes(b, c)
    spurious = [(i1, i2) for tag, i1, i2, _j1, _j2 in b_to_a if tag != "equal"]
    regions: list[tuple[int, int]] = []
    for tag, s, e, _j1, _j2 in b_to_c:
        if tag == "equal":
            continue
        grown = True
        while grown:  # a hunk that touches a re-rendered block takes the whole block
            grown = False
            for bs, be in spurious:
                if _overlap(s, e, bs, be) and (bs < s or be > e):
                    s, e, grown = min(s, bs), max(e, be), True
        if regions and (s < regions[-1][1] or (s == regions[-1][1] and s == e)):
            regions[-1] = (regions[-1][0], max(regions[-1][1], e))
        else:
            regions.append((s, e))
    result: list[str] = []
    done = 0
    for s, e in regions:
        a1, a2 = _boundary(b_to_a, s, end=False), _boundary(b_to_a, e, end=True)
        c1, c2 = _boundary(b_to_c, s, end=False), _boundary(b_to_c, e, end=True)
        if None in (a1, a2, c1, c2) or a1 < done or a2 < a1:  # cannot place it safely: ruamel's rendering
            return edited
        result += a[done:a1] + c[c1:c2]
        done = a2
    result += a[done:]
    return "".join(result)


# ------------------------------------------------------------------ diff
def diff(old: Any, new: Any, name: Any = "profile.yaml") -> dict[str, Any]:
    encoded(old, "old")
    encoded(new, "new")
    name = file_name(name)
    lines = []
    for line in _unified(old.splitlines(keepends=True), new.splitlines(keepends=True), name):
        lines.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return {"diff": "".join(lines), "changed": old != new}


def _range(start: int, stop: int) -> str:
    length = stop - start
    return f"{start + 1}" if length == 1 else f"{start + (length > 0)},{length}"


def _unified(a: list[str], b: list[str], name: str) -> list[str]:
    """difflib.unified_diff's output (3 lines of context) over _opcodes, so its cost stays bounded."""
    grouping = difflib.SequenceMatcher(None, [], [])
    grouping.opcodes = _opcodes(a, b)  # get_grouped_opcodes() reads them from here
    out: list[str] = []
    for group in grouping.get_grouped_opcodes(3) if a != b else ():
        if not out:
            out += [f"--- a/{name}\n", f"+++ b/{name}\n"]
        out.append(f"@@ -{_range(group[0][1], group[-1][2])} +{_range(group[0][3], group[-1][4])} @@\n")
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                out += [" " + line for line in a[i1:i2]]
                continue
            out += ["-" + line for line in a[i1:i2]]
            out += ["+" + line for line in b[j1:j2]]
    return out
