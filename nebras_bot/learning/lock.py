"""A lock file so that two ``nebras learn`` runs (cron, CI, a person) never overlap.

``fcntl.flock`` is released by the kernel when the process ends, so a crashed run never leaves a
stale lock behind; the file records who holds it, for the error message.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import IO, Optional


class LockHeld(RuntimeError):
    """Another run holds the lock."""


class RunLock:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._handle: Optional[IO[str]] = None

    def __enter__(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise LockHeld(f"another `nebras learn` run holds {self.path} ({holder})") from None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}))
        handle.flush()
        self._handle = handle
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.seek(0)
            self._handle.truncate()
            fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None
