"""The alarm clock of a sync actor (actors/alarm.py): it rings its owner's ``wake``.

On time or when refs are done; the newest arm wins whatever order Ray runs the arms in.
"""

from __future__ import annotations

from typing import Any

import pytest
import ray

from actors.alarm import Alarm
from tests.conftest import wait_for

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_session")]


class Bell:
    """Counts the rings."""

    def __init__(self) -> None:
        self.rings = 0

    def wake(self) -> None:
        self.rings += 1

    def count(self) -> int:
        return self.rings


def rings(bell: Any) -> int:
    return int(ray.get(bell.count.remote(), timeout=30))


def test_the_newest_arm_rings_and_an_older_one_is_ignored() -> None:
    bell: Any = ray.remote(Bell).options(num_cpus=0).remote()
    alarm: Any = ray.remote(Alarm).options(num_cpus=0).remote(bell)
    try:
        wait_for(lambda: rings(bell) == 1, 30, what="the alarm's start-up ring")
        ray.get(alarm.arm.remote(2, 0.0), timeout=30)
        ray.get(alarm.arm.remote(1, 3600.0), timeout=30)  # an older generation, run late: ignored
        wait_for(lambda: rings(bell) == 2, 10, what="the ring of the newest arm")
        ray.get(alarm.arm.remote(3, 3600.0), timeout=30)
        ray.get(alarm.wake_when.remote([ray.put(1)]), timeout=30)
        wait_for(lambda: rings(bell) == 3, 10, what="the ring once the ref is done")
    finally:
        for actor in (alarm, bell):
            ray.kill(actor, no_restart=True)
