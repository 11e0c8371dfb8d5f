"""Devices: registration, ownership, online state per connect node, look-ups for delivery.

A device belongs to the first user who signs in on it (`device.user_id`, 0: nobody yet):
`claim` at UserExt.SignIn, and a long-connection sign-in (`set_online`) only by its owner
(or on a device nobody owns yet). Neither ever rewrites an owner; both decide with a
conditional UPDATE (`user_id IN (0, :me)`), so two users racing for a new device cannot
both win. `release` is the hand-over: the owner gives the device up.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from gim.internal.logic.values import Connection, OnlineDevice
from gim.pkg import db, log
from gim.pkg.batcher import Batcher
from gim.pkg.cache import KIND_ONLINE, Cache, Decoded
from gim.pkg.db import epoch_seconds
from gim.pkg.errors import Code, GimError, bad_request, device_not_yours, unauthorized
from gim.pkg.schema import DEVICE_OFFLINE, DEVICE_ONLINE, max_length
from gim.pkg.schema import device as device_table

_log = log.get("devices")

DEVICE_TYPES = {1: "Android", 2: "iOS", 3: "Windows", 4: "macOS", 5: "Web"}
_TEXT_LIMITS = {name: max_length(device_table.c[name]) for name in ("brand", "model", "system_version", "sdk_version")}


@dataclasses.dataclass(frozen=True)
class Device:
    device_id: int
    user_id: int
    type: int
    brand: str
    model: str
    system_version: str
    sdk_version: str
    status: int
    conn_addr: str
    client_addr: str
    create_time: int
    update_time: int


def _device(row: sa.Row[tuple[object, ...]]) -> Device:
    m = row._mapping
    return Device(
        device_id=int(m["id"]),
        user_id=int(m["user_id"]),
        type=int(m["type"]),
        brand=str(m["brand"]),
        model=str(m["model"]),
        system_version=str(m["system_version"]),
        sdk_version=str(m["sdk_version"]),
        status=int(m["status"]),
        conn_addr=str(m["conn_addr"]),
        client_addr=str(m["client_addr"]),
        create_time=epoch_seconds(m["create_time"]),
        update_time=epoch_seconds(m["update_time"]),
    )


@dataclasses.dataclass(frozen=True)
class _SignIn:
    device_id: int
    user_id: int
    conn_addr: str
    client_addr: str


@dataclasses.dataclass(frozen=True)
class _SignOut:
    device_id: int
    user_id: int
    client_addr: str


_c = device_table.c
_NOT_FOUND = "device {} not found"
_SET_ONLINE = (
    device_table.update()
    .where(_c.id == sa.bindparam("b_device_id"), _c.user_id.in_([0, sa.bindparam("b_user_id")]))
    .values(
        user_id=sa.bindparam("b_user_id"),
        status=DEVICE_ONLINE,
        conn_addr=sa.bindparam("b_conn_addr"),
        client_addr=sa.bindparam("b_client_addr"),
    )
)  # (bind names must differ from the columns they set)
# Built once (a batch's device ids fill "ids"), the devices of a batch of sign-ins and of
# sign-outs locked until commit: their owners and connections cannot change before the
# transaction writes.
_LOCK_SIGNING_IN = db.locking(
    sa.select(_c.id, _c.user_id, _c.status, _c.conn_addr, _c.client_addr).where(
        _c.id.in_(sa.bindparam("ids", expanding=True))
    )
)
_LOCK_SIGNING_OUT = db.locking(
    sa.select(_c.id, _c.user_id, _c.client_addr).where(
        _c.id.in_(sa.bindparam("ids", expanding=True)), _c.status == DEVICE_ONLINE
    )
)


def _online_devices(value: bytes, user_id: int) -> tuple[OnlineDevice, ...]:
    return tuple(OnlineDevice(device_id, user_id, conn_addr) for device_id, conn_addr in json.loads(value))


class DeviceStore:
    """Devices in the database; each user's online devices cached in Redis."""

    def __init__(self, engine: AsyncEngine, cache: Cache) -> None:
        self._engine = engine
        self._cache = cache
        self._sign_ins: Batcher[_SignIn, Connection | None] = Batcher("sign_ins", self._set_online_batch, 500, 4)
        self._sign_outs: Batcher[_SignOut, bool] = Batcher("sign_outs", self._set_offline_batch, 500, 2)
        self._decoded = Decoded(_online_devices)

    async def register(self, type_: int, **texts: str) -> int:
        if type_ not in DEVICE_TYPES:
            raise bad_request(f"device type must be one of {sorted(DEVICE_TYPES)}, got {type_}")
        for name, value in texts.items():
            if len(value) > _TEXT_LIMITS[name]:
                raise bad_request(f"{name} is longer than {_TEXT_LIMITS[name]} characters")
        async with self._engine.begin() as conn:
            result = await conn.execute(device_table.insert().values(type=type_, **texts))
            return int(result.inserted_primary_key[0])  # type: ignore[index]  # an INSERT always has one

    async def get(self, device_id: int) -> Device:
        if device_id <= 0:
            raise bad_request("device_id must be positive")
        async with db.reading(self._engine) as conn:
            row = (await conn.execute(sa.select(device_table).where(device_table.c.id == device_id))).first()
        if row is None:
            raise GimError(Code.DEVICE_NOT_FOUND, _NOT_FOUND.format(device_id))
        return _device(row)

    async def claim(self, device_id: int, user_id: int) -> None:
        """Make `user_id` the device's owner unless it has another one: 10017 if it has,
        10014 if there is no such device. Claiming one's own device again is fine."""
        if device_id <= 0 or user_id <= 0:
            raise bad_request("device_id and user_id must be positive")
        async with self._engine.begin() as conn:
            result = await conn.execute(
                device_table.update().where(_c.id == device_id, _c.user_id.in_([0, user_id])).values(user_id=user_id)
            )
            if result.rowcount:
                return
            # nothing changed: no such device, the owner already (MySQL counts changed rows), or another's
            owner = (await conn.execute(sa.select(_c.user_id).where(_c.id == device_id))).scalar()
        if owner is None:
            raise GimError(Code.DEVICE_NOT_FOUND, _NOT_FOUND.format(device_id))
        if int(owner) != user_id:
            raise device_not_yours()

    async def release(self, device_id: int, user_id: int) -> tuple[bool, Connection | None]:
        """The owner `user_id` gives the device up: it has no owner and is offline. Returns
        whether it was this user's, and the connection it had if it was online."""
        if device_id <= 0 or user_id <= 0:
            raise bad_request("device_id and user_id must be positive")
        mine = (_c.id == device_id, _c.user_id == user_id)
        async with self._engine.begin() as conn:
            row = (
                await conn.execute(sa.select(_c.status, _c.conn_addr, _c.client_addr).where(*mine).with_for_update())
            ).first()
            if row is None:
                return False, None
            await conn.execute(device_table.update().where(*mine).values(user_id=0, status=DEVICE_OFFLINE))
        await self._cache.invalidate(KIND_ONLINE, [user_id])
        status, conn_addr, client_addr = int(row[0]), str(row[1]), str(row[2])
        return True, Connection(conn_addr, client_addr) if status == DEVICE_ONLINE and conn_addr else None

    def set_online(
        self, device_id: int, user_id: int, conn_addr: str, client_addr: str
    ) -> asyncio.Future[Connection | None]:
        """The device is now online at `conn_addr` for `user_id`, its owner (or the first
        user on it): 10014 if there is no such device, 10000 if another user owns it.
        Returns the device's previous connection if that was online on another node
        (this node replaces its own). Concurrent sign-ins are written together, one
        transaction a batch. A future, not a coroutine: a crowd of sign-ins awaited
        together costs no task each."""
        return self._sign_ins.enqueue(_SignIn(device_id, user_id, conn_addr, client_addr))

    async def _set_online_batch(self, batch: list[_SignIn]) -> list[Connection | None | BaseException]:
        results: list[Connection | None | BaseException] = []
        async with self._engine.begin() as conn:
            rows = await conn.execute(_LOCK_SIGNING_IN, {"ids": sorted({s.device_id for s in batch})})
            current = {int(row[0]): (int(row[1]), int(row[2]), str(row[3]), str(row[4])) for row in rows}
            accepted: list[_SignIn] = []
            for s in batch:  # in order: a device signed in twice in one batch, the second replaces the first
                state = current.get(s.device_id)
                if state is None:
                    results.append(GimError(Code.DEVICE_NOT_FOUND, _NOT_FOUND.format(s.device_id)))
                    continue
                owner, status, conn_addr, client_addr = state
                if owner not in (0, s.user_id):
                    _log.warning("sign_in_not_owner", device_id=s.device_id, user_id=s.user_id, owner=owner)
                    results.append(unauthorized("this device belongs to another user: sign in again"))
                    continue
                moved = status == DEVICE_ONLINE and conn_addr != s.conn_addr and client_addr != s.client_addr
                results.append(Connection(conn_addr, client_addr) if moved and conn_addr else None)
                current[s.device_id] = (s.user_id, DEVICE_ONLINE, s.conn_addr, s.client_addr)
                accepted.append(s)
            if accepted:
                params = [
                    {"b_device_id": s.device_id, "b_user_id": s.user_id, "b_conn_addr": s.conn_addr, "b_client_addr": s.client_addr}
                    for s in accepted
                ]  # fmt: skip
                await conn.execute(_SET_ONLINE, params)
        await self._cache.invalidate(KIND_ONLINE, {s.user_id for s in accepted})
        return results

    async def set_offline(self, device_id: int, user_id: int, client_addr: str) -> bool:
        """Mark offline only if this is still the connection the device last signed in with.
        Concurrent ones (a crowd of clients gone at once) are written together, one
        transaction a batch."""
        return await self._sign_outs.submit(_SignOut(device_id, user_id, client_addr))

    async def _set_offline_batch(self, batch: list[_SignOut]) -> list[bool | BaseException]:
        async with self._engine.begin() as conn:
            rows = await conn.execute(_LOCK_SIGNING_OUT, {"ids": sorted({s.device_id for s in batch})})
            online = {int(row[0]): (int(row[1]), str(row[2])) for row in rows}
            changed: list[bool | BaseException] = []
            gone: dict[int, int] = {}  # device -> user, going offline now
            for s in batch:  # in order: a device twice in one batch goes offline once
                match = online.get(s.device_id) == (s.user_id, s.client_addr)
                if match:
                    gone[s.device_id] = online.pop(s.device_id)[0]
                changed.append(match)
            if gone:
                await conn.execute(device_table.update().where(_c.id.in_(sorted(gone))).values(status=DEVICE_OFFLINE))
        if gone:
            await self._cache.invalidate(KIND_ONLINE, set(gone.values()))
        return changed

    async def of_user(self, user_id: int) -> list[Device]:
        """The devices the user owns, in registration order."""
        query = sa.select(device_table).where(_c.user_id == user_id).order_by(_c.id)
        async with db.reading(self._engine) as conn:
            return [_device(row) for row in await conn.execute(query)]

    async def online_per_node(self) -> dict[str, int]:
        """How many devices are online at each connect node."""
        query = sa.select(_c.conn_addr, sa.func.count()).where(_c.status == DEVICE_ONLINE).group_by(_c.conn_addr)
        async with db.reading(self._engine) as conn:
            return {str(addr): int(count) for addr, count in await conn.execute(query) if addr}

    async def online_nodes(self) -> list[str]:
        """The connect nodes that hold online devices."""
        query = sa.select(device_table.c.conn_addr).where(device_table.c.status == DEVICE_ONLINE).distinct()
        async with db.reading(self._engine) as conn:
            return sorted(str(a) for a in await conn.scalars(query) if a)

    async def node_stopped(self, conn_addr: str) -> int:
        """Every device online at `conn_addr` goes offline; returns how many."""
        at_node = (device_table.c.conn_addr == conn_addr, device_table.c.status == DEVICE_ONLINE)
        async with self._engine.begin() as conn:
            users = [int(u) for u in await conn.scalars(sa.select(device_table.c.user_id).where(*at_node))]
            result = await conn.execute(device_table.update().where(*at_node).values(status=DEVICE_OFFLINE))
        await self._cache.invalidate(KIND_ONLINE, users)
        return int(result.rowcount)

    async def online(self, user_ids: list[int]) -> list[OnlineDevice]:
        """The online devices of these users (cached per user)."""
        cached = await self._cache.load(KIND_ONLINE, user_ids, self._online_rows)
        online: list[OnlineDevice] = []
        for user_id, value in cached.items():
            online.extend(self._decoded(value, user_id))
        return online

    async def _online_rows(self, user_ids: list[int]) -> dict[int, bytes]:
        query = sa.select(device_table.c.id, device_table.c.user_id, device_table.c.conn_addr).where(
            device_table.c.user_id.in_(sorted(user_ids)),
            device_table.c.status == DEVICE_ONLINE,
        )
        by_user: dict[int, list[tuple[int, str]]] = {u: [] for u in user_ids}
        async with db.reading(self._engine) as conn:
            for device_id, user_id, conn_addr in await conn.execute(query):
                by_user[int(user_id)].append((int(device_id), str(conn_addr)))
        return {u: json.dumps(devices).encode() for u, devices in by_user.items()}
