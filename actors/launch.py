"""``launch``: create a job's Supervisor, its placement group and its configured children, in the driver.

Rules of this module:

1. ``launch()`` runs in the job's driver (``supervisor.py``, ``actors.control.Job.start``), which so
   owns every actor it creates. Ray makes an actor fate-share with the process that created it: a
   Supervisor that created its children would take them down when its process died. Owned by the
   driver, they outlive a SIGKILL of the Supervisor, and still die with the driver, so a job whose
   driver dies leaves nothing running.
2. The Supervisor's restart options are set here (the children's: ``actors.children``). Ray restarts
   a killed Supervisor, and calls made to it meanwhile wait for it (``max_task_retries=-1``).
3. All or nothing: when a child cannot be created, whatever was created is killed again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any, NamedTuple

import ray

from actors.children import connection_ids, create_children, token_map
from actors.core.naming import SUPERVISOR
from actors.core.settings import Settings
from actors.core.tokens import Secret
from actors.groups import remove_group, startup_group
from actors.supervisor import Supervisor

NAMESPACE = "tickvisor"


class Launched(NamedTuple):
    """What ``launch`` created. The caller must keep it as long as the job runs: Ray ends a
    non-detached actor once the process that created it holds no handle to it any more.
    """

    supervisor: Any
    children: list[Any]


def launch(
    settings: Settings, token: Secret | Mapping[str, Secret], run_id: str, namespace: str = NAMESPACE
) -> Launched:
    """Create the Supervisor and every configured child from the calling process, the job's driver,
    which owns them all. Call ``start`` on the Supervisor next.

    ``token`` is one token, or every token by its variable's name (``feed.token_envs``).

    Raises:
        ValueError: an actor of one of these names already runs in ``namespace`` (another job runs
            there); whatever was created is killed again.
        ConfigError: a strategy's ``kind`` cannot be imported, or a token's name has no token.

    """
    tokens = token_map(settings, token)
    # One bundle per start-up connection, shared with its decoder (actors.core.placement); owned by
    # this driver like the children, so it goes with the driver too.
    group = startup_group(run_id, sum(len(ids) for ids in connection_ids(settings).values()))
    supervisor = (
        ray.remote(Supervisor)
        .options(
            name=SUPERVISOR,
            namespace=namespace,
            num_cpus=0,
            max_concurrency=256,
            max_restarts=-1,  # a killed Supervisor comes back and finds its children by name
            max_task_retries=-1,  # calls to it wait for the restart instead of failing
        )
        .remote(settings, tokens, run_id, namespace, group)
    )
    created: list[Any] = []
    try:
        create_children(settings, tokens, run_id, namespace, created, group)
    except BaseException:
        for handle in [supervisor, *created]:
            with contextlib.suppress(Exception):
                ray.kill(handle, no_restart=True)
        remove_group(group)
        raise
    return Launched(supervisor, created)
