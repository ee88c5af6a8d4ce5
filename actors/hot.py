"""What the hot shells (Connection, Decoder, Strategy) do once when they start.

So that each batch costs less and waits less. Two things:

``direct``: calls from an actor to its own methods, past Ray's tracing wrappers. Ray wraps every
method of an actor class for tracing (``ray.util.tracing``), also while tracing is off, on the
subclass it makes of the actor's class. Each call of ``self.method(...)`` inside the
actor then goes through that wrapper: about 0.6 us more a call, 0.9 us for a coroutine, on this
machine (against 0.16 and 0.24 without it). The hot paths call their own methods per batch, so
``direct`` binds the class's own functions to the instance: those calls skip the wrapper. Remote
calls are unaffected (Ray dispatches them through the class, not the instance).

``freeze_heap``: a Ray worker holds about 60,000 objects that the garbage collector tracks once its
modules are imported, nearly all for its whole life. A full collection scans all of them: 20 to 90 ms
on this machine, a pause for every tick waiting at that moment. ``gc.freeze()`` after start-up moves
them out of the collector's view (``gc.collect()`` of the same heap then takes microseconds), so that
the collections the batches cause scan only what the batches made.
"""

from __future__ import annotations

import gc

_RAY_MARK = "__ray_tracing_wrapped__"  # set by Ray on each wrapper; ``__wrapped__`` is the method


def direct(obj: object, *names: str) -> None:
    """Bind each method ``name`` of ``obj``'s class (a subclass's override included) to ``obj`` itself,
    past Ray's tracing wrapper; a plain instance (outside Ray) gets the same methods it had.
    """
    cls = type(obj)
    for name in names:
        function = next((klass.__dict__[name] for klass in cls.__mro__ if name in klass.__dict__), None)
        if function is None:
            raise AttributeError(f"{cls.__name__} has no method {name!r} to call directly")
        while getattr(function, _RAY_MARK, False):
            function = function.__wrapped__
        setattr(obj, name, function.__get__(obj, cls))


def freeze_heap() -> None:
    """Move every object alive now out of the garbage collector's scans (see the module docstring)."""
    gc.collect()
    gc.freeze()
