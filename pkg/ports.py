"""Is a listen address free, and if not, which process holds it.

A service checks its listen addresses before it starts (one clear line naming the
address, the setting and the process in the way, instead of a bind error from deep inside
gRPC or asyncio), and `gim run` checks every service's before it starts anything. The
holder is found in /proc (Linux, processes of this user); elsewhere it is not named.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from pathlib import Path

TCP_LISTEN = "0A"  # socket state in /proc/net/tcp

EPHEMERAL_HINT = (
    "no process of this user listens there: another user's may, or an outgoing connection "
    "holds it for a while when it is inside the kernel's ephemeral range (net.ipv4.ip_local_port_range; "
    "reserve the service ports with net.ipv4.ip_local_reserved_ports), or listen on another port"
)


class PortTaken(OSError):
    """A listen address that cannot be bound; `str()` is the one line to show."""

    def __init__(self, addr: str, setting: str, why: str, holder: int | None = None) -> None:
        super().__init__(errno.EADDRINUSE, f"cannot listen on {addr} ({setting}): {why}")
        self.addr = addr
        self.holder = holder

    def __str__(self) -> str:
        return str(self.strerror)


def check_free(host: str, port: int, setting: str) -> None:
    """Raise `PortTaken` unless `host:port` can be bound now (port 0 always can).

    Binds the way the servers do (SO_REUSEADDR, every address the host resolves to), so
    a port left in TIME_WAIT by an earlier run counts as free, a listener does not.
    """
    addr = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise PortTaken(addr, setting, f"cannot resolve {host!r}: {exc.strerror}") from None
    bound = 0
    for family, kind, proto, _, sockaddr in infos:
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(sockaddr)
                bound += 1
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    holder = listener_pid(port)
                    why = f"in use by {describe(holder)}" if holder else f"in use; {EPHEMERAL_HINT}"
                    raise PortTaken(addr, setting, why, holder) from None
                if exc.errno not in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
                    raise PortTaken(addr, setting, exc.strerror or str(exc)) from None
    if not bound:
        raise PortTaken(addr, setting, "not an address of this host")


def listener_pid(port: int) -> int | None:
    """The PID of a process (of this user) with a socket listening on TCP `port`."""
    inodes = _listening_inodes(port)
    if not inodes:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):  # gone, or not ours
            for fd in (proc / "fd").iterdir():
                with contextlib.suppress(OSError):
                    link = os.readlink(fd)
                    if link.startswith("socket:[") and link[8:-1] in inodes:
                        return int(proc.name)
    return None


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state == TCP_LISTEN and int(local.rsplit(":", 1)[1], 16) == port:
                    inodes.add(inode)
    return inodes


def command_line(pid: int) -> str:
    """What `pid` runs, as `ps` shows it ("" if it is gone or not readable)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return " ".join(arg.decode(errors="replace") for arg in raw.rstrip(b"\0").split(b"\0"))


def parent_pid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])  # after "(comm)": state, ppid


def describe(pid: int) -> str:
    """`pid 4242 (gim logic, started by gim run pid 4200)`, or its command line."""
    command = command_line(pid)
    for service in ("business", "logic", "connect"):
        if f"gim.cmd.{service}" in command or command.endswith(f"gim-{service}"):
            parent = parent_pid(pid)
            if parent and _is_gim_run(command_line(parent)):
                return f"pid {pid} (gim {service}, started by gim run pid {parent})"
            return f"pid {pid} (gim {service})"
    if _is_gim_run(command):
        return f"pid {pid} (gim run)"
    return f"pid {pid} ({command[:80] or 'unknown'})"


def _is_gim_run(command: str) -> bool:
    words = command.split()
    return "run" in words and any(w.endswith("gim") or w.endswith("gim.cmd.gim") for w in words)
