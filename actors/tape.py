"""Tapes: recorded ticks on disk, as JSON lines or Parquet; the recorder writes them, replay reads them.

Rules of this module:
1. A tape row is every field of ``Tick`` but ``sent_ns`` (``TAPE_FIELDS``). Prices, volumes and turnovers
   stay the vendor's exact decimal strings, in JSON and in Parquet alike: a Parquet decimal column has one
   scale, and the vendor's differ per code (2 places for BTCUSDT, 5 for EURUSD, 8 for 1000PEPEUSDT), so a
   decimal type would have to round or pad. ``Decimal(tick.price)`` reads them exactly.
2. JSON lines: one object per line, appended to one file; readable by ``pandas.read_json(lines=True)``,
   polars and DuckDB.
3. Parquet: the path names a stem, ``ticks.parquet`` -> files ``ticks-YYYY-MM-DD-NNNN.parquet`` (UTC day,
   then a running number), which sort in recording order. Every flush writes the rows since the last one
   as a complete Parquet part under ``ticks.parquet.parts/``; at a new UTC day, past ``max_file_mb`` and on
   stop the parts are joined into the next file and removed. A SIGKILL loses at most the rows of one flush
   interval: the parts it leaves are joined by the next start, and read by ``read_tape`` meanwhile.
4. A corrupt or truncated tape is reported as ``TapeError`` naming the file and the row (``on_error``);
   reading goes on with the next row (JSON lines) or the next readable part of the file (Parquet).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib
import itertools
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Final

import msgspec

from actors.core.errors import ConfigError, FeedError
from actors.core.normalise import Tick

TAPE_FIELDS: Final = tuple(f.name for f in msgspec.structs.fields(Tick)[:-1])
FORMATS: Final = ("jsonl", "parquet")
PARQUET_HINT: Final = "format 'parquet' needs pyarrow: pip install 'tickvisor[parquet]' (or pyarrow)"
_BATCH: Final = 4096  # rows a reader yields at once


class TapeRow(msgspec.Struct, frozen=True, gc=False):
    """One tape row as the JSON-lines format writes it: a JSON object of ``TAPE_FIELDS``."""

    code: str
    seq: int
    tick_time: int
    price: str
    volume: str
    turnover: str
    trade_direction: int
    received_ns: int = 0


class TapeError(FeedError):
    """A tape row or file could not be read. ``row`` counts from 1; 0 when the whole file is unreadable."""

    def __init__(self, path: str, row: int, reason: str) -> None:
        self.path = path
        self.row = row
        self.reason = reason
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.path}, row {self.row}" if self.row else self.path
        return f"tape {where}: {self.reason}"

    def __reduce__(self) -> tuple[type, tuple[str, int, str]]:
        return (type(self), (self.path, self.row, self.reason))


def pyarrow() -> tuple[Any, Any]:
    """``(pyarrow, pyarrow.parquet)``.

    Raises:
        ConfigError: pyarrow is not installed (naming the install command).

    """
    try:
        return importlib.import_module("pyarrow"), importlib.import_module("pyarrow.parquet")
    except ImportError as exc:
        raise ConfigError("strategies.format", PARQUET_HINT) from exc


# --- writing ----------------------------------------------------------------------------------------------


class JsonlWriter:
    """Appends rows to one JSON-lines file."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("ab")
        self._encode = msgspec.json.Encoder().encode

    def write(self, ticks: Iterable[Tick]) -> None:
        """Buffer ``ticks`` (written out by ``flush``)."""
        encode = self._encode
        self._file.write(b"".join(encode(TapeRow(*msgspec.structs.astuple(t)[:-1])) + b"\n" for t in ticks))

    def flush(self, now: float) -> None:  # noqa: ARG002 - the writers share one signature
        """Push what was written to the file."""
        self._file.flush()

    def close(self, now: float) -> None:
        """Flush and close."""
        self.flush(now)
        self._file.close()


class ParquetWriter:
    """Writes rows as Parquet parts, joined into day files (rule 3)."""

    def __init__(self, path: Path, *, max_file_mb: float = 256.0, now: float) -> None:
        self._pa, self._pq = pyarrow()
        self.path = path
        self.parts = part_dir(path)
        self.parts.mkdir(parents=True, exist_ok=True)
        self._max_bytes = max_file_mb * 1e6
        self._schema = self._pa.schema(
            [
                ("code", self._pa.string()),
                ("seq", self._pa.uint64()),
                ("tick_time", self._pa.int64()),
                ("price", self._pa.string()),
                ("volume", self._pa.string()),
                ("turnover", self._pa.string()),
                ("trade_direction", self._pa.int8()),
                ("received_ns", self._pa.int64()),
            ]
        )
        self._rows: list[tuple[Any, ...]] = []
        self._part_no = 0
        self._day = _day(now)
        self.join()  # parts a killed recorder left behind

    def write(self, ticks: Iterable[Tick]) -> None:
        """Buffer ``ticks`` (written out by ``flush``)."""
        self._rows += [msgspec.structs.astuple(t)[:-1] for t in ticks]

    def flush(self, now: float) -> None:
        """Write the buffered rows as one complete part; join the parts at a new day or past the size."""
        day = _day(now)
        if day != self._day:
            self.join()
            self._day = day
        if self._rows:
            columns = list(zip(*self._rows, strict=True))
            table = self._pa.Table.from_arrays(
                [self._pa.array(col, type=f.type) for col, f in zip(columns, self._schema, strict=True)],
                schema=self._schema,
            )
            self._rows = []
            self._part_no += 1
            name = self.parts / f"{self._day}-{self._part_no:09d}.parquet"
            tmp = name.with_suffix(".tmp")
            self._pq.write_table(table, tmp)
            tmp.replace(name)  # a part is whole or absent
        if sum(p.stat().st_size for p in self.parts.glob("*.parquet")) >= self._max_bytes:
            self.join()

    def join(self) -> Path | None:
        """Join every part into the next tape file of the parts' first day and remove them."""
        parts = sorted(self.parts.glob("*.parquet"))
        if not parts:
            return None
        day = parts[0].name[:10]
        out = next_file(self.path, day)
        tmp = out.with_suffix(".tmp")
        with self._pq.ParquetWriter(tmp, self._schema) as writer:
            tables = []
            for part in parts:
                try:
                    tables.append(self._pq.read_table(part, schema=self._schema))
                except (OSError, ValueError):  # pyarrow's ArrowInvalid is a ValueError
                    continue  # a part is written whole then renamed: only a foreign file lands here
            if tables:
                writer.write_table(self._pa.concat_tables(tables), row_group_size=131_072)
        tmp.replace(out)
        for part in parts:
            part.unlink()
        self._part_no = 0
        return out

    def close(self, now: float) -> None:
        """Write what is buffered and join the parts."""
        self.flush(now)
        self.join()
        with contextlib.suppress(OSError):  # not empty: a foreign file; it stays
            self.parts.rmdir()


def part_dir(path: Path) -> Path:
    """Where the Parquet parts of stem ``path`` go."""
    return path.with_name(path.name + ".parts")


def next_file(path: Path, day: str) -> Path:
    """The next free ``<stem>-<day>-NNNN<suffix>`` beside ``path``."""
    taken = sorted(path.parent.glob(f"{path.stem}-{day}-*{path.suffix}"))
    n = int(taken[-1].stem.rsplit("-", 1)[1]) + 1 if taken else 1
    return path.with_name(f"{path.stem}-{day}-{n:04d}{path.suffix}")


def _day(now: float) -> str:
    return dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y-%m-%d")


def open_writer(
    path: Path, fmt: str, *, now: float, max_file_mb: float = 256.0
) -> JsonlWriter | ParquetWriter:
    """A writer of ``fmt`` ("jsonl" or "parquet") at ``path``.

    Raises:
        ConfigError: an unknown format, or parquet without pyarrow.

    """
    if fmt == "jsonl":
        return JsonlWriter(path)
    if fmt == "parquet":
        return ParquetWriter(path, max_file_mb=max_file_mb, now=now)
    raise ConfigError("strategies.format", f"unknown tape format {fmt!r}; use one of {', '.join(FORMATS)}")


# --- reading ----------------------------------------------------------------------------------------------

OnError = Callable[[TapeError], None]


def _raise(error: TapeError) -> None:
    raise error


def tape_files(path: Path) -> list[Path]:
    """The files of the tape at ``path``: a file; a Parquet stem's day files then its parts; a directory's
    ``*.jsonl`` and ``*.parquet`` files, in name order.

    Raises:
        TapeError: nothing is there.

    """
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".jsonl", ".parquet") and p.is_file())
    elif path.is_file():
        files = [path]
    else:
        files = sorted(path.parent.glob(f"{path.stem}-*{path.suffix}"))
        files += sorted(part_dir(path).glob("*.parquet"))
    if not files:
        raise TapeError(str(path), 0, "no such tape (a .jsonl file, a .parquet file or stem, or a directory)")
    return files


def read_tape(path: Path | str, *, on_error: OnError = _raise) -> Iterator[list[Tick]]:
    """The ticks of the tape at ``path`` in recorded order, in lists of up to a few thousand.

    Args:
        path: see ``tape_files``.
        on_error: called with each ``TapeError``; the default raises it. Reading goes on after it returns.

    """
    for file in tape_files(Path(path)):
        if file.suffix == ".parquet":
            yield from _read_parquet(file, on_error)
        else:
            yield from _read_jsonl(file, on_error)


def _read_jsonl(file: Path, on_error: OnError) -> Iterator[list[Tick]]:
    decode_many = msgspec.json.Decoder(list[TapeRow]).decode
    decode_one = msgspec.json.Decoder(TapeRow).decode
    row = 0
    with file.open("rb") as f:
        while True:
            lines = list(itertools.islice(f, _BATCH))
            if not lines:
                return
            body = [ln for ln in lines if ln.strip()]
            try:
                rows = decode_many(b"[" + b",".join(body) + b"]")
            except (msgspec.DecodeError, msgspec.ValidationError):
                rows = []
                for i, line in enumerate(lines, row + 1):
                    if not line.strip():
                        continue
                    try:
                        rows.append(decode_one(line))
                    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                        cut = "" if line.endswith(b"\n") else " (the file ends mid-row: truncated)"
                        on_error(TapeError(str(file), i, f"{exc}{cut}"))
            row += len(lines)
            yield [Tick(*msgspec.structs.astuple(r)) for r in rows]


def _read_parquet(file: Path, on_error: OnError) -> Iterator[list[Tick]]:
    _, pq = pyarrow()
    try:
        pf = pq.ParquetFile(file)
    except (OSError, ValueError) as exc:
        on_error(TapeError(str(file), 0, f"not a readable Parquet file ({exc})"))
        return
    missing = [name for name in TAPE_FIELDS if name not in pf.schema_arrow.names]
    if missing:
        on_error(TapeError(str(file), 0, f"not a tickvisor tape: no column {', '.join(missing)}"))
        return
    first = 1
    for group in range(pf.num_row_groups):
        rows = pf.metadata.row_group(group).num_rows
        try:
            table = pf.read_row_group(group, columns=list(TAPE_FIELDS))
        except (OSError, ValueError) as exc:
            on_error(TapeError(str(file), first, f"rows {first}-{first + rows - 1} unreadable ({exc})"))
            first += rows
            continue
        for batch in table.to_batches(_BATCH):
            cols = [batch.column(i).to_pylist() for i in range(len(TAPE_FIELDS))]
            yield list(itertools.starmap(Tick, zip(*cols, strict=True)))
        first += rows
