"""actors/hot.py: an actor's calls to its own methods skip Ray's tracing wrappers. No Ray runtime:
the wrappers are Ray's own, applied as ``ray.remote`` applies them.
"""

from __future__ import annotations

import asyncio

import pytest
from ray.util.tracing.tracing_helper import _inject_tracing_into_class

from actors.hot import direct, freeze_heap


class Base:
    def hook(self, x: int) -> int:
        return x

    async def work(self, x: int) -> int:
        return x + 1


class User(Base):
    def hook(self, x: int) -> int:  # a user's override must be what is called
        return -x


def wrapped(cls: type) -> type:
    made = type(cls.__name__, (cls,), {})  # as ray.remote does: a subclass, wrapped
    _inject_tracing_into_class(made)
    return made


def test_the_class_own_functions_are_bound_past_the_wrappers() -> None:
    obj = wrapped(User)()
    assert type(obj).hook is not User.hook
    assert type(obj).hook.__ray_tracing_wrapped__
    direct(obj, "hook", "work")
    assert obj.hook.__func__ is User.hook
    assert obj.work.__func__ is Base.work
    assert obj.hook(3) == -3
    assert asyncio.run(obj.work(3)) == 4


def test_a_plain_instance_keeps_its_methods_and_a_missing_one_is_named() -> None:
    obj = User()
    direct(obj, "hook")
    assert obj.hook(2) == -2
    with pytest.raises(AttributeError, match="'nothing'"):
        direct(obj, "nothing")


def test_freeze_heap_takes_what_is_alive_out_of_the_collectors_scans() -> None:
    import gc

    try:
        freeze_heap()
        assert gc.get_freeze_count() > 1000  # at least this test process's modules
        assert all(count < 1000 for count in gc.get_count())
    finally:
        gc.unfreeze()
