"""Connect's asyncio adapters around the protocol state machine (internal/connect/session.py,
tcp.py): what only they can get wrong, on a real connection."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest

from gim.pkg.limits import FRAME_MAX
from gim.pkg.pb import connect_ext_pb2 as cx
from gim.pkg.protocol.machine import Connection
from gim.pkg.protocol.packets import Encoded, output

if TYPE_CHECKING:
    from gimtest.cluster import Cluster
    from gimtest.connections import Conns


async def test_an_answer_too_large_for_a_tcp_frame_closes_the_connection(
    cluster: Cluster, conns: Conns, log_events: list[dict[str, Any]]
) -> None:
    """Never from a current logic (answers and pushes fit a frame by construction); if it
    happened, the connection closes instead of leaving the client waiting."""
    (creds,) = await cluster.new_user()
    conn = await conns.open("tcp", creds)
    session = cluster.connect.registry.get(creds.device_id)
    assert session is not None
    session.transport.send(Encoded(output(cx.PT_SYNC, 1, data=b"x" * FRAME_MAX)))
    await asyncio.wait_for(conn.closed.wait(), 10)
    assert session.closed and cluster.connect.registry.get(creds.device_id) is None
    assert [e["error"] for e in log_events if e["event"] == "output_too_large"] != []


async def test_a_bug_handling_logics_answer_closes_the_connection(
    cluster: Cluster, conns: Conns, log_events: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    (creds,) = await cluster.new_user()
    conn = await conns.open("tcp", creds)
    session = cluster.connect.registry.get(creds.device_id)
    assert session is not None

    def broken(self: Connection, call: Any, outcome: Any) -> list[Any]:
        raise RuntimeError("a bug")

    monkeypatch.setattr(Connection, "answered", broken)
    await conn.send(cx.PT_SYNC, cx.SyncInput(seq=0).SerializeToString(), request_id=3)
    await asyncio.wait_for(conn.closed.wait(), 10)
    assert session.closed
    assert [e["event"] for e in log_events if e["event"] == "packet_failed"] == ["packet_failed"]
