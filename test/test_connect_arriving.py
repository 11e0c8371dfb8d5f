"""A push for a device that is signing in on this node, before its new connection takes
the device, is noted on that connection (its first sync then goes to logic)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gim.internal.connect.api import ConnectIntServicer
from gim.internal.connect.registry import Registry
from gim.pkg.pb import connect_ext_pb2 as cx
from gim.pkg.pb import connect_int_pb2 as ci

if TYPE_CHECKING:
    from gimtest.cluster import Cluster


class Arriving:
    def __init__(self) -> None:
        self.missed = 0

    def missed_push(self) -> None:
        self.missed += 1


def delivery(device_id: int, seq: int) -> ci.DeliverMessageReq:
    message = cx.Message(seq=seq, receiver_type=cx.RT_USER, receiver_id=5)
    return ci.DeliverMessageReq(device_id=device_id, user_id=5, message_send=cx.MessageSend(message=message))


def test_a_push_for_a_device_still_signing_in_is_noted_on_its_connection() -> None:
    registry = Registry()
    arriving = Arriving()
    registry.arriving[7] = arriving  # type: ignore[assignment]  # only missed_push is called
    servicer = ConnectIntServicer(registry)
    assert servicer._push(delivery(7, 3)) is False, "no connection holds the device yet"
    assert servicer._push(delivery(8, 3)) is False
    assert arriving.missed == 1, "only the device signing in"


async def test_a_device_signing_in_names_its_arriving_connection(cluster: Cluster) -> None:
    context = cluster.connect.context
    assert context is not None
    arriving = Arriving()
    async with context.signing_in(987_654_321, arriving):  # type: ignore[arg-type]  # only missed_push is called
        assert context.registry.arriving[987_654_321] is arriving
    assert 987_654_321 not in context.registry.arriving, "gone once signed in (or not)"
