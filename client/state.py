"""What `gim client` remembers between runs: one device per installation.

A small JSON file (default `$XDG_STATE_HOME/gim/client.json`, else
`~/.local/state/gim/client.json`) holds, per server (its LogicExt address) and phone
number, the devices this installation registered with their user id and last token:

    {"accounts": {"127.0.0.1:50001 18800000001": [
        {"device_id": 7, "user_id": 1, "token": "...", "pid": 4242}]}}

A run takes the first device no other running `gim client` holds (`pid` names the
process that holds it; a process that is gone holds nothing), so one terminal reuses
the same device every time and two terminals of the same user get two devices instead
of taking the device from each other. Reads and writes happen under an exclusive lock
on a `.lock` file beside it; the file is written whole (temporary file, then rename),
readable by its owner only (it holds tokens).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_log = logging.getLogger("gim.client.state")


@dataclasses.dataclass
class Device:
    device_id: int
    user_id: int = 0
    token: str = ""


def default_path() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "gim" / "client.json"


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


class StateFile:
    """The devices of each (server, phone), claimed by one running process at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @staticmethod
    def account(server: str, phone: str) -> str:
        return f"{server} {phone}"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        """The file's content, locked; written back when the block ends without error."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            data = self._read()
            yield data
            self._write(data)

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {"accounts": {}}
        except (OSError, ValueError) as exc:
            _log.warning("state file %s is unreadable (%s): starting a new one", self.path, exc)
            return {"accounts": {}}
        if not isinstance(data, dict) or not isinstance(data.get("accounts"), dict):
            _log.warning("state file %s has an unknown layout: starting a new one", self.path)
            return {"accounts": {}}
        return data

    def _write(self, data: dict[str, Any]) -> None:
        tmp = self.path.with_name(self.path.name + f".{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(data, out, indent=1)
        os.replace(tmp, self.path)

    @staticmethod
    def _entries(data: dict[str, Any], key: str) -> list[dict[str, Any]]:
        entries = data["accounts"].setdefault(key, [])
        if not isinstance(entries, list):
            entries = data["accounts"][key] = []
        return [e for e in entries if isinstance(e, dict) and isinstance(e.get("device_id"), int)]

    def claim(self, server: str, phone: str) -> Device | None:
        """A device of this account that no other running process holds, now held by
        this one; None when there is none (register a new device, then `keep` it)."""
        key = self.account(server, phone)
        with self._locked() as data:
            for entry in self._entries(data, key):
                if not _alive(entry.get("pid")):
                    entry["pid"] = os.getpid()
                    user_id, token = entry.get("user_id"), entry.get("token")
                    return Device(
                        entry["device_id"],
                        user_id if isinstance(user_id, int) else 0,
                        token if isinstance(token, str) else "",
                    )
        return None

    def keep(self, server: str, phone: str, device: Device, held: bool = True) -> None:
        """Remember `device` (its user and token) for this account, held by this process
        (`held`) or free for the next run. A device that replaced `device` under another
        id is a new entry."""
        key = self.account(server, phone)
        with self._locked() as data:
            entries = self._entries(data, key)
            entry = next((e for e in entries if e["device_id"] == device.device_id), None)
            if entry is None:
                entry = {"device_id": device.device_id}
                entries.append(entry)
            entry.update(user_id=device.user_id, token=device.token, pid=os.getpid() if held else None)
            data["accounts"][key] = entries

    def release(self, server: str, phone: str, device_ids: set[int]) -> None:
        """Let later runs take these devices (this process no longer holds them)."""
        key = self.account(server, phone)
        with self._locked() as data:
            for entry in self._entries(data, key):
                if entry["device_id"] in device_ids and entry.get("pid") == os.getpid():
                    entry["pid"] = None
