"""`python -m gim.internal.reaper LAUNCHER_PID PID...`: SIGTERM to each PID when the
launcher ends, however it ends (SIGKILL and crashes included).

For the children of `gim run` that cannot watch their parent themselves: the embedded
redis-server. The reaper gets SIGTERM from the kernel when the launcher ends
(`pkg.parent_death`) and passes it on; it holds a pidfd of each process, so a PID reused
since by another process is never signalled. A launcher that stops normally stops those
processes itself and then kills the reaper.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys

from gim.pkg.parent_death import die_with_parent

WAKE = {signal.SIGTERM, signal.SIGHUP, signal.SIGINT}


def main(argv: list[str]) -> None:
    launcher, pids = int(argv[0]), [int(arg) for arg in argv[1:]]
    handles = _handles(pids)
    signal.pthread_sigmask(signal.SIG_BLOCK, WAKE)  # delivered to sigwait below, not fatal
    if die_with_parent(launcher):
        signal.sigwait(WAKE)
    for pid, handle in handles.items():
        with contextlib.suppress(ProcessLookupError):
            if handle is None:
                os.kill(pid, signal.SIGTERM)
            else:
                signal.pidfd_send_signal(handle, signal.SIGTERM)


def _handles(pids: list[int]) -> dict[int, int | None]:
    """A pidfd per process still alive (None where there are no pidfds: not Linux)."""
    handles: dict[int, int | None] = {}
    for pid in pids:
        if not hasattr(os, "pidfd_open"):
            handles[pid] = None
            continue
        with contextlib.suppress(ProcessLookupError):
            handles[pid] = os.pidfd_open(pid)
    return handles


if __name__ == "__main__":
    main(sys.argv[1:])
