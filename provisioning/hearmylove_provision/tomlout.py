"""A small TOML writer for the files provisioning generates (identity bundle, config.toml).

The standard library reads TOML but does not write it; these files hold only strings,
numbers, booleans, lists of those and tables, so a writer this size is enough and keeps
the speaker free of another dependency. JSON string escapes are valid TOML escapes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(key: str) -> str:
    return key if _BARE.match(key) else json.dumps(key, ensure_ascii=False)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | PurePath):
        text = str(value)
        if any(ord(ch) < 0x20 and ch not in "\t\n" or ord(ch) == 0x7F for ch in text):
            raise ValueError(f"{text!r} holds a control character that this writer does not escape")
        return json.dumps(text, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} {value!r} as TOML")


def _table(data: Mapping[str, Any], prefix: tuple[str, ...], out: list[str]) -> None:
    scalars = {k: v for k, v in data.items() if v is not None and not isinstance(v, Mapping)}
    tables = {k: v for k, v in data.items() if isinstance(v, Mapping)}
    if prefix and (scalars or not tables):
        out.append("")
        out.append("[" + ".".join(_key(k) for k in prefix) + "]")
    out.extend(f"{_key(k)} = {_value(v)}" for k, v in scalars.items())
    for key, table in tables.items():
        _table(table, (*prefix, key), out)


def dumps(data: Mapping[str, Any], header: str = "") -> str:
    """TOML text for `data`; None values are left out (TOML has no null)."""
    out = [f"# {line}".rstrip() for line in header.splitlines()]
    _table(data, (), out)
    return "\n".join(out).lstrip("\n") + "\n"
