"""Tapes on disk: exact round trips in both formats, Parquet parts and rotation, SIGKILL leftovers,
and corrupt or truncated tapes reported by file and row while the rest is read.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import msgspec
import pytest

from actors.builtin import Recorder
from actors.core.errors import ConfigError
from actors.core.normalise import Tick
from actors.tape import JsonlWriter, ParquetWriter, TapeError, open_writer, part_dir, read_tape

DAY1 = dt.datetime(2026, 12, 7, 23, 59, tzinfo=dt.UTC).timestamp()
DAY2 = DAY1 + 120.0


def ticks(code: str, seqs: range, price: str = "189.2300") -> list[Tick]:
    return [Tick(code, s, 1_700_000_000_000 + s, price, "10", "1892.3", 1 + s % 2, 5 + s) for s in seqs]


MIXED = (
    ticks("AAPL.US", range(1, 4))
    + ticks("EURUSD", range(7, 9), "1.083500")
    + ticks("1000PEPEUSDT", range(1, 3), "0.00001234")
)


def read_all(path: Path, errors: list[TapeError] | None = None) -> list[Tick]:
    out: list[Tick] = []
    for batch in read_tape(path) if errors is None else read_tape(path, on_error=errors.append):
        out += batch
    return out


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_round_trip_keeps_every_field_and_the_exact_decimal_strings(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"ticks.{fmt}"
    writer = open_writer(path, fmt, now=DAY1)
    writer.write(MIXED[:4])
    writer.flush(DAY1)
    writer.write(MIXED[4:])
    writer.close(DAY1)
    back = read_all(path)
    assert back == MIXED  # sent_ns is not recorded: it is 0 in MIXED too
    assert [t.price for t in back][-2:] == ["0.00001234", "0.00001234"]


def test_parquet_files_are_one_per_day_named_to_sort_and_readable_by_pandas(tmp_path: Path) -> None:
    path = tmp_path / "ticks.parquet"
    writer = ParquetWriter(path, now=DAY1)
    writer.write(MIXED[:3])
    writer.flush(DAY1)
    writer.write(MIXED[3:])
    writer.flush(DAY2)  # a new UTC day: yesterday's parts become yesterday's file first
    writer.close(DAY2)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["ticks-2026-12-07-0001.parquet", "ticks-2026-12-08-0001.parquet"]
    assert read_all(path) == MIXED
    pandas = pytest.importorskip("pandas")
    frame = pandas.read_parquet(tmp_path / names[0])
    assert list(frame["price"]) == ["189.2300"] * 3
    assert list(frame.columns) == [
        "code",
        "seq",
        "tick_time",
        "price",
        "volume",
        "turnover",
        "trade_direction",
        "received_ns",
    ]


def test_parquet_rotates_past_max_file_mb(tmp_path: Path) -> None:
    path = tmp_path / "ticks.parquet"
    writer = ParquetWriter(path, now=DAY1, max_file_mb=0.000001)
    for i in range(3):
        writer.write(ticks("AAPL.US", range(i * 10, i * 10 + 10)))
        writer.flush(DAY1)
    writer.close(DAY1)
    files = sorted(tmp_path.glob("ticks-2026-12-07-*.parquet"))
    assert [f.name[-12:] for f in files] == ["0001.parquet", "0002.parquet", "0003.parquet"]
    assert [t.seq for t in read_all(path)] == list(range(30))


def test_a_killed_recorders_parts_are_read_then_joined_by_the_next_start(tmp_path: Path) -> None:
    path = tmp_path / "ticks.parquet"
    writer = ParquetWriter(path, now=DAY1)
    writer.write(MIXED[:3])
    writer.flush(DAY1)
    writer.write(MIXED[3:])  # never flushed: what a SIGKILL loses, at most one flush interval
    del writer
    assert len(list(part_dir(path).glob("*.parquet"))) == 1
    assert read_all(path) == MIXED[:3]  # the reader takes the parts in meanwhile
    again = ParquetWriter(path, now=DAY1)  # the next start joins them into a file
    assert not list(part_dir(path).glob("*.parquet"))
    again.write(MIXED[3:])
    again.close(DAY1)
    assert read_all(path) == MIXED
    assert not part_dir(path).exists()


def test_a_corrupt_line_and_a_truncated_last_line_are_named_and_the_rest_is_read(tmp_path: Path) -> None:
    path = tmp_path / "ticks.jsonl"
    writer = JsonlWriter(path)
    writer.write(MIXED[:2])
    writer.close(DAY1)
    good = path.read_bytes()
    extra = msgspec.json.encode(json.loads(good.splitlines()[0]) | {"seq": 99})
    path.write_bytes(good + b'{"code": "AAPL.US", "seq": "x"}\n' + extra + b"\n" + b'{"code": "AAP')
    errors: list[TapeError] = []
    back = read_all(path, errors)
    assert [t.seq for t in back] == [1, 2, 99]
    assert [(e.row, e.path) for e in errors] == [(3, str(path)), (5, str(path))]
    assert "truncated" in str(errors[1])
    assert str(errors[0]).startswith(f"tape {path}, row 3: ")
    with pytest.raises(TapeError, match="row 3"):
        read_all(path)  # the default: the first error stops the read


def test_an_unreadable_parquet_file_is_named_and_the_next_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "ticks.parquet"
    (tmp_path / "ticks-2026-12-06-0001.parquet").write_bytes(b"PAR1 this is not parquet")
    writer = ParquetWriter(path, now=DAY1)
    writer.write(MIXED)
    writer.close(DAY1)
    errors: list[TapeError] = []
    assert read_all(path, errors) == MIXED
    assert len(errors) == 1
    assert errors[0].row == 0
    assert "ticks-2026-12-06-0001.parquet: not a readable Parquet file" in str(errors[0])


def test_a_missing_tape_and_an_unknown_format_say_what_to_give(tmp_path: Path) -> None:
    with pytest.raises(TapeError, match="no such tape"):
        read_all(tmp_path / "nothing.jsonl")
    with pytest.raises(ConfigError, match="unknown tape format 'csv'; use one of jsonl, parquet"):
        open_writer(tmp_path / "t.csv", "csv", now=DAY1)


async def test_the_recorder_writes_parquet_and_refuses_a_bad_option(tmp_path: Path) -> None:
    encode = msgspec.msgpack.Encoder().encode
    rec = Recorder("tape", options={"path": str(tmp_path / "t.parquet"), "format": "parquet"})
    await rec.deliver("on_ticks", encode(MIXED))
    await rec.stop()
    assert read_all(tmp_path / "t.parquet") == MIXED
    with pytest.raises(ConfigError, match=r"strategies\.tape2\.format: unknown tape format 'xls'"):
        Recorder("tape2", options={"path": str(tmp_path / "x"), "format": "xls"})
    with pytest.raises(ConfigError, match=r"strategies\.tape3\.flush_every_s: must be > 0"):
        Recorder("tape3", options={"path": str(tmp_path / "y"), "flush_every_s": 0})


def test_a_tape_row_is_a_tick_without_sent_ns() -> None:
    from actors.tape import TAPE_FIELDS, TapeRow

    tick = [(f.name, f.type) for f in msgspec.structs.fields(Tick)]
    assert [(f.name, f.type) for f in msgspec.structs.fields(TapeRow)] == tick[:-1]
    assert tick[-1][0] == "sent_ns"
    assert tuple(name for name, _ in tick[:-1]) == TAPE_FIELDS
