"""The client SDK end to end against the real services: chat, backlog plus realtime
exactly once, and every way a connection can fail (server close, unparseable frame,
silent peer, rejected token, a connect process killed and restarted mid-stream)."""

from __future__ import annotations

import asyncio
import signal
import uuid
from typing import TYPE_CHECKING

import pytest

from gim.client import Client, Credentials, Message, Timing
from gim.client.events import text
from gim.pkg.errors import Code, GimError
from gim.pkg.pb import connect_ext_pb2 as cx
from gim.pkg.redis_client import free_port

if TYPE_CHECKING:
    from gimtest.callables import ConnectNodes, SdkClients
    from gimtest.cluster import Cluster
    from gimtest.connections import FaultProxy


WAIT = 20.0  # bound on any single wait for an event


async def take(client: Client, count: int) -> list[Message]:
    events = []
    for _ in range(count):
        event = await client.next_event(WAIT)
        assert isinstance(event, Message), event
        events.append(event)
    return events


def assert_stream(events: list[Message], first: int, count: int) -> None:
    assert [e.seq for e in events] == list(range(first, first + count)), "gapless, no duplicate"


async def send_texts(api, sender: Credentials, to: int, labels: list[str]) -> None:  # type: ignore[no-untyped-def]
    for label in labels:
        await api.send_message(sender, cx.RT_USER, to, text(label))


@pytest.mark.parametrize("transport", ["tcp", "ws"])
async def test_two_clients_chat_with_typed_events_in_order(
    cluster: Cluster, sdk_client: SdkClients, transport: str
) -> None:
    (alice_creds,) = await cluster.new_user()
    (bob_creds,) = await cluster.new_user()
    await cluster.api.update_user(alice_creds, nickname="Alice")
    where = {"ws_url": cluster.ws_url} if transport == "ws" else {}
    alice = await sdk_client(alice_creds, **where)
    bob = await sdk_client(bob_creds, **where)

    seq = await alice.send_text(bob.user_id, "hello bob")
    own = await alice.next_event(WAIT)  # the sender's own stream has its message at its seq
    assert isinstance(own, Message) and (own.seq, own.text, own.sender.id) == (seq, "hello bob", alice.user_id)
    got = await bob.next_event(WAIT)
    assert isinstance(got, Message)
    assert (got.seq, got.text, got.message_type) == (1, "hello bob", cx.MT_TEXT)
    assert (got.sender.type, got.sender.id, got.sender.name) == (cx.ST_USER, alice.user_id, "Alice")
    assert (got.receiver_type, got.receiver_id) == (cx.RT_USER, bob.user_id)
    assert got.send_time > 0 and got.status == cx.MS_NORMAL

    for i in range(5):
        await bob.send_text(alice.user_id, f"reply {i}")
    replies = await take(alice, 5)
    assert_stream(replies, seq + 1, 5)
    assert [r.text for r in replies] == [f"reply {i}" for i in range(5)]
    mine = await take(bob, 5)
    assert_stream(mine, 2, 5)
    assert bob.pending() == 0 and alice.pending() == 0


async def test_backlog_by_sync_then_realtime_exactly_once(cluster: Cluster, sdk_client: SdkClients) -> None:
    (alice,) = await cluster.new_user()
    (bob_creds,) = await cluster.new_user()
    await send_texts(cluster.api, alice, bob_creds.user_id, [f"old {i}" for i in range(120)])
    bob = await sdk_client(bob_creds, start=False)
    # more arrive while bob connects and pages through the backlog (pushes held and merged)
    sender = asyncio.create_task(send_texts(cluster.api, alice, bob_creds.user_id, [f"new {i}" for i in range(40)]))
    await bob.start(timeout=WAIT)
    events = await take(bob, 160)
    await sender
    assert_stream(events, 1, 160)
    assert [e.text for e in events] == [f"old {i}" for i in range(120)] + [f"new {i}" for i in range(40)]
    assert bob.last_seq == 160


async def test_acks_let_the_next_session_start_after_what_was_taken(cluster: Cluster, sdk_client: SdkClients) -> None:
    (alice,) = await cluster.new_user()
    (bob_creds,) = await cluster.new_user()
    await send_texts(cluster.api, alice, bob_creds.user_id, ["a", "b", "c"])
    first = await sdk_client(bob_creds)
    assert [e.seq for e in await take(first, 3)] == [1, 2, 3]
    await first.close()  # acked 3 on the way
    await send_texts(cluster.api, alice, bob_creds.user_id, ["d"])
    again = await sdk_client(bob_creds)  # last_seq unknown: starts after the device acks
    (event,) = await take(again, 1)
    assert (event.seq, event.text) == (4, "d")


async def test_server_closing_the_connection_reconnects_without_loss(
    cluster: Cluster, sdk_client: SdkClients, fault_proxy: FaultProxy
) -> None:
    (alice,) = await cluster.new_user()
    (bob_creds,) = await cluster.new_user()
    bob = await sdk_client(bob_creds, tcp=fault_proxy.addr)
    await send_texts(cluster.api, alice, bob.user_id, [f"m{i}" for i in range(10)])
    events = await take(bob, 5)
    fault_proxy.drop()
    await send_texts(cluster.api, alice, bob.user_id, [f"m{i}" for i in range(10, 20)])
    events += await take(bob, 15)
    assert_stream(events, 1, 20)
    assert [e.text for e in events] == [f"m{i}" for i in range(20)]
    assert bob.sign_ins == 2 and fault_proxy.accepted == 2


async def test_unparseable_frame_drops_the_connection_and_resyncs(
    cluster: Cluster, sdk_client: SdkClients, fault_proxy: FaultProxy
) -> None:
    (alice,) = await cluster.new_user()
    (bob_creds,) = await cluster.new_user()
    bob = await sdk_client(bob_creds, tcp=fault_proxy.addr)
    await send_texts(cluster.api, alice, bob.user_id, ["before"])
    events = await take(bob, 1)
    fault_proxy.inject(b"\xff\xff\xff\xff")  # not an Output
    await send_texts(cluster.api, alice, bob.user_id, ["after 1", "after 2"])
    events += await take(bob, 2)
    assert_stream(events, 1, 3)
    assert bob.sign_ins == 2


async def test_unparseable_push_payload_drops_the_connection(
    cluster: Cluster, sdk_client: SdkClients, fault_proxy: FaultProxy
) -> None:
    (alice,) = await cluster.new_user()
    (bob_creds,) = await cluster.new_user()
    bob = await sdk_client(bob_creds, tcp=fault_proxy.addr)
    fault_proxy.inject(cx.Output(type=cx.PT_MESSAGE, data=b"\x0a\x05ab").SerializeToString())  # truncated
    await send_texts(cluster.api, alice, bob.user_id, ["x", "y"])
    assert_stream(await take(bob, 2), 1, 2)
    assert bob.sign_ins == 2


async def test_heartbeat_without_answer_reconnects(
    cluster: Cluster, sdk_client: SdkClients, fault_proxy: FaultProxy
) -> None:
    (alice,) = await cluster.new_user()
    (bob_creds,) = await cluster.new_user()
    bob = await sdk_client(bob_creds, tcp=fault_proxy.addr, heartbeat_interval=0.1, heartbeat_timeout=0.3)
    await send_texts(cluster.api, alice, bob.user_id, ["1"])
    events = await take(bob, 1)
    fault_proxy.blackhole()  # the peer still holds the socket but never answers again
    await send_texts(cluster.api, alice, bob.user_id, ["2", "3"])  # pushed into the hole
    events += await take(bob, 2)
    assert_stream(events, 1, 3)
    assert bob.sign_ins == 2


async def test_silent_server_on_first_sign_in_times_out_and_retries(cluster: Cluster) -> None:
    """A peer that accepts and never answers: start() keeps retrying within its timeout."""
    accepted = asyncio.Event()
    held: list[asyncio.StreamWriter] = []

    async def silent(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        if len(held) >= 2:
            accepted.set()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    (creds,) = await cluster.new_user()
    timing = Timing(request_timeout=0.2, backoff_initial=0.01, backoff_max=0.05)
    client = Client(credentials=creds, api=cluster.api, tcp=server.sockets[0].getsockname()[:2], timing=timing)
    try:
        with pytest.raises(TimeoutError):
            await client.start(timeout=1.0)
        async with asyncio.timeout(WAIT):
            await accepted.wait()  # it came back after the first sign-in went unanswered
        assert client.sign_ins == 0
    finally:
        await client.close()
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_rejected_token_raises_instead_of_retrying(
    cluster: Cluster, sdk_client: SdkClients, fault_proxy: FaultProxy
) -> None:
    (creds,) = await cluster.new_user()
    forged = Credentials(creds.user_id, creds.device_id, "forged")
    with pytest.raises(GimError) as info:
        await sdk_client(forged)
    assert info.value.code == Code.UNAUTHORIZED

    # a token that stops working while connected (signed in again elsewhere) ends the stream
    phone = "1" + str(uuid.uuid4().int)[:10]
    device_id = await cluster.api.register_device()
    bob_creds = await cluster.api.sign_in(phone, "0000", device_id)
    bob = await sdk_client(bob_creds, tcp=fault_proxy.addr)
    await cluster.api.sign_in(phone, "0000", device_id)  # a new token; the old one is dead
    fault_proxy.drop()
    with pytest.raises(GimError) as info:
        async with asyncio.timeout(WAIT):
            async for _ in bob:
                pass
    assert info.value.code == Code.UNAUTHORIZED
    assert fault_proxy.accepted == 2, "one attempt with the dead token, no endless retries"


async def test_user_api_wrappers(cluster: Cluster, sdk_client: SdkClients) -> None:
    (creds,) = await cluster.new_user()
    nickname = f"sdk-{uuid.uuid4().hex[:8]}"
    await cluster.api.update_user(creds, nickname=nickname, sex=1, extra="x")
    user = await cluster.api.get_user(creds, creds.user_id)
    assert (user.user_id, user.nickname, user.sex, user.extra) == (creds.user_id, nickname, 1, "x")
    assert [u.user_id for u in await cluster.api.search_user(creds, nickname)] == [creds.user_id]
    with pytest.raises(GimError) as info:
        await cluster.api.get_user(Credentials(creds.user_id, creds.device_id, "bad"), creds.user_id)
    assert info.value.code == Code.UNAUTHORIZED


async def test_client_signs_in_by_phone_registering_a_device(cluster: Cluster) -> None:
    phone = "1" + str(uuid.uuid4().int)[:10]
    timing = Timing(request_timeout=5.0)
    async with Client(phone=phone, code="0000", api=cluster.api, tcp=cluster.tcp, timing=timing) as client:
        assert client.user_id > 0 and client.credentials.device_id > 0 and client.sign_ins == 1
    with pytest.raises(GimError) as info:
        async with Client(phone=phone, code="9999", api=cluster.api, tcp=cluster.tcp, timing=timing):
            pass
    assert info.value.code == Code.WRONG_CODE


@pytest.mark.parametrize(
    ("sig", "transport"),
    [(signal.SIGKILL, "tcp"), (signal.SIGTERM, "tcp"), (signal.SIGKILL, "ws")],
    ids=["sigkill-tcp", "sigterm-tcp", "sigkill-ws"],
)
async def test_connect_process_restart_mid_stream_is_gapless(
    cluster, sdk_client, connect_process, sig: int, transport: str
) -> None:  # type: ignore[no-untyped-def]
    """The acceptance test: a steady stream of N messages, the connect process killed and
    started again on the same ports while it flows; the SDK yields exactly 1..N."""
    total = 200
    (alice,) = await cluster.new_user()
    (bob_creds,) = await cluster.new_user()
    await connect_process.start()
    # No periodic resync: after the restart every message must come by sync at sign-in or
    # by push (logic replaces its channel to the restarted node at the first failure).
    where = {"ws_url": connect_process.ws_url} if transport == "ws" else {"tcp": connect_process.tcp}
    bob = await sdk_client(bob_creds, resync_interval=3600, **where)
    killed, down_sent, restarted = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def stream() -> None:
        for i in range(total):
            await cluster.api.send_message(alice, cx.RT_USER, bob.user_id, text(f"n{i}"))
            if i == total // 2:
                await killed.wait()
            elif i == total * 3 // 4:
                down_sent.set()  # a quarter was sent while the node was down
                await restarted.wait()

    sender = asyncio.create_task(stream())
    try:
        events = await take(bob, total // 4)
        await connect_process.kill(sig)
        killed.set()
        async with asyncio.timeout(WAIT):
            await down_sent.wait()
        await connect_process.start()
        restarted.set()
        events += await take(bob, total - len(events))
        async with asyncio.timeout(WAIT):
            await sender
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
    assert_stream(events, 1, total)
    assert [e.text for e in events] == [f"n{i}" for i in range(total)]
    assert bob.sign_ins == 2 and connect_process.starts == 2
    assert bob.pending() == 0


async def test_a_list_of_connect_nodes_is_tried_in_turn(
    cluster: Cluster, sdk_client: SdkClients, connect_node: ConnectNodes
) -> None:
    (alice,) = await cluster.new_user()
    (bob,) = await cluster.new_user()
    nowhere = ("127.0.0.1", free_port())
    client = await sdk_client(bob, tcp=[nowhere, cluster.tcp])
    assert client.endpoint == cluster.tcp, "an address where nothing listens is skipped"
    extra = await connect_node()
    (carol,) = await cluster.new_user()
    moving = await sdk_client(carol, tcp=[("127.0.0.1", extra.tcp_port), cluster.tcp])
    assert moving.endpoint == ("127.0.0.1", extra.tcp_port)
    await extra.stop(1.0)  # closes its connections: the client moves to the next node
    async with asyncio.timeout(WAIT):
        while not (moving.sign_ins == 2 and moving.connected.is_set()):
            await asyncio.sleep(0.02)
    assert moving.endpoint == cluster.tcp
    await send_texts(cluster.api, alice, carol.user_id, ["after the move"])
    await send_texts(cluster.api, alice, bob.user_id, ["still here"])
    assert [e.text for e in await take(moving, 1)] == ["after the move"]
    assert [e.text for e in await take(client, 1)] == ["still here"]


# -- signing in again, stray error outputs, logging ---------------------------------------

QUICK = Timing(
    heartbeat_interval=5.0, heartbeat_timeout=5.0, request_timeout=5.0, backoff_initial=0.02, backoff_max=0.3
)


async def test_phone_client_signs_in_again_when_its_token_dies(cluster: Cluster, fault_proxy: FaultProxy) -> None:
    """A client with phone + code whose token is replaced server-side (the device signed
    in again elsewhere) signs in again by itself: on a gRPC call and on reconnecting."""
    (alice,) = await cluster.new_user()
    phone = "1" + str(uuid.uuid4().int)[:10]
    async with Client(phone=phone, code="0000", api=cluster.api, tcp=fault_proxy.addr, timing=QUICK) as bob:
        device_id = bob.credentials.device_id
        await send_texts(cluster.api, alice, bob.user_id, ["before"])
        events = await take(bob, 1)

        await cluster.api.sign_in(phone, "0000", device_id)  # bob's token is dead now
        seq = await bob.send_text(alice.user_id, "sent with a dead token")  # 10000, sign in, send
        assert (seq, bob.renewals) == (2, 1)
        events += await take(bob, 1)  # its own message, in its stream

        dead = await cluster.api.sign_in(phone, "0000", device_id)  # dead again
        fault_proxy.drop()  # the reconnect meets 10000 at the long connection's sign-in
        await send_texts(cluster.api, alice, bob.user_id, ["while away"])
        events += await take(bob, 1)
        assert bob.renewals == 2 and bob.sign_ins == 2 and bob.failure is None
        assert bob.credentials.device_id == device_id, "the same device, not a new one"
        assert bob.credentials.token != dead.token
    assert_stream(events, 1, 3)
    assert [e.text for e in events] == ["before", "sent with a dead token", "while away"]


async def test_credentials_and_phone_start_with_the_credentials(cluster: Cluster) -> None:
    """Given both, the client tries the stored token first and falls back to the phone
    and code when the token is refused (how `gim client` resumes from its state file)."""
    phone = "1" + str(uuid.uuid4().int)[:10]
    device_id = await cluster.api.register_device()
    stale = await cluster.api.sign_in(phone, "0000", device_id)
    live = await cluster.api.sign_in(phone, "0000", device_id)
    async with Client(credentials=live, phone=phone, code="0000", api=cluster.api, tcp=cluster.tcp, timing=QUICK) as c:
        assert (c.credentials, c.renewals) == (live, 0)
    async with Client(credentials=stale, phone=phone, code="0000", api=cluster.api, tcp=cluster.tcp, timing=QUICK) as c:
        assert c.renewals == 1 and c.credentials.device_id == device_id and c.credentials.token != stale.token


async def test_error_output_where_a_push_is_expected_is_not_an_event(
    cluster: Cluster, sdk_client: SdkClients, fault_proxy: FaultProxy
) -> None:
    """A server answering a failed ack with a PT_MESSAGE Output carrying 10001 and no
    data: nothing is yielded for it and the connection stays."""
    (alice,) = await cluster.new_user()
    (bob_creds,) = await cluster.new_user()
    bob = await sdk_client(bob_creds, tcp=fault_proxy.addr)
    fault_proxy.inject(cx.Output(type=cx.PT_MESSAGE, code=Code.BAD_REQUEST, message="ack failed").SerializeToString())
    fault_proxy.inject(cx.Output(type=cx.PT_HEARTBEAT, code=Code.BAD_REQUEST).SerializeToString())
    await send_texts(cluster.api, alice, bob.user_id, ["real"])
    (event,) = await take(bob, 1)
    assert (event.seq, event.text) == (1, "real")
    assert bob.pending() == 0 and bob.sign_ins == 1


async def test_sdk_logs_through_standard_logging(
    cluster: Cluster, sdk_client: SdkClients, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    (creds,) = await cluster.new_user()
    with caplog.at_level(logging.INFO, logger="gim.client"):
        await sdk_client(creds)
    signed_in = [r for r in caplog.records if r.name == "gim.client" and "signed in on" in r.getMessage()]
    assert signed_in and f"user {creds.user_id}" in signed_in[0].getMessage()
    assert any(isinstance(h, logging.NullHandler) for h in logging.getLogger("gim.client").handlers)
