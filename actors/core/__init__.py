"""The pure core of tickvisor: the decisions, without I/O. The Ray shells in ``actors/`` feed these
cores events and carry out what they return.

One concept per module: the vendor's frames (``wire``), their normalisation into ticks
(``normalise``), codes and endpoints (``codes``), plan limits (``plans``), subscriptions, holdings,
assignment and growth of connections, liveness of a socket (``liveness``) and of a code
(``codeliveness``), the per-tick check (``tickcheck``), routing, delivery, placement, backoff, the
settings schema (``settings``) with its error wording (``config_errors``) and tokens (``tokens``),
the status view, actor names (``naming``) and the exception tree (``errors``).

No module here imports Ray, a socket library, asyncio, ssl, threading or loguru, reads a clock or a
file, or touches ``os.environ``; ``tests/test_purity.py`` walks this package and checks that.
"""
