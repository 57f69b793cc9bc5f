"""Where each key of a TOML file is written: line numbers for config error messages.

``tomllib`` keeps no positions, so this reads the text again, line by line: table headers
(``[a.b]``, ``[[a]]``), ``key = value`` lines (dotted and quoted keys too) and the keys of
inline tables on one line. Good enough to point at a line; an unknown key gives None.

Example::

    lines = key_lines('[stores.dev.config]\\ndatabse = "x"\\n')
    lines[("stores", "dev", "config", "databse")]  # 2
"""

from __future__ import annotations

import re

Key = tuple[str, ...]

_BARE = r"[A-Za-z0-9_-]+"
_QUOTED = r'"(?:[^"\\]|\\.)*"|\'[^\']*\''
_PART = rf"(?:{_BARE}|{_QUOTED})"
_DOTTED = rf"{_PART}(?:\s*\.\s*{_PART})*"
_HEADER = re.compile(rf"^\s*\[\[?\s*({_DOTTED})\s*\]\]?\s*(?:#.*)?$")
_ASSIGN = re.compile(rf"^\s*({_DOTTED})\s*=(.*)$")
_INLINE_KEY = re.compile(rf"[{{,]\s*({_DOTTED})\s*=")


def _parts(dotted: str) -> Key:
    found = re.findall(_PART, dotted)
    return tuple(p[1:-1] if p[:1] in "\"'" else p for p in found)


def key_lines(text: str) -> dict[Key, int]:
    """Each key path (and table path) with the 1-based line it first appears on."""
    lines: dict[Key, int] = {}
    table: Key = ()
    multiline: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        if multiline is not None:  # inside a multi-line string: no keys here
            if line.count(multiline) % 2 == 1:
                multiline = None
            continue
        header = _HEADER.match(line)
        if header:
            table = _parts(header[1])
            for end in range(1, len(table) + 1):
                lines.setdefault(table[:end], number)
            continue
        assign = _ASSIGN.match(line)
        if not assign:
            continue
        key = table + _parts(assign[1])
        for end in range(len(table) + 1, len(key) + 1):
            lines.setdefault(key[:end], number)
        value = assign[2]
        for quote in ('"""', "'''"):
            if value.count(quote) % 2 == 1:
                multiline = quote
        if "{" in value:  # an inline table: its keys are on this line too
            for inner in _INLINE_KEY.findall(value):
                lines.setdefault(key + _parts(inner), number)
    return lines
