"""msgspec's decode errors about a TOML config, said as ``(key, reason)``. Pure: no I/O, no clock.

Rules of this module:

1. The key is the dotted path of the bad key, as the user writes it (``feed.heartbeat_interval_s``,
   ``strategies[0].symbols[1]``, ``endpoints.stock.url``), never msgspec's ``$``-path.
2. The reason says what is expected: the key's ``msgspec.Meta`` description from the schema, the known
   keys of a table (and the closest one) for an unknown key, the line and column for bad TOML.
3. The schema is a parameter (any Struct type), so this module knows no config of its own; a table
   whose keys are names (``[endpoints.<name>]``) can have its names checked by the caller's hook.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from typing import Any, Final

import msgspec
import msgspec.inspect as msgspec_inspect

#: ``(table, name) -> reason`` when ``name`` may not be a key of the dict-table ``table``, else None.
NameCheck = Callable[[str, str], "str | None"]

_AT_RE: Final = re.compile(r"(?s)(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?")
_SEGMENT_RE: Final = re.compile(r"\.([^.\[\]]+)|\[(\d+|\.\.\.)\]")


def _any_name(_table: str, _name: str) -> str | None:
    return None


def explain(error: str, text: str, schema: type[Any], name_check: NameCheck = _any_name) -> tuple[str, str]:
    """``(key, reason)`` for one of msgspec's validation messages about ``text``.

    Args:
        error: ``str()`` of the ``msgspec.ValidationError`` that decoding ``text`` as ``schema`` raised.
        text: the TOML text.
        schema: the Struct type ``text`` was decoded as.
        name_check: says why a name may not be a key of a dict-table, or None when it may.

    """
    message, path = _split(error)
    if "[...]" in path:
        entry = _failing_entry(text, path, schema, name_check)
        if entry is not None:
            return entry
    key = path.lstrip(".")
    unknown = re.fullmatch(r"Object contains unknown field `(.*)`", message)
    if unknown:
        name = unknown[1]
        known = _known_keys(schema, key)
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return _join(key, name), f"unknown key; known keys are: {', '.join(known)}{hint}"
    missing = re.fullmatch(r"Object missing required field `(.*)`", message)
    if missing:
        full = _join(key, missing[1])
        description = _description(schema, full)
        return full, "required key is missing" + (f"; {missing[1]} is {description}" if description else "")
    reason = message.replace("`object`", "`table`")
    reason = reason[:1].lower() + reason[1:]
    description = _description(schema, key)
    name = key.rpartition(".")[2]
    return key, reason + (f"; {name} is {description}" if description else "")


def syntax_reason(message: str, source: str) -> str:
    """The reason for a ``msgspec.DecodeError`` (malformed TOML) in ``source``, with its line and column."""
    # tomllib says e.g. "Invalid value (at line 2, column 5)".
    match = re.fullmatch(r"(?s)(.*?)\s*\((at line \d+, column \d+|at end of document)\)", message)
    if match is None:
        return f"invalid TOML in {source}: {message}"
    what, at = match.groups()
    return f"invalid TOML in {source} {at}: {what[:1].lower()}{what[1:]}"


_SCHEMAS: dict[type[Any], msgspec_inspect.Type] = {}


def _schema(schema: type[Any]) -> msgspec_inspect.Type:
    info = _SCHEMAS.get(schema)
    if info is None:
        info = _SCHEMAS[schema] = msgspec_inspect.type_info(schema)
    return info


def _unwrap(node: msgspec_inspect.Type) -> msgspec_inspect.Type:
    while True:
        if isinstance(node, msgspec_inspect.Metadata):
            node = node.type
        elif isinstance(node, msgspec_inspect.UnionType):
            rest = [t for t in node.types if not isinstance(t, msgspec_inspect.NoneType)]
            if len(rest) != 1:
                return node
            node = rest[0]
        else:
            return node


def _node_at(schema: type[Any], key: str) -> msgspec_inspect.Type | None:
    """The schema node of a dotted key like ``strategies[0].name`` (dict keys are any name)."""
    node = _schema(schema)
    for name, index in _SEGMENT_RE.findall("." + key if key else ""):
        node = _unwrap(node)
        if name and isinstance(node, msgspec_inspect.StructType):
            found = [field.type for field in node.fields if field.encode_name == name]
            if not found:
                return None
            node = found[0]
        elif isinstance(node, msgspec_inspect.DictType):
            node = node.value_type
        elif index and isinstance(node, msgspec_inspect.ListType | msgspec_inspect.VarTupleType):
            node = node.item_type
        else:
            return None
    return node


def _description(schema: type[Any], key: str) -> str:
    node = _node_at(schema, key)
    while isinstance(node, msgspec_inspect.Metadata):
        description = (node.extra_json_schema or {}).get("description")
        if description:
            return str(description)
        node = node.type
    return ""


def _known_keys(schema: type[Any], key: str) -> list[str]:
    node = _node_at(schema, key)
    if node is None:
        return []
    node = _unwrap(node)
    if isinstance(node, msgspec_inspect.StructType):
        return [field.encode_name for field in node.fields]
    return []


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


def _split(message: str) -> tuple[str, str]:
    match = _AT_RE.fullmatch(message)
    assert match is not None  # the pattern matches any text
    return match["message"], match["path"] or ""


def _failing_entry(text: str, path: str, schema: type[Any], name_check: NameCheck) -> tuple[str, str] | None:
    """The failing entry of a dict-table, found by checking each alone (msgspec writes its path as
    ``[...]``); a name ``name_check`` refuses comes first, as the first thing wrong with its entry.
    """
    table = path.partition("[...]")[0].lstrip(".")
    node = _node_at(schema, table)
    if node is None or not table or "[" in table:
        return None
    node = _unwrap(node)
    value = _unwrap(node.value_type) if isinstance(node, msgspec_inspect.DictType) else None
    if not isinstance(value, msgspec_inspect.StructType):
        return None
    entries: object = msgspec.toml.decode(text)
    for part in table.split("."):
        entries = entries.get(part) if isinstance(entries, dict) else None
    if not isinstance(entries, dict):
        return None
    for name, entry in entries.items():
        refused = name_check(table, name)
        if refused is not None:
            return f"{table}.{name}", refused
        try:
            msgspec.convert(entry, type=value.cls)
        except msgspec.ValidationError as exc:
            message, inner = _split(str(exc))
            return explain(f"{message} - at `$.{table}.{name}{inner}`", text, schema, name_check)
    return None
