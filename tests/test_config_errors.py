"""Tests of actors.core.config_errors: msgspec's errors about a TOML text, said as (dotted key, reason).

The schema here is a toy, to show the module knows no config of its own; tests/test_settings.py holds
the job's config to every bad key.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
import pytest

from actors.core.config_errors import explain, syntax_reason


class _Entry(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    size: Annotated[int, msgspec.Meta(ge=1, description="how many, >= 1")]


class _Toy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(description="what the toy is called")]
    entries: dict[str, _Entry] = {}
    items: tuple[_Entry, ...] = ()


def _names(table: str, name: str) -> str | None:
    return f"unknown entry {name!r}" if table == "entries" and name.startswith("x") else None


def _explain(text: str) -> tuple[str, str]:
    try:
        msgspec.toml.decode(text, type=_Toy)
    except msgspec.ValidationError as exc:
        return explain(str(exc), text, _Toy, _names)
    raise AssertionError("the text decoded")


def test_a_missing_key_is_named_with_its_description() -> None:
    assert _explain("") == ("name", "required key is missing; name is what the toy is called")


def test_an_unknown_key_lists_the_known_ones_and_the_closest() -> None:
    assert _explain('name = "a"\nnmae = 1\n') == (
        "nmae",
        "unknown key; known keys are: name, entries, items; did you mean 'name'?",
    )


def test_a_value_out_of_range_in_a_list_is_named_by_its_index() -> None:
    key, reason = _explain('name = "a"\n[[items]]\nsize = 1\n[[items]]\nsize = 0\n')
    assert key == "items[1].size"
    assert reason.startswith("expected `int` >= 1")
    assert reason.endswith("; size is how many, >= 1")


def test_an_entry_of_a_named_table_is_found_by_its_name() -> None:
    # msgspec says `$.entries[...].size`: the failing entry is found by checking each alone.
    assert _explain('name = "a"\n[entries.one]\nsize = 2\n[entries.two]\nsize = 0\n')[0] == "entries.two.size"


def test_the_callers_name_check_comes_first() -> None:
    text = 'name = "a"\n[entries.xray]\nsize = 0\n'
    assert _explain(text) == ("entries.xray", "unknown entry 'xray'")


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (
            "Invalid value (at line 2, column 5)",
            "invalid TOML in jobs/a.toml at line 2, column 5: invalid value",
        ),
        (
            "Unclosed table (at end of document)",
            "invalid TOML in jobs/a.toml at end of document: unclosed table",
        ),
        ("something else", "invalid TOML in jobs/a.toml: something else"),
    ],
)
def test_syntax_reason_names_the_source_and_the_place(message: str, reason: str) -> None:
    assert syntax_reason(message, "jobs/a.toml") == reason
