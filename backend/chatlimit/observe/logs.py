"""Logs: LOG_FORMAT=text|json for the whole process, and the throttled refusal line.

A JSON line carries time, level, replica, logger, event and message, plus the fields a line
names with `extra=` (policy, identity, suppressed...). Identities in logs are the hashed
storage identities (limiter/identity.py), never a raw address, User-Agent or key.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Fields a LogRecord always has; anything else on it came from `extra=` and goes in the line.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}

refusals = logging.getLogger("chatlimit.refusals")


class JsonFormatter(logging.Formatter):
    def __init__(self, replica: str) -> None:
        super().__init__()
        self.replica = replica

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "replica": self.replica,
            "logger": record.name,
            "event": getattr(record, "event", "log"),
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in line:
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure_logging(level: str, log_format: str, replica: str) -> None:
    """The root handler for `chatlimit serve`: uvicorn's loggers propagate to it in json mode
    (cli.py passes log_config=None then), so every line of the process is one JSON object."""
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter(replica))
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


class RefusalLog:
    """One line per refusal, at most one a second: a burst of 10,000 refusals is one line per
    second saying how many it stood for, not 10,000 lines."""

    def __init__(self, *, shadow: bool, clock: Callable[[], float] = time.monotonic) -> None:
        self.shadow = shadow
        self.clock = clock
        self._next = 0.0
        self._suppressed = 0

    def refused(self, policy: str, kind: str, identity: str) -> None:
        now = self.clock()
        if now < self._next:
            self._suppressed += 1
            return
        self._next = now + 1.0
        suppressed, self._suppressed = self._suppressed, 0
        event = "would_refuse" if self.shadow else "refused"
        what = "shadow mode, let through" if self.shadow else "refused"
        refusals.info(
            "rate limit %s: policy=%s kind=%s identity=%s (+%d more since the last line)",
            what, policy, kind, identity, suppressed,
            extra={"event": event, "policy": policy, "kind": kind, "identity": identity,
                   "suppressed": suppressed},
        )
