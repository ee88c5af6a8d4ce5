"""The job's children: which ones a config asks for, and the one place each is created with its options.

Rules of this module:

1. Every child is a named actor in the job's namespace (``actors.core.naming``), restarted by Ray
   (``max_restarts=-1``); its restart options are set here and nowhere else. It gets its peers by
   name (``actors.handles.ActorName``), never as handles, and looks them up when it starts.
2. The configured children are created by the job's driver (``actors.launch``), which owns them; the
   ones created while running (a strategy added, a connection grown) are created by the Supervisor
   with ``detached=True``, so that they outlive a restart of the Supervisor.
3. A connection and its decoder run where ``where`` says: one bundle of a placement group
   (``actors.groups``), so raw frames stay on one node.
4. Tokens are known by the name of their variable (``feed.token_envs``); only the connection that
   uses one gets its value.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ray
from ray.util.placement_group import PlacementGroup
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from actors.builtin import BUILTIN
from actors.connection import Connection, ConnectionConfig
from actors.core.codes import endpoint_of
from actors.core.errors import ConfigError
from actors.core.naming import HEARTBEAT, REGISTRY, SUPERVISOR, connection_name, decoder_name, strategy_name
from actors.core.settings import Settings
from actors.core.tokens import Secret
from actors.decoder import Decoder
from actors.groups import in_bundle
from actors.handles import ActorName
from actors.heartbeat import Heartbeat
from actors.registry import Registry
from actors.strategy import Strategy, check_init, strategy_actor


def load_strategy_class(kind: str, key: str = "strategies.kind") -> type[Strategy]:
    """The class for a strategy ``kind``: "recorder", "console" or "package.module:Class".

    Raises:
        ConfigError: (naming ``key``) the module or class cannot be imported, or is not a Strategy subclass.

    """
    if kind in BUILTIN:
        return BUILTIN[kind]
    module_name, _, class_name = kind.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(
            key, f"cannot import {kind!r}: {exc}; is its package under the job's directory?"
        ) from None
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise ConfigError(key, f"{kind!r} is not a subclass of actors.Strategy")
    if (why := check_init(cls, kind)) is not None:
        raise ConfigError(key, why)
    return cls


def connection_ids(settings: Settings) -> dict[str, list[str]]:
    """Connection ids per configured endpoint: enough for the configured symbols within the plan
    (over every token: quotas add up). More are opened while running when subscriptions need them.
    """
    limits = settings.plan_limits()
    wanted: dict[str, set[str]] = {}
    for strategy in settings.strategies:
        for code in strategy.symbols:
            wanted.setdefault(endpoint_of(code).value, set()).add(code)
    most = limits.connections_per_token * len(settings.token_names())
    out = {}
    for endpoint in settings.endpoints:
        need = max(1, math.ceil(len(wanted.get(endpoint, ())) / limits.codes_per_connection))
        out[endpoint] = [f"{endpoint}-{i}" for i in range(min(need, most))]
    return out


def connection_tokens(settings: Settings) -> dict[str, str]:
    """The token (its variable's name) of each start-up connection: the tokens in turn, per endpoint,
    as actors.core.growth.Pool picks them for the connections it opens.
    """
    names = settings.token_names()
    return {c: names[i % len(names)] for ids in connection_ids(settings).values() for i, c in enumerate(ids)}


def token_map(settings: Settings, token: Secret | Mapping[str, Secret]) -> dict[str, Secret]:
    """Every token by the name of its variable. One ``Secret`` serves every name (tests, the simulator).

    Raises:
        ConfigError: key ``feed.token_envs``; a name has no token.

    """
    names = settings.token_names()
    if isinstance(token, Secret):
        return dict.fromkeys(names, token)
    missing = [n for n in names if n not in token]
    if missing:
        raise ConfigError("feed.token_envs", f"no token given for {', '.join(missing)}")
    return {n: token[n] for n in names}


def create_children(  # noqa: PLR0917 - the job's coordinates, passed in the order every caller has them
    settings: Settings,
    tokens: dict[str, Secret],
    run_id: str,
    namespace: str,
    created: list[Any],
    group: PlacementGroup,
) -> None:
    """Create every configured child, named in ``namespace``, each reporting to the Supervisor there.
    Connection ``k`` and decoder ``k`` share bundle ``k`` of ``group``.

    Nothing is awaited: their processes start in parallel, and ``Supervisor.start`` waits for them.
    Ray registers an actor's name when it is created, before it runs: each child finds the peers
    created before it.
    """
    s = settings
    ns = namespace
    conn_ids = connection_ids(s)
    created.append(
        ray.remote(Registry)
        .options(name=REGISTRY, namespace=ns, num_cpus=0, max_restarts=-1, max_task_retries=3)
        .remote(
            conn_ids,
            s.plan_limits().codes_per_connection,
            ns,
            f"tickvisor/{run_id}/registry",
            supervisor=ActorName(SUPERVISOR, ns),
            plan=s.feed.plan,
            max_connections=s.plan_limits().connections_per_token,
            tokens=s.token_names(),
            token_of=connection_tokens(s),
            close_after_s=s.feed.idle_connection_close_s,
            stale_after_s={endpoint: s.stale_after_s(endpoint) for endpoint in s.endpoints},
            open_grace_s={endpoint: s.open_grace_s(endpoint) for endpoint in s.endpoints},
            sessions=dict(s.feed.sessions),
        )
    )
    pairs = [(endpoint, conn_id) for endpoint, ids in conn_ids.items() for conn_id in ids]
    created.extend(create_decoder(s, ns, k, in_bundle(group, k)) for k in range(len(pairs)))
    token_of = connection_tokens(s)
    for k, (endpoint, conn_id) in enumerate(pairs):
        token = tokens[token_of[conn_id]]
        created.append(create_connection(s, ns, conn_id, endpoint, token, k, in_bundle(group, k)))
    check_every = min(s.feed.heartbeat_interval_s / 2, s.feed.silence_deadline_s / 4, 1.0)
    created.append(
        ray.remote(Heartbeat)
        .options(name=HEARTBEAT, namespace=ns, num_cpus=0, max_restarts=-1)
        .remote(
            {conn_id: ActorName(connection_name(conn_id), ns) for _, conn_id in pairs},
            ActorName(SUPERVISOR, ns),
            check_every_s=check_every,
            ping_deadline_s=s.feed.ping_deadline_s,
        )
    )
    for st in s.strategies:
        symbols, options = list(st.symbols), strategy_options(st)
        created.append(create_strategy(s, ns, st.name, st.kind, symbols, options))


def create_decoder(
    settings: Settings,
    namespace: str,
    decoder_id: int,
    where: PlacementGroupSchedulingStrategy,
    *,
    detached: bool = False,
) -> Any:
    """Create decoder ``decoder_id`` (named in ``namespace``) where ``where`` says; returns its handle."""
    lifetime = {"lifetime": "detached"} if detached else {}
    return (
        ray.remote(Decoder)
        .options(
            name=decoder_name(decoder_id),
            namespace=namespace,
            num_cpus=0,
            max_restarts=-1,
            max_task_retries=-1,
            scheduling_strategy=where,  # beside its connection: raw frames stay on the node
            **lifetime,
        )
        .remote(
            decoder_id,
            ActorName(REGISTRY, namespace),
            namespace,
            settings.feed.strategy_queue_batches,
            ActorName(SUPERVISOR, namespace),
            deliver_corrupt=settings.feed.deliver_corrupt,
            max_pending_ticks=settings.feed.strategy_queue_ticks,
        )
    )


def create_connection(  # noqa: PLR0917 - the pair's coordinates, as create_children passes them
    settings: Settings,
    namespace: str,
    conn_id: str,
    endpoint: str,
    token: Secret,
    decoder_id: int,
    where: PlacementGroupSchedulingStrategy,
    *,
    detached: bool = False,
) -> Any:
    """Create connection ``conn_id`` to ``endpoint``, feeding decoder ``decoder_id``; returns its handle."""
    s = settings
    cfg = ConnectionConfig(
        heartbeat_interval_s=s.feed.heartbeat_interval_s,
        silence_deadline_s=s.feed.silence_deadline_s,
        batch_max_frames=s.feed.batch_max_frames,
        batch_max_age_ms=s.feed.batch_max_age_ms,
        backoff_initial_s=s.restart.backoff_initial_s,
        backoff_max_s=s.restart.backoff_max_s,
        backoff_jitter=s.restart.backoff_jitter,
        transport=s.feed.transport,
    )
    lifetime = {"lifetime": "detached"} if detached else {}
    return (
        ray.remote(Connection)
        .options(
            name=connection_name(conn_id),
            namespace=namespace,
            num_cpus=0,
            max_restarts=-1,
            # In its pair's bundle, beside its decoder. The bundles spread over the nodes: losing
            # one node loses only its share, and Ray restarts those pairs on the nodes left.
            scheduling_strategy=where,
            **lifetime,
        )
        .remote(
            conn_id,
            endpoint,
            s.endpoints[endpoint].url,
            token,
            cfg,
            ActorName(decoder_name(decoder_id), namespace),
            ActorName(REGISTRY, namespace),
            ActorName(SUPERVISOR, namespace),
        )
    )


def create_strategy(  # noqa: PLR0917 - the strategy's coordinates, as create_children passes them
    settings: Settings,
    namespace: str,
    name: str,
    kind: str,
    symbols: list[str],
    options: dict[str, Any],
    *,
    detached: bool = False,
) -> Any:
    """Create strategy ``name`` of class ``kind`` (see ``load_strategy_class``); returns its handle."""
    lifetime = {"lifetime": "detached"} if detached else {}
    return (
        strategy_actor(load_strategy_class(kind))
        .options(
            name=strategy_name(name), namespace=namespace, max_restarts=-1, max_concurrency=64, **lifetime
        )
        .remote(
            name,
            symbols,
            options,
            registry=ActorName(REGISTRY, namespace),
            supervisor=ActorName(SUPERVISOR, namespace),
            queue_batches=settings.feed.strategy_queue_batches,
        )
    )


def strategy_options(strategy: Any) -> dict[str, Any]:
    """A configured strategy's options, its ``path`` (if any) made absolute."""
    options = dict(strategy.options)
    if strategy.path:
        options["path"] = str(Path(strategy.path).expanduser().resolve())
    return options
