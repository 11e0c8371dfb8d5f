"""The signed-in connections of this node, by device."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gim.internal.connect.session import Session


class Registry:
    def __init__(self) -> None:
        self._by_device: dict[int, Session] = {}
        self.connections: set[Session] = set()  # every open session, signed in or not

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
