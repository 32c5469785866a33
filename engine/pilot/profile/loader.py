"""Load profiles safely, keep where every value came from, and compose `extends`.

The loader refuses what YAML allows but a config file never needs (aliases,
custom tags, tabs, huge or non-UTF-8 files) before building any object, so a
hostile or broken file costs one linear scan and yields positioned errors.
The result is plain dicts and lists plus a map from document path to
(file, line, column); nothing downstream ever sees a ruamel object.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.constructor import RoundTripConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import AliasEvent, CollectionStartEvent, ScalarEvent
from ruamel.yaml.main import DocInfo
from ruamel.yaml.main import version as yaml_version
from ruamel.yaml.nodes import MappingNode, ScalarNode, SequenceNode

from pilot import environment, resources
from pilot.diagnostics import ERROR, Diagnostic, json_path

MAX_BYTES = 1024 * 1024
MAX_EXTENDS_DEPTH = 16
MAX_DEPTH = 32  # maps and lists inside each other; a profile needs about 6
_CORE_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "map", "seq")}

PathKey = tuple  # a path into the document: ("sensors", "cpu", "every")


@dataclass(frozen=True)
class Pos:
    file: str
    line: int  # 1-based
    col: int  # 1-based


@dataclass
class Document:
    """A loaded (and possibly composed) profile: data plus provenance."""

    file: str
    data: Any
    positions: dict[PathKey, Pos] = field(default_factory=dict)  # where each value starts
    key_positions: dict[PathKey, Pos] = field(default_factory=dict)  # where each map key starts
    sources: list[str] = field(default_factory=list)  # every file that contributed
    quoted: set[PathKey] = field(default_factory=set)  # scalars written in quotes
    blocks: set[PathKey] = field(default_factory=set)  # scalars written as `|` or `>` blocks
    texts: dict[str, str] = field(default_factory=dict)  # source text per file, for block offsets

    def column_in(self, path: Iterable[object], offset: int) -> Pos:
        """Position of character `offset` inside the one-line string value at path."""
        parts = tuple(path)
        pos = self.locate(parts)
        if parts not in self.positions:
            return pos
        if parts in self.blocks and pos.file in self.texts:
            return _block_offset(self.texts[pos.file], pos, offset)
        return Pos(pos.file, pos.line, pos.col + offset + (1 if parts in self.quoted else 0))

    def locate(self, path: Iterable[object], *, key: bool = False) -> Pos:
        """Position of the value at path, or of its nearest located ancestor."""
        parts = tuple(path)
        if key and parts in self.key_positions:
            return self.key_positions[parts]
        while parts:
            if parts in self.positions:
                return self.positions[parts]
            parts = parts[:-1]
        return self.positions.get((), Pos(self.file, 1, 1))

    def diag(
        self, path: Iterable[object], message: str, *, severity: str = ERROR, code: str = "", key: bool = False
    ) -> Diagnostic:
        parts = tuple(path)
        pos = self.locate(parts, key=key)
        return Diagnostic(pos.file, pos.line, pos.col, severity, json_path(parts), message, code)


def _block_offset(text: str, indicator: Pos, offset: int) -> Pos:
    """Where character `offset` of a `|`/`>` block scalar's value sits in the file."""
    lines = text.split("\n")[indicator.line :]  # the content starts on the line after the indicator
    indent = next((len(line) - len(line.lstrip(" ")) for line in lines if line.strip()), 0)
    remaining = offset
    for number, line in enumerate(lines, start=indicator.line + 1):
        if not line.strip():
            remaining -= 1
            continue
        if len(line) - len(line.lstrip(" ")) < indent:
            break
        content = line[indent:]
        if remaining <= len(content):
            return Pos(indicator.file, number, indent + max(remaining, 0) + 1)
        remaining -= len(content) + 1
    return indicator


class _StringTimestamps(RoundTripConstructor):
    """Timestamps stay the strings the user wrote (a cron-like `2024-01-01` is not a date)."""


_StringTimestamps.add_constructor("tag:yaml.org,2002:timestamp", RoundTripConstructor.construct_yaml_str)


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.Constructor = _StringTimestamps
    yaml.allow_duplicate_keys = False
    yaml.preserve_quotes = True  # so a column inside a quoted expression can be pointed at
    return yaml


def _mark_diag(file: str, mark: Any, message: str, code: str) -> Diagnostic:
    line = (mark.line + 1) if mark is not None else 1
    col = (mark.column + 1) if mark is not None else 1
    return Diagnostic(file, line, col, ERROR, "", message, code)


def _decode(file: str, raw: bytes) -> tuple[str | None, list[Diagnostic]]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        col = len(before) - (before.rfind(b"\n") + 1) + 1
        return None, [
            Diagnostic(
                file,
                line,
                col,
                ERROR,
                "",
                f"the file is not UTF-8 (byte 0x{raw[exc.start]:02x}); save it as UTF-8",
                "encoding",
            )
        ]
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\x00" in text:
        idx = text.index("\x00")
        line = text.count("\n", 0, idx) + 1
        col = idx - (text.rfind("\n", 0, idx) + 1) + 1
        return None, [Diagnostic(file, line, col, ERROR, "", "the file contains a NUL byte", "encoding")]
    return text, []


def _tabs(file: str, text: str) -> list[Diagnostic]:
    diags = []
    for number, line in enumerate(text.split("\n"), start=1):
        col = line.find("\t")
        if col >= 0:
            diags.append(
                Diagnostic(
                    file,
                    number,
                    col + 1,
                    ERROR,
                    "",
                    "tab character: indent with spaces (inside a double-quoted string write \\t)",
                    "tab",
                )
            )
    return diags


# Line breaks to YAML that editors do not show as such: positions would disagree with what the user
# sees, and text could hide on a line that looks like a comment.
HIDDEN_BREAKS = {"\x85": "NEL (U+0085)", "\u2028": "LINE SEPARATOR (U+2028)", "\u2029": "PARAGRAPH SEPARATOR (U+2029)"}


def _hidden_breaks(file: str, text: str) -> list[Diagnostic]:
    diags = []
    for number, line in enumerate(text.split("\n"), start=1):
        for col, char in enumerate(line, start=1):
            if char in HIDDEN_BREAKS:
                message = f"{HIDDEN_BREAKS[char]} is a line break to YAML but not to most editors; remove it"
                diags.append(Diagnostic(file, number, col, ERROR, "", message, "encoding"))
                break
    return diags


def _flow_depth(file: str, text: str) -> list[Diagnostic]:
    """Deep `[[[[...` costs ruamel's scanner quadratic time; count flow brackets first, in O(n)."""
    depth = 0
    quote = ""
    line, col = 1, 0
    prev = " "
    i = 0
    while i < len(text):
        ch = text[i]
        col += 1
        if ch == "\n":
            line, col = line + 1, 0
            if quote == "'":  # single-quoted scalars may span lines; keep state
                pass
        if quote:
            if ch == "\\" and quote == '"':
                i += 2
                col += 1
                prev = " "
                continue
            if ch == quote:
                quote = ""
        elif ch == "#" and prev in " \t\n":
            end = text.find("\n", i)
            if end < 0:
                break
            col += end - i - 1
            i = end
            continue
        elif ch in "'\"" and prev in " \t\n[{,:":
            quote = ch
        elif ch in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return [
                    Diagnostic(
                        file,
                        line,
                        col,
                        ERROR,
                        "",
                        f"the document is nested more than {MAX_DEPTH} levels deep",
                        "too-deep",
                    )
                ]
        elif ch in "]}":
            depth = max(0, depth - 1)
        prev = ch
        i += 1
    return []


_COMPACT_RUN = re.compile(r"^[ ]*(?:[-?:](?: +|$))+", re.MULTILINE)
_INDICATOR = re.compile(r"[-?:](?: +|$)")


def _block_run(file: str, text: str) -> list[Diagnostic]:
    """`- - - - ...` (or `? `, `: `) opens one block collection per indicator on a single line, and
    libyaml's composer recurses in C for each: tens of thousands of them overflow the stack and kill the
    process (no RecursionError). Nesting that grows by indentation is bounded by the file size; a run of
    indicators at a line's start is not, so it is counted here, in O(n)."""
    for match in _COMPACT_RUN.finditer(text):
        if len(_INDICATOR.findall(match.group())) > MAX_DEPTH:
            line = text.count("\n", 0, match.start()) + 1
            return [
                Diagnostic(
                    file, line, 1, ERROR, "", f"the document is nested more than {MAX_DEPTH} levels deep", "too-deep"
                )
            ]
    return []


_ALLOWED_NODE_TAGS = _CORE_TAGS | {"tag:yaml.org,2002:timestamp"}  # implicit dates, kept as text


_ANCHOR_OR_ALIAS = re.compile(r"(?:^|[\s,\[{])[&*][^\s,\[\]{}]")


def _c_parser_available() -> bool:
    try:
        from ruamel.yaml.cyaml import CParser  # noqa: F401  (ruamel.yaml.clib)

        return True
    except ImportError:
        return False


_FAST = _c_parser_available()


def _compose_pure(text: str) -> tuple[Any, Any]:
    yaml = _yaml()
    yaml.doc_infos.append(DocInfo(requested_version=yaml_version(yaml.version)))
    yaml.tags = {}
    constructor, parser = yaml.get_constructor_parser(text)
    try:
        return constructor.composer.get_single_node(), constructor
    finally:
        parser.dispose()
        for part in ("reader", "scanner"):
            try:
                getattr(getattr(yaml, "_" + part), f"reset_{part}")()
            except AttributeError:
                pass


def _compose(text: str, fast: bool | None = None) -> tuple[Any, Any, bool]:
    """One parse into a node graph, vetted in linear time: shared nodes are visited once, so an
    alias bomb costs its size, not its expansion. Returns (node, constructor, suspicious), where
    suspicious means anchors, aliases or foreign tags may be present.

    libyaml (ruamel.yaml.clib) composes about five times faster than the pure-Python parser and
    keeps every node's line and column; it does not report anchors on nodes, so a cheap text
    match sends anything that looks like `&name` or `*name` to the precise event scan."""
    if _FAST if fast is None else fast:
        yaml = YAML(typ="safe", pure=False)
        node, constructor = yaml.compose(text), yaml.constructor
        suspicious = bool(_ANCHOR_OR_ALIAS.search(text))
    else:
        node, constructor = _compose_pure(text)
        suspicious = False
    if node is None:
        return None, constructor, suspicious
    if suspicious:
        return node, constructor, True
    seen: set[int] = set()
    stack = [node]
    while stack:
        current = stack.pop()
        if id(current) in seen or getattr(current, "anchor", None) or str(current.tag) not in _ALLOWED_NODE_TAGS:
            return node, constructor, True
        seen.add(id(current))
        value = current.value
        if isinstance(value, list):
            for item in value:
                stack.extend(item if isinstance(item, tuple) else (item,))
    return node, constructor, False


class _ComplexKey(Exception):
    def __init__(self, mark: Any) -> None:
        self.mark = mark


class _DuplicateKey(Exception):
    def __init__(self, key: str, mark: Any) -> None:
        self.key, self.mark = key, mark


def _pos(file: str, mark: Any) -> Pos:
    return Pos(file, mark.line + 1, mark.column + 1)


def _build(node: Any, path: PathKey, file: str, constructor: Any, doc: Document) -> Any:
    """Plain dicts, lists and scalars straight from the node graph, recording every position.
    Building them ourselves skips ruamel's CommentedMap machinery (about a third of load time)."""
    if isinstance(node, MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if isinstance(key_node, ScalarNode):
                key = _scalar(key_node, constructor)
                key = key if isinstance(key, str) else str(key)
            else:
                raise _ComplexKey(key_node.start_mark)
            if key in out:
                raise _DuplicateKey(key, key_node.start_mark)
            child = path + (key,)
            doc.key_positions[child] = _pos(file, key_node.start_mark)
            doc.positions[child] = _pos(file, value_node.start_mark)
            out[key] = _build(value_node, child, file, constructor, doc)
        return out
    if isinstance(node, SequenceNode):
        items = []
        for i, item in enumerate(node.value):
            child = path + (i,)
            doc.positions[child] = _pos(file, item.start_mark)
            items.append(_build(item, child, file, constructor, doc))
        return items
    if node.style in ("'", '"'):
        doc.quoted.add(path)
    elif node.style in ("|", ">"):
        doc.blocks.add(path)
    return _scalar(node, constructor)


def _scalar(node: Any, constructor: Any) -> Any:
    tag = str(node.tag)
    if tag in ("tag:yaml.org,2002:str", "tag:yaml.org,2002:timestamp"):
        if node.style == ">":
            return node.value.replace("\a", "")  # ruamel's pure composer marks folds with BEL
        return node.value  # timestamps stay the text the user wrote
    return _plain_scalar(constructor.construct_object(node, deep=True))


def _scan_events(file: str, text: str) -> list[Diagnostic]:
    """One linear pass over parser events: reject aliases, anchors, foreign tags, multiple docs,
    deep nesting. Stops quietly at a syntax error: the caller reports that one itself."""
    diags: list[Diagnostic] = []
    try:
        _scan_events_into(file, text, diags)
    except (YAMLError, RecursionError):
        pass
    return diags


def _scan_events_into(file: str, text: str, diags: list[Diagnostic]) -> None:
    documents = 0
    depth = 0
    for event in _yaml().parse(text):
        name = type(event).__name__
        if isinstance(event, CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                diags.append(
                    _mark_diag(
                        file, event.start_mark, f"the document is nested more than {MAX_DEPTH} levels deep", "too-deep"
                    )
                )
                break
        elif name in ("SequenceEndEvent", "MappingEndEvent"):
            depth -= 1
        if name == "DocumentStartEvent":
            documents += 1
            if documents == 2:
                diags.append(
                    _mark_diag(
                        file,
                        event.start_mark,
                        "a profile holds exactly one YAML document; remove the second '---'",
                        "multiple-documents",
                    )
                )
        if isinstance(event, AliasEvent):
            diags.append(
                _mark_diag(
                    file,
                    event.start_mark,
                    f"alias '*{event.anchor}' is not allowed: write the value out (use `extends` to share settings)",
                    "alias",
                )
            )
            if len(diags) > 20:
                break
            continue
        if isinstance(event, (ScalarEvent, CollectionStartEvent)):
            if event.anchor:
                diags.append(
                    _mark_diag(
                        file,
                        event.start_mark,
                        f"anchor '&{event.anchor}' is not allowed: write the value out "
                        "(use `extends` to share settings)",
                        "anchor",
                    )
                )
            tag = str(event.tag) if event.tag is not None else None
            if tag and tag != "!" and tag not in _CORE_TAGS:
                shown = tag.replace("tag:yaml.org,2002:", "!!")
                diags.append(
                    _mark_diag(
                        file,
                        event.start_mark,
                        f"tag '{shown}' is not allowed: profiles hold only plain strings, numbers, booleans, "
                        "lists and maps",
                        "tag",
                    )
                )
        if len(diags) > 20:
            break


def _plain_scalar(node: Any) -> Any:
    # ruamel's ScalarFloat/ScalarInt/ScalarBoolean subclass the builtins; normalise them.
    if isinstance(node, bool):
        return bool(node)
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    return node


# ------------------------------------------------------------- indentation hints

_KEY_LINE = re.compile(r"[^\s#][^#]*?:(?:\s|$)")


def _starts(line: str) -> list[tuple[int, str]]:
    """Where the blocks a line belongs to start, innermost first: `    - notify: hi` is an item
    of a list at column 4 and a key of a map at column 6."""
    indent = len(line) - len(line.lstrip(" "))
    out = []
    rest = line[indent:]
    col = indent
    while rest.startswith("- ") or rest == "-":
        out.append((col, "list"))
        step = len(rest) - len(rest[1:].lstrip(" "))
        col, rest = col + step, rest[step:]
    if rest and _KEY_LINE.match(rest):
        out.append((col, "map"))
    return out[::-1]


def _content(lines: list[str], number: int) -> bool:
    text = lines[number - 1].strip()
    return bool(text) and not text.startswith("#") and text not in ("---", "...")


def _indent_step(lines: list[str]) -> int:
    """How far this file indents a map's keys under their parent (2 unless most of it says otherwise)."""
    steps: Counter[int] = Counter()
    previous: str | None = None
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if previous is not None and previous.rstrip().endswith(":") and not line.lstrip().startswith("-"):
            diff = (len(line) - len(line.lstrip(" "))) - (len(previous) - len(previous.lstrip(" ")))
            if diff > 0:
                steps[diff] += 1
        previous = line
    if not steps:
        return 2
    best = max(steps.values())
    return 2 if steps[2] == best else min(s for s, n in steps.items() if n == best)


def _spaces(n: int) -> str:
    return f"{n} space" if n == 1 else f"{n} spaces"


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _opener(line: str) -> int | None:
    """The column of the key on a `key:` line with no value (a block opens under it)."""
    body = line.split(" #", 1)[0].rstrip()
    starts = _starts(line)
    if not body.endswith(":") or not starts or starts[0][1] != "map":
        return None
    return starts[0][0]


def _indentation(file: str, text: str, mark: Any, problem: str) -> Diagnostic | None:
    """A block-structure error is reported where the parser gave up, which is often below the
    line to fix: the first key of a block sets its indentation, so a first key one space off is
    found wrong only at its correctly indented sibling. Name the line to fix, and say so."""
    if mark is None:
        return None
    structural = problem.startswith("expected <block end>")
    if not structural and problem != "mapping values are not allowed here":
        return None
    lines = text.split("\n")
    number = mark.line + 1
    if not 1 <= number <= len(lines) or not _content(lines, number):
        return None
    starts = _starts(lines[number - 1])
    if not starts:
        return None
    here, kind = starts[-1]  # the outermost block the line opens: where it must line up
    above = [n for n in range(number - 1, 0, -1) if _content(lines, n)]  # nearest first
    if not above:
        return None
    previous = above[0]
    if not structural:
        key = re.search(r":(?:\s|$)", lines[number - 1])
        if here <= _indent(lines[previous - 1]) or (key is not None and key.start() < mark.column):
            return None  # `a: b: c` on one line, not a deeper line read as a value going on
    step = _indent_step(lines)

    def found(line: int, why: str) -> Diagnostic:
        col = _indent(lines[line - 1]) + 1
        return Diagnostic(
            file, line, col, ERROR, "", f"YAML syntax error: {why}: check the indentation of line {line}", "syntax"
        )

    # 1. `parent:` with nothing under it, the next line beside it, and this line under it:
    #    that next line was meant to go under `parent:` too
    for i, n in enumerate(above):
        if _indent(lines[n - 1]) <= here - step:
            parent = above[i + 1] if i + 1 < len(above) else None
            own = _starts(lines[n - 1])
            if (
                parent is not None
                and _opener(lines[parent - 1]) == here - step
                and own
                and own[-1] == (here - step, "map")
                and kind == "map"
            ):
                return found(n, f"line {number} is indented under line {parent} but line {n}, above it, is not")
            break
    # 2. the first line of an open block is off by a few spaces, and this line, where that block's
    #    lines belong, is found wrong
    levels: list[list[Any]] = []  # [column, kind, first line], innermost first
    for n in above:
        for col, what in _starts(lines[n - 1]):
            if not levels or col < levels[-1][0]:
                levels.append([col, what, n])
            elif col == levels[-1][0]:
                levels[-1][2] = n
        if levels and levels[-1][0] == 0:
            break
    for index, (col, what, first) in enumerate(levels[:-1]):
        parent_col = levels[index + 1][0]
        fits = {0, step} if what == "list" else {step}
        fixed = what == "map" and dict(_starts(lines[first - 1])).get(parent_col) == "list"  # a key after `- `
        if not fixed and what == kind and here - parent_col in fits and col - parent_col not in fits:
            return found(
                first, f"line {first} is indented {_spaces(col)}, but line {number}, in the same block, {here}"
            )
    # 3. a line that ends the block this line goes on with: one line shallower between two siblings
    shallower = [n for n in above if _indent(lines[n - 1]) < here]
    sibling = next((n for n in above if (here, kind) in _starts(lines[n - 1])), None)
    if sibling is not None and len(shallower) >= 2 and shallower[0] > sibling > shallower[1]:
        d = shallower[0]
        if all(_indent(lines[n - 1]) > here for n in above if d < n < number):
            return found(d, f"line {d} ends the block that line {number} goes on with (line {sibling} is in it)")
    if structural:
        other = next((what for col, what, _ in levels if col == here and what != kind), None)
        if other == "map":
            return found(number, f"line {number} is a list item (`- `) among keys")
        if other == "list":
            return found(number, f"line {number} is a key among list items (`- `)")
        return found(number, f"line {number} is indented {_spaces(here)}, which lines up with no block above it")
    return found(
        number, f"mapping values are not allowed here: line {number} is deeper than line {previous}, which has a value"
    )


def load_text(file: str, raw: bytes) -> tuple[Document | None, list[Diagnostic]]:
    if len(raw) > MAX_BYTES:
        return None, [
            Diagnostic(
                file,
                0,
                0,
                ERROR,
                "",
                f"the file is {len(raw)} bytes; profiles are limited to {MAX_BYTES} bytes (1 MiB)",
                "too-large",
            )
        ]
    text, diags = _decode(file, raw)
    if text is None:
        return None, diags
    diags = _tabs(file, text) or _hidden_breaks(file, text) or _flow_depth(file, text) or _block_run(file, text)
    if diags:
        return None, diags
    try:
        try:
            node, constructor, suspicious = _compose(text)
        except (MarkedYAMLError, RecursionError):
            if not _FAST:
                raise
            # libyaml counts lines and words its messages differently; broken files are rare,
            # so report them as ruamel's own parser sees them
            node, constructor, suspicious = _compose(text, fast=False)
        if suspicious:
            # the slow, precise path: one diagnostic per anchor, alias and tag, at its own position
            diags = _scan_events(file, text)
            if diags:
                return None, diags
        if node is None:
            return None, [
                Diagnostic(file, 1, 1, ERROR, "", "the file is empty; a profile starts with `pilot: 1`", "empty")
            ]
        doc = Document(file, None, {(): Pos(file, 1, 1)}, {}, [file], set(), set(), {file: text})
        doc.data = _build(node, (), file, constructor, doc)
        return doc, []
    except _DuplicateKey as exc:
        return None, [
            _mark_diag(file, exc.mark, f"duplicate key '{exc.key}': each key may appear once in a map", "duplicate-key")
        ]
    except _ComplexKey as exc:
        return None, [_mark_diag(file, exc.mark, "map keys must be plain text", "syntax")]
    except AssertionError:  # ruamel asserts on %YAML directives it does not know
        return None, [Diagnostic(file, 1, 1, ERROR, "", "unsupported %YAML version: profiles are YAML 1.2", "syntax")]
    except ValueError as exc:  # a scalar the constructor cannot build (a 5,000-digit number, say)
        return None, [Diagnostic(file, 1, 1, ERROR, "", f"a value cannot be read: {str(exc)[:120]}", "syntax")]
    except (MarkedYAMLError, RecursionError) as exc:
        diags = _scan_events(file, text)  # names nesting and extra documents precisely
        if diags:
            return None, diags
        if isinstance(exc, RecursionError):
            return None, [Diagnostic(file, 1, 1, ERROR, "", "the document is nested too deeply", "syntax")]
        problem = (exc.problem or exc.context or "invalid YAML").strip()
        hint = _indentation(file, text, exc.problem_mark, problem)
        if hint is not None:
            return None, [hint]
        return None, [_mark_diag(file, exc.problem_mark or exc.context_mark, f"YAML syntax error: {problem}", "syntax")]
    except YAMLError as exc:
        return None, [Diagnostic(file, 1, 1, ERROR, "", f"YAML error: {exc}", "syntax")]


def load_file(path: str | os.PathLike[str]) -> tuple[Document | None, list[Diagnostic]]:
    file = str(path)
    try:
        size = os.stat(file).st_size
        if size > MAX_BYTES:
            return None, [
                Diagnostic(
                    file,
                    0,
                    0,
                    ERROR,
                    "",
                    f"the file is {size} bytes; profiles are limited to {MAX_BYTES} bytes (1 MiB)",
                    "too-large",
                )
            ]
        with open(file, "rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        return None, [Diagnostic(file, 0, 0, ERROR, "", f"cannot read the file: {exc.strerror}", "unreadable")]
    return load_text(file, raw)


# ---------------------------------------------------------------- composition


def pack_search_path() -> list[Path]:
    extra = [Path(p) for p in (environment.get("PILOT_PACKS_PATH") or "").split(os.pathsep) if p]
    return extra + [resources.profiles_dir()]


def resolve_base(ref: str, relative_to: Path, search: list[Path]) -> Path | None:
    """`pack:NAME/PROFILE` or `NAME/PROFILE` is a shipped pack; anything path-like is a file."""
    is_pack = ref.startswith("pack:")
    name = ref[5:] if is_pack else ref
    looks_like_path = name.startswith((".", "/", "~")) or name.endswith((".yaml", ".yml"))
    candidates: list[Path] = []
    if not is_pack:
        base = relative_to / os.path.expanduser(name)
        candidates += [base] if name.endswith((".yaml", ".yml")) else [base.with_name(base.name + ".yaml"), base]
    if is_pack or not looks_like_path:
        for root in search:
            candidates += [root / f"{name}.yaml", root / f"{name}.yml"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return None


def merge_into(target: Document, overlay: Document) -> None:
    """Recursive dict merge, later wins; positions follow the value that won.

    Linear in the size of both documents: the paths the overlay replaces are collected
    first and each position table is then filtered once (checking a path's prefixes
    against that set), rather than scanned again for every replaced key, which made
    two 15,000-sensor files take minutes."""
    replaced: set[PathKey] = set()  # overlay values that replace whatever the target held there
    merged_maps: set[PathKey] = set()  # maps merged key by key: the overlay's map position wins

    def walk(base: dict, over: dict, path: PathKey) -> None:
        for key, value in over.items():
            child = path + (key,)
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                merged_maps.add(child)
                walk(base[key], value, child)
            else:
                base[key] = value
                replaced.add(child)

    if isinstance(target.data, dict) and isinstance(overlay.data, dict):
        walk(target.data, overlay.data, ())
    else:
        target.data = overlay.data
        replaced.add(())

    def under_replaced(key: PathKey, *, strictly: bool) -> bool:
        last = len(key) if strictly else len(key) + 1
        return any(key[:i] in replaced for i in range(last))

    for src, dst in ((overlay.positions, target.positions), (overlay.key_positions, target.key_positions)):
        for key in [k for k in dst if under_replaced(k, strictly=True)]:
            del dst[key]
        for key, pos in src.items():
            if key in merged_maps or under_replaced(key, strictly=False):
                dst[key] = pos
    target.sources += [s for s in overlay.sources if s not in target.sources]
    target.quoted |= overlay.quoted
    target.blocks |= overlay.blocks
    target.texts.update(overlay.texts)


def _copy(doc: Document) -> Document:
    import copy

    return Document(
        doc.file,
        copy.deepcopy(doc.data),
        dict(doc.positions),
        dict(doc.key_positions),
        list(doc.sources),
        set(doc.quoted),
        set(doc.blocks),
        dict(doc.texts),
    )


BaseCache = dict  # (realpath, size, mtime) -> (Document | None, diagnostics); see compose()

MAX_EXTENDS_ENTRIES = 16  # bases one `extends` list may name
MAX_EXTENDS_FILES = 64  # distinct files one profile may be composed from
_UNSHAREABLE = frozenset({"extends-cycle", "extends-depth", "extends-files"})  # depend on how a file was reached


def _cache_key(path: Path) -> tuple | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (os.path.realpath(path), st.st_size, st.st_mtime_ns)


@dataclass
class _Walk:
    """The state of one compose(): every file composed once (a diamond's base is loaded once,
    not once per path to it) and the distinct files read, capped."""

    memo: dict = field(default_factory=dict)
    files: set = field(default_factory=set)


def compose(
    path: str | os.PathLike[str],
    *,
    search: list[Path] | None = None,
    _stack: tuple[str, ...] = (),
    cache: BaseCache | None = None,
    _walk: _Walk | None = None,
) -> tuple[Document | None, list[Diagnostic]]:
    """Load a profile and everything it extends; `extends` is removed from the result.

    Each file is composed once per call however many paths lead to it (fourteen files each
    extending the next four times are 14 compositions, not 4**14), the chain is at most
    MAX_EXTENDS_DEPTH deep, one list names at most MAX_EXTENDS_ENTRIES bases and a profile
    is composed from at most MAX_EXTENDS_FILES files; each cap is an error at the `extends`
    entry that crosses it. `cache` (a dict the caller owns) shares composed bases between
    profiles validated in one run: 200 profiles extending base/linux parse it once. Cached
    documents are never mutated."""
    search = search if search is not None else pack_search_path()
    walk = _walk if _walk is not None else _Walk()
    walk.files.add(os.path.realpath(str(path)))
    doc, diags = load_file(path)
    if doc is None:
        return None, diags
    if not isinstance(doc.data, dict):
        return doc, diags
    refs = doc.data.get("extends")
    if refs is None:
        return doc, diags
    if isinstance(refs, str):
        refs_list, ref_paths = [refs], [("extends",)]
    elif isinstance(refs, list):
        refs_list, ref_paths = refs, [("extends", i) for i in range(len(refs))]
    else:
        return doc, diags + [doc.diag(("extends",), "`extends` takes a profile name or a list of them", code="extends")]
    me = os.path.realpath(str(path))
    stack = _stack + (me,)
    merged: Document | None = None
    for index, (ref, ref_path) in enumerate(zip(refs_list, ref_paths)):
        if index == MAX_EXTENDS_ENTRIES:
            diags.append(
                doc.diag(
                    ref_path,
                    f"`extends` names {len(refs_list)} bases; a profile extends at most {MAX_EXTENDS_ENTRIES} "
                    "(put shared settings in one base that the others extend)",
                    code="extends",
                )
            )
            break
        if not isinstance(ref, str):
            diags.append(
                doc.diag(
                    ref_path,
                    "each `extends` entry is a profile name such as `base/linux` or a relative file path",
                    code="extends",
                )
            )
            continue
        if len(stack) > MAX_EXTENDS_DEPTH:
            diags.append(
                doc.diag(
                    ref_path,
                    f"`extends` is nested more than {MAX_EXTENDS_DEPTH} levels deep "
                    f"({Path(stack[0]).name} -> ... -> {Path(me).name} -> {ref})",
                    code="extends-depth",
                )
            )
            break  # once per file: every other entry here is as deep
        found = resolve_base(ref, Path(str(path)).parent, search)
        if found is None:
            where = ", ".join(str(p) for p in search)
            diags.append(
                doc.diag(
                    ref_path,
                    f"cannot find base profile '{ref}' (looked next to this file and in {where})",
                    code="extends-missing",
                )
            )
            continue
        real = os.path.realpath(found)
        if real in stack:
            chain = " -> ".join(Path(p).name for p in stack[stack.index(real) :]) + f" -> {found.name}"
            diags.append(doc.diag(ref_path, f"`extends` cycle: {chain}", code="extends-cycle"))
            continue
        too_many = doc.diag(
            ref_path,
            f"`extends` brings in more than {MAX_EXTENDS_FILES} files; a profile is composed from at most that many",
            code="extends-files",
        )
        key = _cache_key(found)
        if key is not None and key in walk.memo:
            base, base_diags = walk.memo[key]
        elif cache is not None and key is not None and key in cache:
            base, base_diags = cache[key]
            walk.memo[key] = (base, base_diags)
            walk.files.update(os.path.realpath(s) for s in (base.sources if base is not None else [str(found)]))
            if len(walk.files) > MAX_EXTENDS_FILES:
                diags.append(too_many)
                break
        elif real not in walk.files and len(walk.files) >= MAX_EXTENDS_FILES:
            diags.append(too_many)
            break
        else:
            base, base_diags = compose(found, search=search, _stack=stack, cache=cache, _walk=walk)
            if key is not None:
                walk.memo[key] = (base, base_diags)
                if cache is not None and not any(d.code in _UNSHAREABLE for d in base_diags):
                    cache[key] = (base, base_diags)
        diags += base_diags
        if any(d.code == "extends-files" for d in base_diags):
            break  # reported once, where the cap was crossed
        if base is None:
            continue
        if merged is None:
            merged = _copy(base)
        else:
            merge_into(merged, base)
    diags = list(dict.fromkeys(diags))  # a base named twice reports its findings once
    own = _copy(doc)
    if isinstance(own.data, dict):
        own.data.pop("extends", None)
    if merged is None:
        merged = own
    else:
        merge_into(merged, own)
        merged.file = doc.file
        merged.positions[()] = doc.positions[()]
    merged.sources = [doc.file] + [s for s in merged.sources if s != doc.file]
    return merged, diags
