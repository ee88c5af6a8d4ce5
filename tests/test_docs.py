"""The documentation matches the code: docs/ and README.md, read as text, against the schema and the parsers.

* Every key of the ``Settings`` schema (``actors/core/settings.py``, walked through msgspec, nested tables
  included) has a row in its table of docs/configuration.md, with its default in the second column; the
  per-market session defaults are the ones ``actors.core.sessions`` applies.
* Every option of every ``tickvisor`` command (the argparse parser of ``actors/cli.py``, walked, and the
  simulator's own parser) appears in the docs.
* README.md stays under 400 lines.
* Every fenced ``python``, ``toml``, ``bash`` or ``sh`` block in README.md and docs/ is either run by a test
  or marked as a sketch. The convention: the line before the block is an HTML comment that names how it is
  covered. ``<!-- sketch -->``: illustration only, not run. ``<!-- user-project: PATH -->``: a file of the
  first project, which tests/test_replay.py writes out and runs. ``<!-- cluster-recipe ... -->``: the
  cluster recipe, which tests/test_job.py runs. ``<!-- config-fragment -->``: a piece of a configuration,
  which this module validates with ``parse_settings``. Indented blocks are transcripts and command lines
  shown for reading; they are not checked.

No Ray, no network, no build of the site (``scripts/test`` builds it, strictly, as a gate).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import msgspec
import pytest

from actors.cli import build_parser
from actors.core import sessions
from actors.core.settings import Settings, parse_settings
from actors.sim.cli import _parser as simulator_parser
from tests.config_text import ENDPOINTS

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"
CONFIGURATION = DOCS / "configuration.md"

# A fenced block, with the comment line right before it when there is one.
FENCE = re.compile(
    r"(?:^(<!--[^\n]*-->)[ \t]*\n)?^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL
)
CHECKED_LANGUAGES = {"python", "toml", "bash", "sh"}
COVERED = re.compile(
    r"<!-- (sketch|user-project: \S+|cluster-recipe\b[^>]*|user-project-recipe\b[^>]*|config-fragment) -->"
)


def pages() -> dict[Path, str]:
    """README.md and every Markdown page of the site."""
    found = {README: README.read_text(encoding="utf-8")}
    found.update({p: p.read_text(encoding="utf-8") for p in sorted(DOCS.rglob("*.md"))})
    return found


def docs_text() -> str:
    return "\n".join(pages().values())


# --- the configuration reference ------------------------------------------------------------------------


def sections(text: str) -> dict[str, str]:
    """Heading line -> the text under it, for every ``## `` heading of a page."""
    parts = re.split(r"^## (.+)$", text, flags=re.MULTILINE)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)}


def key_rows(section: str) -> dict[str, list[str]]:
    """The rows of the Markdown tables of a section whose first cell is one `key`: key -> the cells."""
    rows: dict[str, list[str]] = {}
    for line in section.splitlines():
        if not line.startswith("|"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        name = re.fullmatch(r"`(\w+)`", cells[0])
        if name and len(cells) >= 2:
            rows[name.group(1)] = cells
    return rows


def struct_type(annotation: Any) -> type[msgspec.Struct] | None:
    """The Struct a field holds: itself, or the values of a dict or a tuple of them (a table of tables)."""
    if isinstance(annotation, msgspec.inspect.Metadata):  # Annotated[..., Meta(...)]
        annotation = annotation.type
    if isinstance(annotation, msgspec.inspect.StructType):
        return annotation.cls
    for attr in ("value_type", "item_type"):
        inner = getattr(annotation, attr, None)
        if isinstance(inner, msgspec.inspect.StructType):
            return inner.cls
    return None


def tables() -> dict[str, type[msgspec.Struct]]:
    """The TOML table name as the docs write it -> its Struct, walked from ``Settings``."""
    spelled = {"feed": "[feed]", "restart": "[restart]", "endpoints": "[endpoints.<name>]",
               "simulator": "[simulator]", "strategies": "[[strategies]]"}  # fmt: skip
    found: dict[str, type[msgspec.Struct]] = {}
    info = msgspec.inspect.type_info(Settings)
    assert isinstance(info, msgspec.inspect.StructType)
    for field in info.fields:
        inner = struct_type(field.type)
        assert inner is not None, f"Settings.{field.name} is not a table: document it and teach this test"
        assert field.name in spelled, f"a new table [{field.name}]: give it a section in {CONFIGURATION.name}"
        found[spelled[field.name]] = inner
        # A table inside a table would be walked here too; none has one today.
        nested = [f.name for f in msgspec.inspect.type_info(inner).fields if struct_type(f.type)]  # type: ignore[attr-defined]
        assert not nested, f"{field.name} has nested tables {nested}: walk them"
    return found


def shown_default(field: msgspec.inspect.Field) -> str | None:
    """How the reference writes a field's default; None: the default is described in words (inherited)."""
    if field.required:
        return "required"
    value = field.default_factory() if field.default is msgspec.NODEFAULT else field.default
    if value is None:
        return None
    if isinstance(value, tuple):
        value = list(value)
    # TOML's spelling: true/false, "text", [...], {...}; numbers as Python writes them.
    text = msgspec.json.encode(value).decode() if isinstance(value, (bool, str, list, dict)) else repr(value)
    return f"`{text}`"


def test_every_settings_key_is_in_the_configuration_reference_with_its_default() -> None:
    by_heading = sections(CONFIGURATION.read_text(encoding="utf-8"))
    checked = 0
    for table, struct in tables().items():
        headings = [h for h in by_heading if f"`{table}`" in h]
        assert len(headings) == 1, f"{CONFIGURATION.name} needs one section headed `{table}`: {headings}"
        rows = key_rows(by_heading[headings[0]])
        info = msgspec.inspect.type_info(struct)
        assert isinstance(info, msgspec.inspect.StructType)
        for field in info.fields:
            assert field.name in rows, f"{table} {field.name} has no row in {CONFIGURATION.name}"
            default = rows[field.name][1]
            want = shown_default(field)
            if want is None:
                assert default, f"{table} {field.name}: say what its default is"
            else:
                assert default.startswith(want), (
                    f"{table} {field.name}: default {default!r}, the code: {want}"
                )
            checked += 1
        extra = set(rows) - {f.name for f in info.fields}
        assert not extra, f"{CONFIGURATION.name} documents keys {table} does not have: {sorted(extra)}"
    assert checked >= 35, checked


def test_the_session_defaults_per_market_are_the_ones_applied() -> None:
    section = sections(CONFIGURATION.read_text(encoding="utf-8"))["Trading sessions: `[feed.sessions]`"]
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in section.splitlines()]
    table = {cells[0]: cells[1] for cells in rows if len(cells) == 2}
    for pattern, session in sessions.DEFAULTS.items():
        [row] = [codes for codes in table if f"`{pattern}`" in codes]
        assert table[row].startswith(f"`{session}`"), (pattern, table[row])
    [crypto] = [codes for codes in table if codes.startswith("crypto")]
    assert table[crypto] == "`always`"
    assert set(re.findall(r"[A-Z]{3,5}", crypto)) == set(sessions._CRYPTO_QUOTES), crypto
    assert sessions.default_session("EURUSD") == sessions.FX
    assert any(cells == "`fx`" for cells in table.values())


# --- the command line -----------------------------------------------------------------------------------


def options_of(parser: argparse.ArgumentParser, command: str = "tickvisor") -> dict[str, str]:
    """Every long option of a parser and its subcommands' parsers -> the command that takes it."""
    found: dict[str, str] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.update(options_of(sub, f"{command} {name}"))
        for option in action.option_strings:
            if option.startswith("--") and option != "--help":
                found.setdefault(option, command)
    return found


def test_every_command_line_option_is_in_the_docs() -> None:
    options = options_of(build_parser())
    options.update(dict.fromkeys(options_of(simulator_parser()), "tickvisor simulator"))
    expected = {"--config", "--metrics-port", "--log-format", "--json", "--book", "--speed", "--tick-rate"}
    assert expected <= set(options)
    text = docs_text()
    missing = {o: c for o, c in options.items() if not re.search(rf"(?<![\w-]){re.escape(o)}(?![\w-])", text)}
    assert not missing, f"options not in the docs: {missing}"


# --- README and code blocks -----------------------------------------------------------------------------


def test_the_readme_stays_under_400_lines() -> None:
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= 400, f"README.md has {lines} lines: move the detail to docs/"


def test_every_runnable_block_is_run_by_a_test_or_marked_as_a_sketch() -> None:
    loose: list[str] = []
    blocks = 0
    for path, text in pages().items():
        for match in FENCE.finditer(text):
            comment, language = match.group(1) or "", match.group(2)
            if language not in CHECKED_LANGUAGES:
                continue
            blocks += 1
            if not COVERED.fullmatch(comment):
                line = text[: match.start(2)].count("\n") + 1
                loose.append(f"{path.relative_to(ROOT)}:{line}")
    assert blocks >= 5, blocks
    assert not loose, f"blocks neither run by a test nor marked <!-- sketch --> (see this module): {loose}"


def config_fragments() -> list[tuple[str, str]]:
    return [
        (f"{path.relative_to(ROOT)}:{text[: m.start()].count(chr(10)) + 1}", m.group(3))
        for path, text in pages().items()
        for m in FENCE.finditer(text)
        if (m.group(1) or "") == "<!-- config-fragment -->"
    ]


@pytest.mark.parametrize(("where", "fragment"), config_fragments())
def test_a_configuration_fragment_is_valid_as_written(where: str, fragment: str) -> None:
    settings = parse_settings(ENDPOINTS + "\n" + fragment, source=where)  # a fragment joins both endpoints
    assert isinstance(settings, Settings)


def test_the_marked_blocks_are_the_ones_the_other_tests_read() -> None:
    text = docs_text()
    assert len(re.findall(r"<!-- user-project: ", README.read_text(encoding="utf-8"))) == 3
    assert len(re.findall(r"<!-- cluster-recipe\b", (DOCS / "scaling.md").read_text(encoding="utf-8"))) == 1
    assert text.count("<!-- config-fragment -->") >= 1


def test_the_architecture_tree_names_every_module() -> None:
    tree = (DOCS / "architecture.md").read_text(encoding="utf-8")
    modules = sorted(p.name for p in (ROOT / "actors").glob("*.py")) + sorted(
        p.name for p in (ROOT / "actors" / "core").glob("*.py") if p.name != "__init__.py"
    )
    missing = [
        name for name in modules if name != "__init__.py" and not re.search(rf"\b{re.escape(name)}\b", tree)
    ]
    assert not missing, f"docs/architecture.md's tree leaves out {missing}"


def test_the_readme_shows_the_figures_of_the_performance_page() -> None:
    def rows(text: str) -> dict[str, str]:
        return {
            line.split("|")[1].strip(): line
            for line in text.splitlines()
            if line.startswith("| ") and "ticks" in line.split("|")[1]
        }

    readme = rows(README.read_text(encoding="utf-8").split("## Performance", 1)[1])
    page = rows((DOCS / "performance.md").read_text(encoding="utf-8"))
    assert readme, "README.md has no figures under Performance"
    for figure, line in readme.items():
        assert page.get(figure) == line, f"README's {figure!r} differs from docs/performance.md"
