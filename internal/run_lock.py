"""One `gim run` per var folder: `<var>/gim.pid`, locked (flock) while it runs.

The lock goes with the process however it ends (the kernel releases it, also on
SIGKILL), so a stale file never blocks a new run; the PID inside only names the holder
in the message a second `gim run` prints.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class AlreadyRunning(Exception):
    """Another process holds the lock; `str()` is the line to show."""

    def __init__(self, folder: Path, pid: str) -> None:
        holder = f"pid {pid}" if pid else "another process"
        stop = f"Ctrl-C in its terminal, or kill {pid}" if pid else "Ctrl-C in its terminal"
        super().__init__(f"gim is already running in {folder}/ ({holder}); stop it first ({stop})")
        self.pid = int(pid) if pid.isdigit() else None


class RunLock:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / "gim.pid"
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock and write this PID, or raise `AlreadyRunning`."""
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by children (O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            raise AlreadyRunning(self.folder, holder) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)  # the file stays: removing it would race with a new run
            os.close(self._fd)  # closing releases the lock
            self._fd = None
