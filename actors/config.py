"""The configuration file: read it and hand its text to ``actors.core.settings.parse_settings``.

The one place the settings touch the file system; the core stays pure and takes text. The trading
sessions are checked here too (``actors.calendars.check_sessions``): that check reads the zone database.
"""

from __future__ import annotations

import os
from pathlib import Path

from actors.calendars import check_sessions
from actors.core.errors import ConfigError
from actors.core.settings import Settings, parse_settings


def load_settings(path: str | os.PathLike[str]) -> Settings:
    """Read and validate the configuration file at ``path``.

    Args:
        path: the TOML file.

    Raises:
        ConfigError: the file is missing, unreadable or not UTF-8 (the message names the path), or see
            ``parse_settings``; ``[feed.sessions]`` names an unknown calendar or zone, or a malformed window.

    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("", f"config file {str(file)!r} does not exist") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            "", f"config file {str(file)!r} is not UTF-8 text (bad byte at {exc.start})"
        ) from None
    except OSError as exc:
        raise ConfigError("", f"cannot read config file {str(file)!r}: {exc.strerror or exc}") from None
    settings = parse_settings(text, source=str(file))
    check_sessions(settings, str(file))
    return settings
