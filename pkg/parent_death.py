"""A child process that ends with its parent: the services `gim run` (or a test's
launcher) starts must not outlive it, however it ends (Ctrl-C, SIGHUP from a closed
terminal, SIGKILL, a crash).

On Linux the kernel does it: `prctl(PR_SET_PDEATHSIG, sig)` sends `sig` to this process
when the thread that forked it ends. Elsewhere a daemon thread notices the parent is gone
(this process is re-parented) within a second and sends `sig` itself.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
POLL_INTERVAL = 1.0  # seconds, where there is no PR_SET_PDEATHSIG


def die_with_parent(parent_pid: int, sig: int = signal.SIGTERM) -> bool:
    """From now on, receive `sig` when `parent_pid` (this process's parent) ends.

    Returns False if the parent is already gone (it died before this could be set up):
    the caller should then exit at once, nobody will send `sig` any more.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"prctl(PR_SET_PDEATHSIG): {os.strerror(errno)}")
    else:
        threading.Thread(target=_watch, args=(parent_pid, sig), name="parent-death", daemon=True).start()
    # checked after setting it up: a parent that ended just before is seen here
    return os.getppid() == parent_pid


def _watch(parent_pid: int, sig: int) -> None:
    event = threading.Event()
    while os.getppid() == parent_pid:
        event.wait(POLL_INTERVAL)
    os.kill(os.getpid(), sig)
