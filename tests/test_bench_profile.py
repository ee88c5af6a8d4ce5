"""scripts/bench/pyspy.py: py-spy's raw output aggregated per process (pure, no Ray, no py-spy)."""

from __future__ import annotations

from scripts.bench.pyspy import Profile, aggregate_raw, frame_label, table

RAW = """\
<module> (bench.py:5);run (/v/lib/python3.11/asyncio/base_events.py:608);_read (/w/actors/connection.py:210) 30
<module> (bench.py:5);run (/v/lib/python3.11/asyncio/base_events.py:608);decode_batch (/w/actors/core/wire.py:90) 50
<module> (bench.py:5);decode_batch (/w/actors/core/wire.py:91);_normalise_trade (/w/actors/core/wire.py:120) 15
<module> (bench.py:5);_read (/w/actors/connection.py:230) 5
<module> (bench.py:5);main_loop (/v/site-packages/ray/_private/worker.py:900) 40
<module> (bench.py:5);run_forever (/v/asyncio/base_events.py:1);select (/usr/lib/python3.11/selectors.py:468) 10
not a stack line
truncated line without count;
"""  # noqa: E501 - py-spy's collapsed stacks, one line per stack as it writes them


def test_self_samples_count_the_leaf_frame_per_file_and_function() -> None:
    total, counts = aggregate_raw(RAW)
    assert total == 150
    assert counts == {
        "_private/worker.py:main_loop": 40,
        "python3.11/selectors.py:select": 10,
        "core/wire.py:decode_batch": 50,
        "actors/connection.py:_read": 35,  # two lines of one function add up
        "core/wire.py:_normalise_trade": 15,
    }
    # the callers (run, <module>) have no self samples
    assert "asyncio/base_events.py:run" not in counts


def test_empty_and_garbage_give_nothing() -> None:
    assert aggregate_raw("") == (0, {})
    assert aggregate_raw("x y z\n\n 12\n") == (0, {})


def test_frame_label() -> None:
    assert frame_label("f (/a/b/c.py:12)") == "b/c.py:f"
    assert frame_label("<module> (<string>:5)") == "<string>:<module>"
    assert frame_label("weird frame") == "weird frame"


def test_table_lists_the_busiest_process_first_with_its_top_functions() -> None:
    _, counts = aggregate_raw(RAW)
    busy = Profile("decoder:0", 11, 150, counts)
    idle = Profile("registry", 12)
    broken = Profile("strategy:bench", 13, error="Permission denied")
    text = table([idle, broken, busy], seconds=2.0, top=2)
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert rows[0].startswith("| decoder:0 | 11 | 150 (50) | 50 | `core/wire.py:decode_batch` | 50 | 50 |")
    assert rows[1].startswith("|  |  |  |  | `actors/connection.py:_read` | 35 | 35 |")  # waits left out
    assert len([r for r in rows if "decoder:0" in r or r.startswith("|  |")]) == 2  # top=2
    assert any("registry" in r and "idle" in r for r in rows)
    assert any("strategy:bench" in r and "Permission denied" in r for r in rows)


def test_waits_in_c_code_are_counted_apart_and_left_out_of_the_top() -> None:
    raw = (
        "m (x.py:1);main_loop (/v/ray/_private/worker.py:900) 40\n"
        "m (x.py:1);select (/usr/lib/python3.11/selectors.py:468) 10\n"
        "m (x.py:1);wait (/usr/lib/python3.11/threading.py:320) 5\n"
        "m (x.py:1);decode_batch (/w/actors/core/wire.py:90) 45\n"
    )
    total, counts = aggregate_raw(raw)
    p = Profile("decoder:0", 1, total, counts)
    assert (p.total, p.waiting, p.busy) == (100, 55, 45)
    assert p.top() == [("core/wire.py:decode_batch", 45)]
    assert "| decoder:0 | 1 | 100 (55) | 45 |" in table([p], seconds=1.0)
