"""The one logger of the Ray shells: loguru, at INFO unless ``LOGURU_LEVEL`` says otherwise.

loguru's own default level is DEBUG. Configuring the handler here, when a shell first imports this
module, gives every process the same level (a job submitted to a cluster included) without writing
``os.environ``. The pure core (``actors.core``) never logs.
"""

from __future__ import annotations

import os
import sys

from loguru import logger

DEFAULT_LEVEL = "INFO"

logger.remove()
logger.add(sys.stderr, level=os.environ.get("LOGURU_LEVEL", DEFAULT_LEVEL))

__all__ = ["logger"]
