"""Subscription churn for scripts/bench.py: many strategies subscribing and unsubscribing at once.

``Churn`` is one async actor running one coroutine per simulated strategy. Each coroutine calls the
registry exactly as ``actors.strategy.Strategy.subscribe``/``unsubscribe`` do (``registry.subscribe
.remote(name, codes)``, awaited), one code per operation, on a fixed schedule of ``rate`` operations per
second, picking codes from a shared pool so that the strategies overlap. The strategies are names in
the registry, not actor processes: 50 extra Python processes would cost this 2-core machine more than
the registry work being measured. No ticks flow for the churned codes (the simulator runs without a
tick loop), so the decoder never routes to a strategy that has no actor.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any


class Churn:
    """Runs the churn and reports what it did."""

    def __init__(self, registry: Any) -> None:
        self._registry = registry

    async def run(
        self, names: list[str], pool: list[str], rate: float, duration_s: float, seed: int = 0
    ) -> dict[str, Any]:
        """Churn for ``duration_s``; returns op counts, errors, the last op's end (time.monotonic())."""
        started = time.monotonic()
        stop_at = started + duration_s
        results = await asyncio.gather(
            *(self._one(name, pool, rate, started, stop_at, seed + i) for i, name in enumerate(names))
        )
        ops = sum(r[0] for r in results)
        errors = [e for r in results for e in r[1]]
        last_op = max((r[2] for r in results), default=started)
        held = {name: r[3] for name, r in zip(names, results, strict=True)}
        return {
            "ops": ops,
            "errors": errors[:10],
            "error_count": len(errors),
            "started": started,
            "last_op": last_op,
            "ops_per_s": ops / max(last_op - started, 1e-9),
            "held": held,
            "late_s": max((r[4] for r in results), default=0.0),
        }

    async def _one(  # noqa: PLR0917
        self, name: str, pool: list[str], rate: float, started: float, stop_at: float, seed: int
    ) -> tuple[int, list[str], float, list[str], float]:
        rng = random.Random(seed)
        held: list[str] = []
        ops, errors, last_op, late = 0, [], started, 0.0
        period = 1.0 / rate
        due = started + rng.uniform(0, period)
        while due < stop_at and time.monotonic() < stop_at:
            now = time.monotonic()
            if due > now:
                await asyncio.sleep(due - now)
            else:
                late = max(late, now - due)  # the registry is not keeping up with the schedule
            try:
                if held and (rng.random() < 0.5 or len(held) >= len(pool)):
                    code = held.pop(rng.randrange(len(held)))
                    await self._registry.unsubscribe.remote(name, [code])
                else:
                    code = rng.choice([c for c in pool if c not in held])
                    await self._registry.subscribe.remote(name, [code])
                    held.append(code)
            except Exception as exc:  # noqa: BLE001 - counted and reported
                errors.append(f"{name}: {type(exc).__name__}: {exc}")
            ops += 1
            last_op = time.monotonic()
            due += period
        return ops, errors, last_op, sorted(held), late
