"""Who holds which code: per-strategy refcounts, the registry's state. Pure: no I/O, no clock.

Rules of this module:

1. Each strategy holds each code with a count: subscribing twice needs two unsubscribes. The feed
   carries a code while any strategy holds it (the union), once, whatever the counts.
2. Every change is all-or-nothing: a call that names a code the strategy does not hold changes nothing
   and says which code.
3. The state round-trips through ``snapshot()`` / ``from_snapshot()`` (plain dicts, msgspec/JSON safe),
   which is how the registry survives its own restart.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from actors.core.errors import SubscriptionRefused


class Holdings:
    """Refcounted codes per strategy."""

    def __init__(self) -> None:
        self._counts: dict[str, dict[str, int]] = {}
        self._holders: dict[str, set[str]] = {}

    def subscribe(self, strategy: str, codes: Iterable[str]) -> frozenset[str]:
        """Add one reference per code for ``strategy``. Returns the codes nobody held before."""
        codes = _collection(codes)
        if not codes:
            return frozenset()  # no empty entry: ``strategies()`` lists only strategies holding a code
        counts = self._counts.setdefault(strategy, {})
        new: set[str] = set()
        for code in codes:
            counts[code] = counts.get(code, 0) + 1
            holders = self._holders.setdefault(code, set())
            if not holders:
                new.add(code)
            holders.add(strategy)
        return frozenset(new)

    def unsubscribe(self, strategy: str, codes: Iterable[str]) -> frozenset[str]:
        """Drop one reference per code for ``strategy``. Returns the codes nobody holds any more.

        Raises:
            SubscriptionRefused: a code the strategy does not hold (nothing is changed).

        """
        codes = _collection(codes)
        counts = self._counts.get(strategy, {})
        needed: dict[str, int] = {}
        for code in codes:
            needed[code] = needed.get(code, 0) + 1
        problems = {
            code: f"strategy {strategy!r} holds it {counts.get(code, 0)} time(s), cannot drop {n}"
            for code, n in needed.items()
            if counts.get(code, 0) < n
        }
        if problems:
            raise SubscriptionRefused(problems)
        gone: set[str] = set()
        for code, n in needed.items():
            counts[code] -= n
            if counts[code] == 0:
                del counts[code]
                holders = self._holders[code]
                holders.discard(strategy)
                if not holders:
                    del self._holders[code]
                    gone.add(code)
        if not counts:
            self._counts.pop(strategy, None)
        return frozenset(gone)

    def drop_strategy(self, strategy: str) -> frozenset[str]:
        """Forget every reference of ``strategy``. Returns the codes nobody holds any more."""
        counts = self._counts.get(strategy, {})
        return self.unsubscribe(strategy, [c for c, n in counts.items() for _ in range(n)])

    def drop_code(self, code: str) -> frozenset[str]:
        """Forget ``code`` for every strategy (the vendor refused it). Returns the strategies that held it."""
        holders = frozenset(self._holders.pop(code, set()))
        for strategy in holders:
            counts = self._counts[strategy]
            del counts[code]
            if not counts:
                del self._counts[strategy]
        return holders

    def union(self) -> frozenset[str]:
        """Every code some strategy holds."""
        return frozenset(self._holders)

    def holders(self, code: str) -> frozenset[str]:
        """The strategies holding ``code``."""
        return frozenset(self._holders.get(code, ()))

    def codes_of(self, strategy: str) -> dict[str, int]:
        """The codes ``strategy`` holds, with their counts."""
        return dict(self._counts.get(strategy, {}))

    def strategies(self) -> list[str]:
        """Strategies holding at least one code, sorted."""
        return sorted(self._counts)

    def routes(self) -> dict[str, tuple[str, ...]]:
        """Code -> the strategies that receive it, sorted: what the decoders route by."""
        return {code: tuple(sorted(h)) for code, h in self._holders.items()}

    def snapshot(self) -> dict[str, dict[str, int]]:
        """A plain copy of the state, for persistence."""
        return {s: dict(c) for s, c in self._counts.items()}

    @classmethod
    def from_snapshot(cls, snapshot: Mapping[str, Mapping[str, int]]) -> Holdings:
        """Rebuild from ``snapshot()``."""
        holdings = cls()
        for strategy, counts in snapshot.items():
            for code, n in counts.items():
                if n > 0:
                    holdings.subscribe(strategy, [code] * n)
        return holdings


def _collection(codes: Iterable[str]) -> list[str]:
    if isinstance(codes, str | bytes):
        # A bare string is an iterable of characters: "AAPL.US" would hold ".", "A", "L", ...
        raise TypeError(f"pass a collection of codes, not the single string {codes!r}")
    return list(codes)
