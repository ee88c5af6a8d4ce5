"""actors/core/status.py: the status document, its text screen, exit codes, subscription answers. No Ray.

The raw snapshots below have the shape of ``Supervisor.status()`` (each child's statistics as builtins;
a child that did not answer is ``{"error": ...}``), as captured from a run of ``python supervisor.py``;
``job_status`` takes them typed, as ``Supervisor.snapshot()`` gives them (``snap``).
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from actors.core import status
from actors.core.errors import InvalidCode
from actors.core.status import (
    CODE_STATES,
    CONNECTION_STATES,
    NO_JOB,
    NOT_OK,
    OK,
    REFUSED,
    RateWindow,
    StatusSnapshot,
    invalid_codes,
    no_job_line,
    read_snapshot,
    render_status,
    status_exit,
    subscription_report,
)


def job_status(raw: dict[str, Any], **where: str) -> dict[str, Any]:
    """``status.job_status`` of the raw snapshot, typed as the Supervisor's snapshot is."""
    return status.job_status(snap(raw), **where)


def snap(raw: dict[str, Any]) -> StatusSnapshot:
    return read_snapshot(raw)


def conn_stats(conn_id: str, *, connected: bool = True, **extra: Any) -> dict[str, Any]:
    out = {
        "conn_id": conn_id,
        "endpoint": conn_id.rsplit("-", 1)[0],
        "url": "ws://127.0.0.1:1/quote-stock-b-ws-api?token=***",
        "connected": connected,
        "epoch": 1,
        "frames": 100,
        "batches": 50,
        "heartbeats_sent": 3,
        "requests_sent": 1,
        "reconnects": 0,
        "last_error": "",
        "last_frame_age_s": 0.25 if connected else -1.0,
        "batches_in_flight": 0,
        "gave_up": False,
    }
    out.update(extra)
    return out


def reg_conn(conn_id: str, desired: list[str], acknowledged: list[str], *, up: bool = True) -> dict[str, Any]:
    return {
        "conn_id": conn_id,
        "kind": "trades",
        "endpoint": conn_id.rsplit("-", 1)[0],
        "epoch": 1,
        "up": up,
        "desired": desired,
        "acknowledged": acknowledged,
        "in_sync": desired == acknowledged,
        "requests_sent": 1,
        "refusals": 0,
        "last_ack_s": 0.01,
    }


def raw_snapshot() -> dict[str, Any]:
    return {
        "run_id": "abc123",
        "failure": "",
        "connections": {"stock-0": conn_stats("stock-0"), "forex_crypto-0": conn_stats("forex_crypto-0")},
        "strategies": {
            "tape": {
                "name": "tape",
                "batches": 5,
                "ticks": 40,
                "books": 0,
                "missed": 2,
                "out_of_order": 0,
                "queued_batches": 1,
                "last_tick_age_s": 0.1,
                "pid": 7,
            },
        },
        "registry": {
            "strategies": {"tape": {"AAPL.US": 1, "EURUSD": 1}},
            "book_strategies": {},
            "union": ["AAPL.US", "EURUSD"],
            "book_union": [],
            "refused": {},
            "connections": [
                reg_conn("stock-0", ["AAPL.US"], ["AAPL.US"]),
                reg_conn("forex_crypto-0", ["EURUSD"], ["EURUSD"]),
            ],
            "vendor_errors": [],
            "in_sync": True,
            "pid": 9,
        },
        "rates": {"stock-0": 6.44, "forex_crypto-0": None},
        "events": [],
    }


def test_a_healthy_job_gives_the_documented_document_and_exit_0() -> None:
    doc = job_status(raw_snapshot(), namespace="tickvisor", address="10.0.0.1:6379")
    assert set(doc) >= {"connections", "strategies", "codes", "registry"}
    stock = next(c for c in doc["connections"] if c["id"] == "stock-0")
    assert stock == {
        "id": "stock-0",
        "endpoint": "stock",
        "state": "up",
        "codes": 1,
        "last_frame_age_s": 0.25,
        "ticks_per_s": 6.4,
        "reconnects": 0,
        "last_error": "",
        "last_vendor_error": "",
    }
    assert next(c for c in doc["connections"] if c["id"] == "forex_crypto-0")["ticks_per_s"] is None
    assert doc["strategies"] == [
        {"name": "tape", "codes": ["AAPL.US", "EURUSD"], "queue": 1, "behind": 0, "ticks": 40, "missed": 2}
    ]
    assert doc["codes"]["AAPL.US"] == {
        "state": "ok",
        "connection": "stock-0",
        "kinds": ["trades"],
        "holders": ["tape"],
        "last_tick_age_s": None,
        "session": None,
        "opens_at": None,
    }
    assert doc["registry"] == {"pending": [], "quarantined": {}, "vendor_errors": [], "routes_awaited": {}}
    assert status_exit(doc) == OK
    json.dumps(doc)  # one JSON document


def test_a_connection_down_or_connecting_or_unanswered_is_exit_1() -> None:
    for stats, state in (
        (conn_stats("stock-0", connected=False, gave_up=True, last_error="VendorError: 401"), "down"),
        (conn_stats("stock-0", connected=False), "connecting"),
        ({"error": "GetTimeoutError: no answer"}, "down"),
    ):
        raw = raw_snapshot()
        raw["connections"]["stock-0"] = stats
        doc = job_status(raw)
        stock = next(c for c in doc["connections"] if c["id"] == "stock-0")
        assert stock["state"] == state
        assert stock["last_frame_age_s"] is None
        assert status_exit(doc) == NOT_OK
    assert stock["last_error"] == "GetTimeoutError: no answer"


def test_a_failing_job_or_one_out_of_sync_is_exit_1() -> None:
    raw = raw_snapshot()
    raw["failure"] = "connection stock-0 failed for good: token invalid"
    doc = job_status(raw)
    assert status_exit(doc) == NOT_OK
    assert "FAILING: connection stock-0 failed for good" in render_status(doc)
    raw = raw_snapshot()
    raw["registry"]["in_sync"] = False
    assert status_exit(job_status(raw)) == NOT_OK
    raw = raw_snapshot()
    raw["connections"] = {}
    assert status_exit(job_status(raw)) == NOT_OK  # a job with no connection is not "up"


def test_pending_and_quarantined_codes_reach_codes_and_registry() -> None:
    raw = raw_snapshot()
    reg = raw["registry"]
    reg["strategies"]["tape"]["TSLA.US"] = 1
    reg["strategies"]["other"] = {"AAPL.US": 2}
    reg["connections"][0] = reg_conn("stock-0", ["AAPL.US", "TSLA.US"], ["AAPL.US"])
    reg["refused"] = {"ZZZ.US": "vendor error 604 on 22004: code unauthorized"}
    reg["vendor_errors"] = ["stock-0: vendor error 604 on 22004: code unauthorized"]
    reg["in_sync"] = False
    doc = job_status(raw)
    assert doc["codes"]["TSLA.US"]["state"] == "pending"
    assert doc["codes"]["AAPL.US"]["holders"] == ["other", "tape"]
    assert doc["codes"]["ZZZ.US"]["state"] == "quarantined"
    assert doc["codes"]["ZZZ.US"]["holders"] == []
    assert doc["registry"]["pending"] == ["TSLA.US"]
    assert doc["registry"]["quarantined"] == {"ZZZ.US": "vendor error 604 on 22004: code unauthorized"}
    stock = next(c for c in doc["connections"] if c["id"] == "stock-0")
    assert stock["last_vendor_error"] == "vendor error 604 on 22004: code unauthorized"
    screen = render_status(doc)
    assert "quarantined ZZZ.US: vendor error 604" in screen
    assert "codes not ok: 2 of 4" in screen
    assert "TSLA.US  pending" in screen


def test_a_decoder_late_with_its_routes_is_named_with_what_waits() -> None:
    raw = raw_snapshot()
    raw["registry"]["routes_awaited"] = {"decoder:1": 12.3}
    raw["registry"]["in_sync"] = False
    doc = job_status(raw)
    assert doc["registry"]["routes_awaited"] == {"decoder:1": 12.3}
    assert "decoder:1 has not taken new routes for 12.3 s: its connections' requests wait" in render_status(
        doc
    )
    assert status_exit(doc) == NOT_OK


def test_codes_of_a_connection_that_is_down_are_pending() -> None:
    raw = raw_snapshot()
    raw["registry"]["connections"][0] = reg_conn("stock-0", ["AAPL.US"], ["AAPL.US"], up=False)
    assert job_status(raw)["codes"]["AAPL.US"]["state"] == "pending"


def test_per_code_liveness_comes_in_through_code_health() -> None:
    # The seam for the per-code liveness: a snapshot with code_health overrides "ok" codes.
    raw = raw_snapshot()
    raw["code_health"] = {
        "AAPL.US": {"state": "stale", "last_tick_age_s": 75.0},
        "EURUSD": {"state": "ok", "last_tick_age_s": 0.3},
    }
    doc = job_status(raw)
    assert doc["codes"]["AAPL.US"]["state"] == "stale"
    assert doc["codes"]["AAPL.US"]["last_tick_age_s"] == 75.0
    assert doc["codes"]["EURUSD"] == {**doc["codes"]["EURUSD"], "state": "ok", "last_tick_age_s": 0.3}
    assert "AAPL.US  stale" in render_status(doc)


def test_per_code_liveness_comes_from_the_registrys_codes() -> None:
    # The registry's status (actors.registry.RegistryStatus.codes, as builtins) carries CodeHealth.
    raw = raw_snapshot()
    raw["registry"]["codes"] = {
        "AAPL.US": {
            "state": "never_started",
            "reason": "no first tick",
            "connection": "stock-0",
            "last_tick_age_s": -1.0,
        },
        "EURUSD": {"state": "waiting", "reason": "", "connection": "forex_crypto-0", "last_tick_age_s": 0.5},
    }
    doc = job_status(raw)
    assert doc["codes"]["AAPL.US"]["state"] == "never_started"
    assert doc["codes"]["AAPL.US"]["last_tick_age_s"] is None  # -1: no tick yet
    assert doc["codes"]["EURUSD"]["state"] == "ok"  # waiting for a first tick is not an alarm yet
    assert doc["codes"]["EURUSD"]["last_tick_age_s"] == 0.5


def test_ages_are_as_of_the_status_call_from_the_decoders_answers() -> None:
    # The registry's age is as of its last look at the decoders (plus the time since); the decoders'
    # statistics, gathered by the same status call, know the age now: the freshest is shown.
    raw = raw_snapshot()
    raw["registry"]["codes"] = {
        "AAPL.US": {"state": "ok", "reason": "", "connection": "stock-0", "last_tick_age_s": 41.0},
        "EURUSD": {
            "state": "stale",
            "reason": "quiet",
            "connection": "forex_crypto-0",
            "last_tick_age_s": 75.5,
        },
    }
    raw["decoders"] = {
        "0": {"decoder_id": 0, "tick_ages": {"AAPL.US": 0.2, "EURUSD": 75.0}},
        "1": {"decoder_id": 1, "tick_ages": {"AAPL.US": 0.05}},  # a code seen by two decoders: freshest
        "2": {"error": "GetTimeoutError: no answer"},
    }
    doc = job_status(raw)
    assert doc["codes"]["AAPL.US"]["last_tick_age_s"] == 0.05
    assert doc["codes"]["EURUSD"]["last_tick_age_s"] == 75.0
    assert doc["codes"]["EURUSD"]["state"] == "stale"
    raw["decoders"] = {"0": {"error": "ActorDiedError: gone"}}  # no decoder answered: the registry's age
    assert job_status(raw)["codes"]["AAPL.US"]["last_tick_age_s"] == 41.0


def test_a_book_only_code_shows_its_liveness() -> None:
    raw = raw_snapshot()
    raw["registry"]["book_strategies"] = {"depth": {"BTCUSDT": 1}}
    raw["registry"]["connections"].append(
        {**reg_conn("forex_crypto-0", ["BTCUSDT"], ["BTCUSDT"]), "kind": "book"}
    )
    raw["registry"]["codes"] = {
        "BTCUSDT": {
            "state": "stale",
            "reason": "quiet",
            "connection": "forex_crypto-0",
            "last_tick_age_s": 12.0,
        },
    }
    doc = job_status(raw)
    assert doc["codes"]["BTCUSDT"] == {
        "state": "stale", "reason": "quiet", "connection": "forex_crypto-0", "kinds": ["book"],
        "holders": ["depth"], "last_tick_age_s": 12.0, "session": None, "opens_at": None,
    }  # fmt: skip
    [line] = [row for row in render_status(doc).splitlines() if row.strip().startswith("BTCUSDT")]
    cells = re.split(r"\s{2,}", line.strip())
    assert cells == ["BTCUSDT", "stale", "code quiet, socket alive", "forex_crypto-0", "12.0 s", "depth"]


def test_a_registry_that_did_not_answer_is_shown_not_raised() -> None:
    raw = raw_snapshot()
    raw["registry"] = {"error": "ActorDiedError: gone"}
    doc = job_status(raw)
    assert doc["registry"]["error"] == "ActorDiedError: gone"
    assert status_exit(doc) == NOT_OK
    render_status(doc)


def test_a_strategy_that_did_not_answer_shows_its_error() -> None:
    raw = raw_snapshot()
    raw["strategies"]["tape"] = {"error": "GetTimeoutError"}
    doc = job_status(raw)
    assert doc["strategies"][0]["queue"] is None
    assert doc["strategies"][0]["error"] == "GetTimeoutError"
    assert "tape      2      ?      0       ?      ?" in render_status(doc)  # behind: the decoders' count


def test_behind_sums_what_the_decoders_hold_for_each_strategy() -> None:
    raw = raw_snapshot()
    raw["decoders"] = {
        "decoder:0": {"pending_ticks": {"tape": 5, "other": 1}},
        "decoder:1": {"pending_ticks": {"tape": 7}},
        "decoder:2": {"error": "GetTimeoutError"},  # did not answer: not counted
    }
    doc = job_status(raw)
    assert doc["strategies"][0]["behind"] == 12
    assert "tape      2      1      12      40     2" in render_status(doc)


@settings(deadline=None)  # a shared, loaded machine: no time limit per example
@given(
    st.dictionaries(
        st.sampled_from(["stock-0", "stock-1", "forex_crypto-0"]),
        st.one_of(
            st.builds(lambda c, g: conn_stats("x-0", connected=c, gave_up=g), st.booleans(), st.booleans()),
            st.just({"error": "x"}),
            st.none(),
        ),
    ),
    st.booleans(),
    st.text(max_size=5),
)
def test_any_snapshot_gives_a_valid_document(conns: dict[str, Any], in_sync: bool, failure: str) -> None:
    raw = raw_snapshot()
    raw["connections"] = conns
    raw["registry"]["in_sync"] = in_sync
    raw["failure"] = failure
    doc = job_status(copy.deepcopy(raw))
    json.dumps(doc)
    assert all(c["state"] in CONNECTION_STATES for c in doc["connections"])
    assert all(e["state"] in CODE_STATES for e in doc["codes"].values())
    expect_ok = (
        bool(conns) and in_sync and not failure and all(c["state"] == "up" for c in doc["connections"])
    )
    assert status_exit(doc) == (OK if expect_ok else NOT_OK)
    render_status(doc)


def test_rate_window() -> None:
    rates = RateWindow(span_s=10.0, min_span_s=0.5)
    assert rates.observe("a", 0.0, 0) is None
    assert rates.observe("a", 0.2, 10) is None  # too close to measure
    assert rates.observe("a", 2.0, 100) == 50.0
    # Measured from the newest sample that is at least span_s old: 2.0 s here, older ones go.
    assert rates.observe("a", 30.0, 130) == 30 / 28
    assert rates.observe("a", 31.0, 159) == 59 / 29
    assert rates.observe("a", 45.0, 173) == 1.0  # now 31.0 s is the newest at least span_s old
    assert rates.observe("a", 32.0, 5) is None  # the counter went down: its actor restarted
    assert rates.observe("a", 33.0, 15) == 10.0


def test_no_job_line_names_namespace_and_address() -> None:
    line = no_job_line("prod", "10.0.0.1:6379", "nothing listens there")
    assert line == "tickvisor: no job found in namespace 'prod' at 10.0.0.1:6379: nothing listens there"
    assert "no --address, no RAY_ADDRESS" in no_job_line("prod", "")
    assert NO_JOB == 3


def test_subscription_report_accepted() -> None:
    lines, code = subscription_report(
        "subscribe", ["AAPL.US", "EURUSD"], holdings={"AAPL.US": 2, "EURUSD": 1}
    )
    assert code == OK
    assert lines == [
        "AAPL.US: subscribe accepted (held 2 time(s) by this strategy)",
        "EURUSD: subscribe accepted (held 1 time(s) by this strategy)",
    ]


def test_foreign_notation_is_refused_here_with_a_hint() -> None:
    invalid = invalid_codes(["aapl.us", "AAPL.US", "0001.ZZ"])
    assert set(invalid) == {"aapl.us", "0001.ZZ"}
    assert all(isinstance(e, InvalidCode) for e in invalid.values())
    lines, code = subscription_report("subscribe", ["aapl.us", "AAPL.US", "0001.ZZ"], invalid=invalid)
    assert code == REFUSED
    assert (
        lines[0] == "aapl.us: refused: codes are case-sensitive and upper-case; hint: did you mean AAPL.US?"
    )
    assert lines[1] == "AAPL.US: not sent: another code of this request was refused (nothing changed)"
    assert lines[2].startswith("0001.ZZ: refused: not in the vendor's notation")
    assert "hint: use the vendor's notation" in lines[2]


def test_registry_refusals_name_code_reason_and_hint() -> None:
    problems = {
        "TSLA.US": (
            "no room: the plan allows 5 codes on each of 1 stock connection(s); "
            "unsubscribe others or raise the plan"
        ),
        "EURUSD": "its endpoint 'forex_crypto' is not configured in [endpoints]",
        "ZZZ.US": "the vendor refused it: vendor error 604",
    }
    lines, code = subscription_report("subscribe", ["AAPL.US", *problems], refused=problems)
    assert code == REFUSED
    assert lines == [
        "AAPL.US: not applied: another code of this request was refused (nothing changed)",
        (
            "TSLA.US: refused: no room: the plan allows 5 codes on each of 1 stock connection(s); "
            "hint: unsubscribe others or raise the plan"
        ),
        (
            "EURUSD: refused: its endpoint 'forex_crypto' is not configured in [endpoints]; "
            "hint: add that [endpoints.NAME] table to the config and restart the job"
        ),
        (
            "ZZZ.US: refused: the vendor refused it: vendor error 604; "
            "hint: the code stays quarantined until the job restarts; check it and the plan"
        ),
    ]


def test_a_refusal_of_the_request_itself_is_shown() -> None:
    lines, code = subscription_report(
        "unsubscribe", ["AAPL.US"], refused={"kind": "'x' is not 'trades' or 'book'"}
    )
    assert code == REFUSED
    assert lines[-1] == "kind: refused: 'x' is not 'trades' or 'book'"


def test_split_reason_without_a_known_hint() -> None:
    assert status.split_reason("something new") == ("something new", "")


def test_the_documented_schema_names_every_key_of_the_document() -> None:
    # docs/operations.md "status": the table after "`status --json` prints", its first column the top-level
    # keys and, for the lists and objects, the keys of each entry as {"key", ...}.
    readme = (Path(__file__).resolve().parent.parent / "docs" / "operations.md").read_text(encoding="utf-8")
    table = readme.split("`status --json` prints the same as one JSON document", 1)[1].split("\n\n", 2)[1]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines()[2:]]
    documented = {key: cells[1] for cells in rows for key in re.findall(r"`(\w+)`", cells[0])}
    raw = raw_snapshot()
    raw["registry"]["codes"] = {"AAPL.US": {"state": "stale", "reason": "quiet", "connection": "stock-0",
                                            "last_tick_age_s": 61.0}}  # fmt: skip
    doc = job_status(raw, namespace="tickvisor", address="127.0.0.1:6379")
    assert set(documented) == set(doc)

    def entry_keys(key: str) -> set[str]:
        return set(re.findall(r'"(\w+)"', documented[key].split("}", 1)[0]))

    assert entry_keys("connections") == set(doc["connections"][0])
    assert entry_keys("strategies") == set(doc["strategies"][0])
    assert entry_keys("codes") | {"reason"} == set(doc["codes"]["AAPL.US"])
    assert "`reason`" in documented["codes"]
    assert set(re.findall(r'"(\w+)":', documented["registry"])) == set(doc["registry"])


def test_a_closed_code_shows_its_session_and_when_it_opens_and_is_no_failure() -> None:
    raw = raw_snapshot()
    raw["registry"]["codes"] = {
        "AAPL.US": {
            "state": "closed",
            "reason": "",
            "connection": "stock-0",
            "last_tick_age_s": 3600.0,
            "session": "XNYS",
            "opens_at": 1_796_653_800.0,
        },
        "EURUSD": {
            "state": "ok",
            "reason": "",
            "connection": "forex_crypto-0",
            "last_tick_age_s": 0.5,
            "session": "fx",
        },
    }
    doc = job_status(raw)
    assert doc["codes"]["AAPL.US"] == {
        "state": "closed", "connection": "stock-0", "kinds": ["trades"], "holders": ["tape"],
        "last_tick_age_s": 3600.0, "session": "XNYS", "opens_at": "2026-12-07T14:30:00Z",
    }  # fmt: skip
    assert (doc["codes"]["EURUSD"]["session"], doc["codes"]["EURUSD"]["opens_at"]) == ("fx", None)
    assert "closed" in CODE_STATES
    assert status_exit(doc) == OK  # a closed market is not a failure
    screen = render_status(doc)
    assert "codes: all 2 ok or closed" in screen
    assert "codes closed (their market is closed; not a problem): 1" in screen
    [line] = [row for row in screen.splitlines() if row.strip().startswith("AAPL.US")]
    assert re.split(r"\s{2,}", line.strip()) == ["AAPL.US", "XNYS", "2026-12-07T14:30:00Z", "tape"]
    json.dumps(doc)
