"""Connections not signed in yet, capped per client address: exempt networks are not."""

from __future__ import annotations

from gim.internal.connect.pending import PendingByAddress
from gim.pkg.ratelimit import networks


def test_each_address_is_capped_unless_its_network_is_exempt() -> None:
    pending = PendingByAddress(2, networks("127.0.0.0/8,::1"))
    for _ in range(5):  # asked again and again: the same answer (it is remembered)
        assert pending.admit("127.0.0.1") and pending.admit("::1")
    assert pending.admit("10.0.0.1") and pending.admit("10.0.0.1")
    assert pending.full("10.0.0.1") and not pending.admit("10.0.0.1")
    assert pending.count("10.0.0.1") == 2 and pending.count("127.0.0.1") == 5
    pending.release("10.0.0.1")
    assert pending.admit("10.0.0.1") and not pending.admit("10.0.0.1")
    assert pending.admit("10.0.0.2"), "each address has its own count"


def test_no_cap_admits_everybody() -> None:
    pending = PendingByAddress(0, networks(""))
    assert all(pending.admit("10.0.0.1") for _ in range(1000))
