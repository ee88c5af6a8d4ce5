"""The AllTick token: read from the environment, held as a ``Secret``, put in a url, redacted from text.

Pure: no I/O, no clock; the environment is a mapping the caller passes (``os.environ``).

Rules of this module:

1. The token never lives in the config file, only the NAME of the environment variable holding it.
2. In memory it is a ``Secret`` that prints as ``***``; only ``endpoint_url`` reveals it, for the socket.
3. No message built here contains a token: messages name the variable, and urls pass through ``redact``
   before they are shown.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final
from urllib.parse import quote, urlsplit, urlunsplit

from actors.core.errors import ConfigError

if TYPE_CHECKING:
    from actors.core.settings import Settings

#: The token the bundled simulator accepts when the token's environment variable is unset.
SIMULATOR_TOKEN: Final = "tickvisor-sim"  # noqa: S105 - public: only the local simulator accepts it
_TOKEN_RE: Final = re.compile(r"(token=)[^&#\s]*", re.IGNORECASE)


class Secret:
    """Holds the token. Prints as ``***``; ``reveal()`` returns it.

    ``__reduce__`` keeps it picklable because Ray must ship it to the connection actors; ``repr``,
    ``str`` and formatting never show it, so logging a Secret (or a Struct holding one) is safe.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        """Wrap ``value``.

        Args:
            value: the token, a non-empty string.

        Raises:
            ValueError: ``value`` is not a non-empty string.

        """
        if not isinstance(value, str) or not value:
            raise ValueError("a Secret holds a non-empty string")
        self._value = value

    def reveal(self) -> str:
        """The token itself: for the socket only, never for a message."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> tuple[type[Secret], tuple[str]]:
        return (Secret, (self._value,))


def resolve_token(settings: Settings, environ: Mapping[str, str]) -> Secret:
    """The token from the environment variable named by ``feed.token_env``.

    With the simulator enabled and the variable unset (or empty), the simulator's fixed token.

    Args:
        settings: the job's settings.
        environ: the environment (pass ``os.environ``).

    Raises:
        ConfigError: key ``feed.token_env``; the variable is unset, empty or blank and the simulator is
            not enabled. The message names the variable, never a value.

    """
    name = settings.feed.token_env
    value = environ.get(name)
    token = value.strip() if value is not None else ""
    if token:
        return Secret(token)
    if settings.simulator.enabled:
        return Secret(SIMULATOR_TOKEN)
    state = "is not set" if value is None else "is empty"
    raise ConfigError(
        "feed.token_env",
        f"the environment variable {name} {state}; export {name}=<your AllTick token>, "
        "or enable [simulator] to run against the bundled simulator",
    )


def resolve_tokens(settings: Settings, environ: Mapping[str, str]) -> dict[str, Secret]:
    """Every token, by the name of its variable (``feed.token_envs``, or the one ``feed.token_env``).

    With the simulator enabled, a variable unset or empty gives the simulator's fixed token.

    Raises:
        ConfigError: key ``feed.token_env`` or ``feed.token_envs[i]``: a variable is unset, empty or
            blank (and the simulator is not enabled), or two variables hold the same token. Messages
            name the variables, never a value.

    """
    if not settings.feed.token_envs:
        return {settings.feed.token_env: resolve_token(settings, environ)}
    out: dict[str, Secret] = {}
    for i, name in enumerate(settings.feed.token_envs):
        value = environ.get(name)
        token = value.strip() if value is not None else ""
        if not token:
            if settings.simulator.enabled:
                out[name] = Secret(SIMULATOR_TOKEN)
                continue
            state = "is not set" if value is None else "is empty"
            raise ConfigError(
                f"feed.token_envs[{i}]",
                f"the environment variable {name} {state}; export {name}=<an AllTick token>, or remove "
                "it from feed.token_envs",
            )
        same = [other for other, secret in out.items() if secret == Secret(token)]
        if same:
            raise ConfigError(
                f"feed.token_envs[{i}]",
                f"{name} holds the same token as {same[0]}; each entry must be a different token "
                "(one token's quota does not grow by listing it twice)",
            )
        out[name] = Secret(token)
    return out


def endpoint_url(url: str, token: Secret) -> str:
    """``url`` with ``token=`` appended to its query: for opening the socket, never for printing.

    Args:
        url: an endpoint url from the settings (``redact`` it before showing it anywhere).
        token: the token.

    Raises:
        ValueError: the url already carries a token.

    """
    if "token=" in url.lower():
        raise ValueError(f"the url already carries a token: {redact(url)}")
    parts = urlsplit(url)
    param = f"token={quote(token.reveal(), safe='')}"
    query = f"{parts.query}&{param}" if parts.query else param
    return urlunsplit(parts._replace(query=query))


def redact(url: str) -> str:
    """``url`` (or any text) with every ``token=...`` value replaced by ``***``.

    Args:
        url: the text to show.

    """
    return _TOKEN_RE.sub(r"\1***", url)
