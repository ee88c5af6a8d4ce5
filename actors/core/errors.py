"""The exceptions of tickvisor.

actors.core.errors defines this hierarchy::

    * FeedError                      base of everything tickvisor raises on purpose
        * VendorError(ret, msg, cmd_id, seq_id)   the server refused: 400, 401, 429, 600, 603, 604, 606
        * ProtocolViolation                        the server sent something PROTOCOL.md does not allow
            * MalformedFrame(reason, frame)        a frame we cannot decode (bytes kept, truncated)
        * InvalidCode(code, reason, hint)          a code we refuse before it reaches the wire
        * SubscriptionRefused(problems)            a subscribe/unsubscribe call refused, one reason per code
            * QuotaExhausted(problems, plan, ...)  no room for some codes within the plan and the tokens
        * InvalidTransition                        we asked a core for something illegal in its state
        * ConnectionSilent(silent_for, deadline)   no frame within the silence deadline
        * Unresponsive(child, misses, deadline_s)  an actor missed its ping deadline this many times in a row
        * ConnectFailed(conn_id, endpoint, url, last_error, waited_s)
                                                   a connection did not open (or was not accepted) in time
        * ConfigError(key, reason)                 a bad configuration key
        * EscalationError(child, restarts, within) restart intensity exceeded twice: the job stops
        * ChildFailed(child, cause)                a child hit a failure no retry can cure: the job stops

"We broke it" (InvalidTransition, InvalidCode, ConfigError) is kept apart from "they broke it"
(VendorError, ProtocolViolation). Every exception keeps structured fields and builds its message
from them, so a caller can branch on ``exc.ret`` and a human reads ``str(exc)``.
"""

from __future__ import annotations

from collections.abc import Mapping

#: How many bytes of an offending frame an exception keeps.
FRAME_EXCERPT_BYTES = 200

#: Vendor ret codes with what a user should do about them (PROTOCOL.md "Error codes").
VENDOR_ADVICE: Mapping[int, str] = {
    400: "the request was malformed; this is a tickvisor bug, please report it with the log",
    401: "the token is invalid or expired; check the environment variable named by feed.token_env",
    429: "rate limit; tickvisor waits and retries",
    600: "a code is unknown or sent to the wrong endpoint; check the vendor's product list",
    603: "the token's plan allows fewer codes than asked; set feed.plan (or feed.max_codes_per_connection) "
    "to the real plan, or subscribe fewer codes",
    604: "the token may not see this code; check the plan's markets",
    606: "too many connections or requests; the server closes the socket and tickvisor backs off",
}


class FeedError(Exception):
    """Base class of the errors tickvisor raises on purpose."""


class VendorError(FeedError):
    """The server answered a request with a ``ret`` other than 200."""

    def __init__(self, ret: int, msg: str, cmd_id: int | None = None, seq_id: int | None = None) -> None:
        self.ret = ret
        self.msg = msg
        self.cmd_id = cmd_id
        self.seq_id = seq_id
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f" for cmd_id {self.cmd_id}" if self.cmd_id is not None else ""
        seq = f" (seq_id {self.seq_id})" if self.seq_id is not None else ""
        advice = VENDOR_ADVICE.get(self.ret)
        tail = f": {advice}" if advice else ""
        return f"{self.ret} {self.msg}{where}{seq}{tail}"

    def __reduce__(self) -> tuple[type, tuple[int, str, int | None, int | None]]:
        return (type(self), (self.ret, self.msg, self.cmd_id, self.seq_id))


class ProtocolViolation(FeedError):
    """The server sent something PROTOCOL.md does not allow."""


class MalformedFrame(ProtocolViolation):
    """A frame that cannot be decoded. Keeps the reason and the first bytes of the frame."""

    def __init__(self, reason: str, frame: bytes | bytearray | memoryview | str | object) -> None:
        if isinstance(frame, str):
            raw = frame.encode("utf-8", "replace")
        elif isinstance(frame, bytes | bytearray | memoryview):
            raw = bytes(frame)
        else:
            # Not a frame at all (None, an int): keep its repr. bytes(5) would be five NUL bytes,
            # and bytes(10**12) a MemoryError.
            raw = repr(frame).encode("utf-8", "replace")
        self.reason = reason
        self.frame = raw[:FRAME_EXCERPT_BYTES]
        self.frame_len = len(raw)
        super().__init__(str(self))

    def __str__(self) -> str:
        more = f"... ({self.frame_len} bytes)" if self.frame_len > len(self.frame) else ""
        return f"malformed frame: {self.reason}; frame {self.frame!r}{more}"

    def __reduce__(self) -> tuple[object, tuple[type[MalformedFrame], str, bytes, int]]:
        # frame_len is kept too: the excerpt alone would lose how long the frame was.
        return (_rebuild_malformed_frame, (type(self), self.reason, self.frame, self.frame_len))


def _rebuild_malformed_frame(
    cls: type[MalformedFrame], reason: str, frame: bytes, frame_len: int
) -> MalformedFrame:
    """Unpickle a MalformedFrame (Ray ships exceptions by pickle) with its original frame length."""
    exc = cls(reason, frame)
    exc.frame_len = frame_len
    exc.args = (str(exc),)
    return exc


class InvalidCode(FeedError):
    """A code refused before it reaches the wire: empty, foreign notation, wrong endpoint."""

    def __init__(self, code: str, reason: str, hint: str | None = None) -> None:
        self.code = code
        self.reason = reason
        self.hint = hint
        super().__init__(str(self))

    def __str__(self) -> str:
        hint = f"; did you mean {self.hint!r}?" if self.hint else ""
        return f"invalid code {self.code!r}: {self.reason}{hint}"

    def __reduce__(self) -> tuple[type, tuple[str, str, str | None]]:
        return (type(self), (self.code, self.reason, self.hint))


class SubscriptionRefused(FeedError):
    """A subscribe or unsubscribe call refused as a whole; ``problems`` maps each bad code to why."""

    def __init__(self, problems: Mapping[str, str]) -> None:
        self.problems = dict(problems)
        super().__init__(str(self))

    def __str__(self) -> str:
        if not self.problems:
            return "subscription refused: the code list is empty; pass at least one code"
        parts = "; ".join(f"{code!r}: {why}" for code, why in sorted(self.problems.items()))
        return f"subscription refused, nothing changed: {parts}"

    def __reduce__(self) -> tuple[type, tuple[dict[str, str]]]:
        return (type(self), (self.problems,))


class QuotaExhausted(SubscriptionRefused):
    """A subscribe refused because the plan's connections and codes, over every live token, are taken.

    ``problems`` names each code that did not fit; ``plan``, ``connections_per_token``,
    ``codes_per_connection`` and ``tokens`` (live ones) are the limits that were reached.
    """

    def __init__(
        self,
        problems: Mapping[str, str],
        plan: str,
        connections_per_token: int,
        codes_per_connection: int,
        tokens: int,
    ) -> None:
        self.plan = plan
        self.connections_per_token = connections_per_token
        self.codes_per_connection = codes_per_connection
        self.tokens = tokens
        super().__init__(problems)

    def __reduce__(self) -> tuple[type, tuple[dict[str, str], str, int, int, int]]:  # type: ignore[override]
        return (
            type(self),
            (self.problems, self.plan, self.connections_per_token, self.codes_per_connection, self.tokens),
        )


class InvalidTransition(FeedError):
    """We asked a pure core for something it cannot do in its current state."""


class ConnectionSilent(FeedError):
    """No frame arrived within the silence deadline: the socket may look open but is dead."""

    def __init__(self, silent_for: float, deadline: float) -> None:
        self.silent_for = silent_for
        self.deadline = deadline
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"connection silent for {self.silent_for:.2f} s (deadline {self.deadline:.2f} s)"

    def __reduce__(self) -> tuple[type, tuple[float, float]]:
        return (type(self), (self.silent_for, self.deadline))


class Unresponsive(FeedError):
    """An actor did not answer its ping within the deadline, ``misses`` times in a row."""

    def __init__(self, child: str, misses: int, deadline_s: float) -> None:
        self.child = child
        self.misses = misses
        self.deadline_s = deadline_s
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.child} missed the {self.deadline_s:g} s ping deadline {self.misses} times in a row"

    def __reduce__(self) -> tuple[type, tuple[str, int, float]]:
        return (type(self), (self.child, self.misses, self.deadline_s))


class ConnectFailed(FeedError):
    """A connection did not open, or the server did not accept it, within ``waited_s`` seconds.

    ``url`` must already be redacted; ``last_error`` is the last failure seen, as text ("" if none).
    """

    def __init__(self, conn_id: str, endpoint: str, url: str, last_error: str, waited_s: float) -> None:
        self.conn_id = conn_id
        self.endpoint = endpoint
        self.url = url
        self.last_error = last_error
        self.waited_s = waited_s
        super().__init__(str(self))

    def __str__(self) -> str:
        last = self.last_error or "none (the server neither answered nor refused)"
        return (
            f"connection {self.conn_id} to the {self.endpoint} endpoint ({self.url}) did not start within "
            f"{self.waited_s:g} s; last error: {last}"
        )

    def __reduce__(self) -> tuple[type, tuple[str, str, str, str, float]]:
        return (type(self), (self.conn_id, self.endpoint, self.url, self.last_error, self.waited_s))


class ConfigError(FeedError):
    """A configuration value is missing, unknown or out of range. ``key`` is its dotted path."""

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"config error at {self.key}: {self.reason}" if self.key else f"config error: {self.reason}"

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        return (type(self), (self.key, self.reason))


class EscalationError(FeedError):
    """A child kept failing after its group was restarted: the supervisor gives up."""

    def __init__(self, child: str, restarts: int, within_s: float, cause: str) -> None:
        self.child = child
        self.restarts = restarts
        self.within_s = within_s
        self.cause = cause
        super().__init__(str(self))

    def __str__(self) -> str:
        return (
            f"{self.child} failed {self.restarts} times within {self.within_s:g} s even after a group "
            f"restart; last cause: {self.cause}"
        )

    def __reduce__(self) -> tuple[type, tuple[str, int, float, str]]:
        return (type(self), (self.child, self.restarts, self.within_s, self.cause))


class ChildFailed(FeedError):
    """A child of the supervisor hit a failure that no retry can cure (``cause``, e.g. a VendorError 401)."""

    def __init__(self, child: str, cause: FeedError) -> None:
        self.child = child
        self.cause = cause
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.child}: {self.cause}"

    def __reduce__(self) -> tuple[type, tuple[str, FeedError]]:
        return (type(self), (self.child, self.cause))
