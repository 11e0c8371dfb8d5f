"""`gim admin`: the operator's view, through logic's private LogicAdmin service.

gim admin nodes              the connect nodes: alive, connections, signed in, online devices
gim admin user USER_ID       a user's devices, online or not, and the node of each online one
gim admin kick DEVICE_ID     close a device's long connection (it goes offline)

It calls the logic node at `--logic` (default: logic's int_listen from its configuration)
with the same credential as the nodes (internal_secret, TLS from the logic
configuration and GIM_* variables).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from typing import Any

from grpc import aio

from gim.internal.logic.devices import DEVICE_TYPES
from gim.pkg import config, rpc
from gim.pkg.errors import GimError
from gim.pkg.pb import logic_int_pb2 as int_
from gim.pkg.pb import logic_int_pb2_grpc as int_grpc
from gim.pkg.security import Security

TIMEOUT = 10.0


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Columns aligned on the widest cell, two spaces apart."""
    cells = [[str(c) for c in header], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells)


def nodes_text(resp: int_.ListNodesResp) -> str:
    if not resp.nodes:
        return "no connect node is alive or holds online devices"
    rows = [
        (
            n.conn_addr,
            "yes" if n.alive else "NO",
            *((n.connections, n.signed_in) if n.answered else ("?", "?")),
            n.online_devices,
            *((n.rooms, n.room_members) if n.answered else ("?", "?")),
        )
        for n in resp.nodes
    ]
    return table(("NODE", "ALIVE", "CONNECTIONS", "SIGNED_IN", "ONLINE_DEVICES", "ROOMS", "ROOM_MEMBERS"), rows)


def user_text(user_id: int, resp: int_.GetUserDevicesResp) -> str:
    if not resp.devices:
        return f"user {user_id} has no devices"
    rows = [
        (
            d.device.device_id,
            DEVICE_TYPES.get(d.device.type, str(d.device.type)),
            d.device.brand or "-",
            d.device.model or "-",
            "online" if d.conn_addr else "offline",
            d.conn_addr or "-",
        )
        for d in resp.devices
    ]
    return table(("DEVICE", "TYPE", "BRAND", "MODEL", "STATUS", "NODE"), rows)


def kick_text(device_id: int, resp: int_.KickDeviceResp) -> str:
    if resp.closed:
        return f"device {device_id}: connection closed at {resp.conn_addr}"
    return f"device {device_id} has no open connection"


async def run(args: argparse.Namespace) -> str:
    cfg = config.load(config.LogicConfig, "logic")
    addr = args.logic or cfg.int_listen
    channel = rpc.channel(addr, outbound=Security.from_config(cfg).outbound)
    stub = int_grpc.LogicAdminStub(channel)
    try:
        if args.admin_command == "nodes":
            return nodes_text(await _call(stub.ListNodes, int_.ListNodesReq()))
        if args.admin_command == "user":
            return user_text(
                args.user_id, await _call(stub.GetUserDevices, int_.GetUserDevicesReq(user_id=args.user_id))
            )
        return kick_text(args.device_id, await _call(stub.KickDevice, int_.KickDeviceReq(device_id=args.device_id)))
    except GimError as exc:
        raise SystemExit(f"gim admin: {exc.message} (code {int(exc.code)})") from None
    except aio.AioRpcError as exc:
        raise SystemExit(f"gim admin: logic at {addr}: {exc.code().name} {exc.details() or ''}".rstrip()) from None
    finally:
        await channel.close()


async def _call(method: Any, request: Any) -> Any:
    return await rpc.call(method, request, TIMEOUT)


def _main(args: argparse.Namespace) -> None:
    print(asyncio.run(run(args)))


def add_parser(sub: Any) -> None:
    admin = sub.add_parser("admin", help="nodes, a user's devices, disconnect a device (logic's private port)")
    admin.add_argument("--logic", metavar="HOST:PORT", help="LogicInt address (default: logic's int_listen)")
    commands = admin.add_subparsers(dest="admin_command", required=True)
    commands.add_parser("nodes", help="connect nodes: alive, connections, online devices")
    user = commands.add_parser("user", help="a user's devices and the node of each online one")
    user.add_argument("user_id", type=int)
    kick = commands.add_parser("kick", help="close a device's long connection")
    kick.add_argument("device_id", type=int)
    admin.set_defaults(func=_main)
