"""The connections of this node: every open one, the signed-in ones by device, and rooms."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gim.internal.connect.session import Session


class Registry:
    def __init__(self) -> None:
        self._by_device: dict[int, Session] = {}
        self._rooms: dict[int, set[Session]] = {}
        self.connections: set[Session] = set()  # every open session, signed in or not
        self.arriving: dict[int, Session] = {}  # devices signing in here now -> that connection

    def __len__(self) -> int:
        return len(self._by_device)

    def get(self, device_id: int) -> Session | None:
        return self._by_device.get(device_id)

    def bind(self, device_id: int, session: Session) -> Session | None:
        """Make `session` the device's connection; returns the one it replaces."""
        old = self._by_device.get(device_id)
        self._by_device[device_id] = session
        return old if old is not session else None

    def unbind(self, device_id: int, session: Session) -> bool:
        """Forget the device's connection if it is still `session`."""
        if self._by_device.get(device_id) is session:
            del self._by_device[device_id]
            return True
        return False

    def signed_in(self) -> list[Session]:
        """A snapshot: pushing may close (and so unregister) a session."""
        return list(self._by_device.values())

    # -- rooms (a connection is in at most one; the session keeps its room_id) -------

    def join(self, room_id: int, session: Session) -> None:
        self._rooms.setdefault(room_id, set()).add(session)

    def leave(self, room_id: int, session: Session) -> None:
        members = self._rooms.get(room_id)
        if members is not None:
            members.discard(session)
            if not members:
                del self._rooms[room_id]

    def members(self, room_id: int) -> list[Session]:
        """A snapshot of the room's sessions (empty for an unknown room)."""
        return list(self._rooms.get(room_id, ()))

    def stats(self) -> dict[str, int]:
        return {
            "connections": len(self.connections),
            "signed_in": len(self._by_device),
            "rooms": len(self._rooms),
            "room_members": sum(len(m) for m in self._rooms.values()),
        }
