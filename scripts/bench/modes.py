"""The sizes of every run mode (smoke, quick, full), in one table.

scripts/bench.py and the channel benchmark (scripts/bench/channels.py) both read it.
A mode is a frozen dataclass; a command line that overrides a size makes a new one with
``dataclasses.replace``. ``--smoke`` is tiny counts that check the machinery (what the tests run);
``--quick`` one round; ``full`` three rounds, the median reported.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mode:
    """Sizes of one benchmark mode."""

    name: str
    burst: int  # ticks per throughput burst
    rounds: int  # throughput rounds (median reported)
    naive: int  # ticks of the naive pipeline's burst
    naive_cap_s: float  # ...or this long, whichever comes first
    latency_rate: float  # ticks/s of the paced burst
    latency_s: float
    stall_trials: int
    churn_strategies: int
    churn_rate: float  # operations per second per strategy
    churn_s: float
    deadline_s: float  # feed.silence_deadline_s of the liveness system
    quiet_s: float  # before each stall and kill: time since the last subscription request (token gap)
    hard_cap_s: float  # the whole run is stopped after this
    low_s: (
        float  # the channel benchmark's light paced burst lasts this long (scripts/bench.py: latency_s / 2)
    )
    low_rate: float = 2000.0  # ticks/s of the light paced burst: latency when nothing queues
    transport: str = "picows"  # feed.transport of every tickvisor system (actors/transport.py)
    burst4: int = 50_000  # ticks per connection of the 4-connection burst (4 x this in all)
    idle_s: float = 3.0  # the job's CPU while no tick flows is read over this long
    replay_ticks: int = 1_000_000  # ticks of the tape replayed in each format (scripts/bench/replay.py)
    # Seconds the throughput and liveness simulators keep between subscription requests of one token
    # (PROTOCOL.md: 3): every baseline client subscribes once, so the vendor's gap costs 3 s a client,
    # and a reconnection after a kill waits it out. tickvisor paces itself (actors.core.plans) all the
    # same; smoke, which only checks the machinery, lifts the server's check.
    sim_token_gap_s: float = 3.0


MODES = {
    "smoke": Mode(
        "smoke",
        burst=3000,
        rounds=1,
        naive=300,
        naive_cap_s=10,
        latency_rate=2000,
        latency_s=0.5,
        stall_trials=1,
        churn_strategies=4,
        churn_rate=5,
        churn_s=1.0,
        deadline_s=1.5,
        quiet_s=0.0,
        hard_cap_s=200,
        low_s=0.5,
        burst4=750,
        idle_s=0.3,
        replay_ticks=20_000,
        sim_token_gap_s=0.0,
    ),
    "quick": Mode(
        "quick",
        burst=200_000,
        rounds=1,
        naive=20_000,
        naive_cap_s=15,
        latency_rate=20_000,
        latency_s=3.0,
        stall_trials=5,
        churn_strategies=50,
        churn_rate=20,
        churn_s=10,
        deadline_s=1.5,
        quiet_s=3.2,
        hard_cap_s=480,
        low_s=2.0,
    ),
    "full": Mode(
        "full",
        burst=200_000,
        rounds=3,
        naive=200_000,
        naive_cap_s=60,
        latency_rate=20_000,
        latency_s=5.0,
        stall_trials=5,
        churn_strategies=50,
        churn_rate=20,
        churn_s=10,
        deadline_s=1.5,
        quiet_s=3.2,
        hard_cap_s=1300,
        low_s=5.0,
    ),
}


def mode_of(*, smoke: bool, quick: bool) -> Mode:
    """The mode a command line's ``--smoke`` / ``--quick`` flags name (neither: full)."""
    return MODES["smoke" if smoke else "quick" if quick else "full"]
