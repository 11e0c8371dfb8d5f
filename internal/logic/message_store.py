"""The message tables (`message_NNN`): storing a send for its recipients under their
next seqs, atomic in one transaction, and reading a user's messages back.

A send stores one row per recipient user (write diffusion). The seqs of all
recipients are allocated by one upsert on the `seq` table (`seqs.allocate`), inside
the same transaction as the row inserts: the upsert locks each seq row until commit,
so concurrent senders queue on it instead of reading the same value, and a failed
insert rolls the increment back (no gap, no duplicate).

Sends that arrive while the previous batch is being written are stored together: one
transaction, one upsert (each user's seq raised by the number of its messages in the
batch), one multi-row insert per shard. A batch is all or nothing; when it fails for
another reason than a deadlock, its sends are tried one by one, so that one bad send
fails alone.

A send with a request_id (every 2021 client sends one) may be a retry. Its sender's copy
carries the request_id in `sender_request_id`, under a unique key per sender, so the
insert itself fails when an earlier attempt was stored, by any logic node: only then
does the batch run again with a look-up of earlier copies (`_find_retries`), which
answers a retry with the first seq and tells it from a request_id used again for
another message. A send with no earlier attempt costs no extra statement.

The work waiting is bounded: beyond `max_pending_rows` rows queued a send is refused
(`Overloaded`: RESOURCE_EXHAUSTED, nothing stored), and a send whose caller has gone
(call cancelled, or its deadline passed) before its batch starts is not stored. A server
event that follows a change already committed (`follows_commit`) is exempt from both.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gim.internal.logic import seqs as seq_rows
from gim.internal.logic.values import MessageRow, SenderType, StoredMessage
from gim.pkg import db, log, metrics
from gim.pkg.batcher import Batcher
from gim.pkg.errors import Code, GimError, Overloaded
from gim.pkg.schema import SEQ_OBJECT_USER, MessageShards

_log = log.get("message_store")
_bursts = log.Summary(_log)  # refusals come in bursts: one line per interval with a count

# MySQL errors after which the whole transaction may simply run again: a deadlock, a lock
# wait timeout, and a connection lost (the server restarted, the session was killed): the
# batch runs again on a new connection, rather than one send at a time (the batcher's
# fallback for a batch that fails), which a batch of thousands would not survive.
_RETRYABLE = {1213, 1205, 2006, 2013, 2055}
_ATTEMPTS = 5

# The columns `_insert` writes, in the order of its row tuples.
_INSERT_COLUMNS = (
    "user_id", "seq", "request_id", "sender_type", "sender_id", "receiver_type", "receiver_id",
    "to_user_ids", "type", "content", "send_time", "status", "sender_request_id",
)  # fmt: skip
_ONE_MESSAGE = slice(2, -1)  # the columns whose values are the message's, the same in all its rows

BATCH_ROWS = 5000  # message rows of one transaction, at most (a larger send goes alone)
RETRY_WINDOW = 1000  # a retried send is looked for among the sender's last this many messages
MAX_PENDING_ROWS = 20_000  # message rows waiting for the writer, at most (a lone send always gets in)
# Once sends come concurrently, a batch starts this long after the previous one at the
# soonest (`Batcher` spacing): a transaction costs logic and the database much the same
# for one send as for dozens. A lone sender's sends never wait.
STORE_SPACING = 0.01


class DuplicateSend(Exception):
    """This send repeats one already stored (same sender, request_id, receiver, content)."""

    def __init__(self, seq: int) -> None:
        super().__init__(f"already stored as the sender's seq {seq}")
        self.seq = seq


class _Pending:
    """One send waiting for (or in) a batch."""

    __slots__ = ("row", "users", "deadline", "follows_commit", "caller_gone", "queued")

    def __init__(self, row: MessageRow, users: list[int], deadline: float | None, follows_commit: bool) -> None:
        self.row = row
        self.users = users
        self.deadline = deadline  # event loop time after which the caller no longer waits
        self.follows_commit = follows_commit
        self.caller_gone = False  # the caller's call was cancelled while this waited
        self.queued = True  # counted in MessageStore.pending_rows until a batch takes it

    def abandoned(self, now: float) -> bool:
        if self.follows_commit:
            return False
        return self.caller_gone or (self.deadline is not None and now >= self.deadline)


def _unique_key(pending: _Pending) -> tuple[int, int]:
    """What the unique key on the sender's copy holds: (sender, request_id)."""
    return pending.row.sender_id, pending.row.request_id


def _repeats_within(batch: list[_Pending]) -> bool:
    """Whether two sends of the batch share a (sender, request_id): they are told apart
    by the look-up, not by the unique key."""
    keys = [_unique_key(p) for p in batch if _may_be_retry(p)]
    return len(keys) != len(set(keys))


def _may_be_retry(pending: _Pending) -> bool:
    row = pending.row
    return bool(row.request_id) and row.sender_type == SenderType.USER and row.sender_id in pending.users


class MessageStore:
    def __init__(
        self,
        engine: AsyncEngine,
        shards: MessageShards,
        batch_rows: int = BATCH_ROWS,
        max_pending_rows: int = MAX_PENDING_ROWS,
    ) -> None:
        self._engine = engine
        self._shards = shards
        self.max_pending_rows = max_pending_rows
        self.pending_rows = 0  # rows queued, not yet taken by a batch
        # One writer: concurrent batches would share users (a sender, a receiver, a group's
        # members) and wait on each other's seq rows or deadlock; one transaction at a time
        # that takes everything waiting is faster (single chat 750 -> 1,300 sends/s).
        self._batcher: Batcher[_Pending, dict[int, int]] = Batcher(
            "message_store", self._with_retries, batch_rows, 1, size=lambda p: len(p.users), spacing=STORE_SPACING
        )
        self._inserts = {table: table.insert() for table in shards.tables}  # one statement each, compiled once
        self._pages: dict[tuple[str, str], str] = {}  # (parameter mark, table) -> a sync page's SQL
        metrics.live("gim_logic_store_queue_rows", "message rows waiting to be stored", self, _queued_rows)

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    def admit(self, rows: int) -> None:
        """`Overloaded` unless `rows` more message rows may queue now (a lone send always may)."""
        if self.pending_rows and self.pending_rows + rows > self.max_pending_rows:
            _bursts.warning(
                "store_queue_full", kind="refused", pending_rows=self.pending_rows, bound=self.max_pending_rows
            )
            raise Overloaded(
                f"too many messages waiting to be stored ({self.pending_rows} rows queued, at most "
                f"{self.max_pending_rows}): nothing stored, retry later"
            )

    async def store(
        self, row: MessageRow, user_ids: list[int], *, deadline: float | None = None, follows_commit: bool = False
    ) -> dict[int, int]:
        """Store `row` once for each user; returns each user's new seq.

        A retry is recognised (`DuplicateSend`, nothing stored) when a user sender gives a
        request_id: see `_earlier_copy`. `Overloaded` (nothing stored) when the queue is
        full; not stored either when the caller is cancelled, or `deadline` (event loop
        time) passes, before its batch starts. `follows_commit`: a server event of a change
        already committed, stored whatever the queue and the caller.
        """
        pending = _Pending(row, sorted(set(user_ids)), deadline, follows_commit)
        if not follows_commit:
            self.admit(len(pending.users))
        self.pending_rows += len(pending.users)
        try:
            return await self._batcher.submit(pending)
        except asyncio.CancelledError:
            pending.caller_gone = True  # skipped if its batch has not started yet
            raise
        finally:
            self._taken(pending)  # a batch that never ran (cancelled loop) must not count forever

    def _taken(self, pending: _Pending) -> None:
        if pending.queued:
            pending.queued = False
            self.pending_rows -= len(pending.users)

    async def _with_retries(self, batch: list[_Pending]) -> list[dict[int, int] | BaseException]:
        now = asyncio.get_running_loop().time()
        for pending in batch:
            self._taken(pending)
        gone = [p.abandoned(now) for p in batch]  # decided once, as the batch starts
        live = [p for p, g in zip(batch, gone, strict=True) if not g]
        if len(live) < len(batch):
            _bursts.warning("store_skipped", kind="caller_gone", sends=len(batch) - len(live))
        stored = iter(await self._store_attempts(live) if live else [])
        return [_caller_gone() if g else next(stored) for g in gone]

    async def _store_attempts(self, batch: list[_Pending]) -> list[dict[int, int] | BaseException]:
        """The batch in one transaction. First without looking for earlier attempts: the
        unique key on each sender's copy (`sender_request_id`) makes the insert fail when
        one exists, and then the batch runs again with the look-up (`_find_retries`)."""
        look_up = _repeats_within(batch)
        metrics.LOGIC_STORE_BATCH.observe(len(batch))
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                with metrics.LOGIC_STORE_SECONDS.time():
                    async with self._engine.begin() as conn:
                        return await self._store_batch(conn, batch, look_up)
            except IntegrityError:
                if look_up:
                    raise
                look_up = True  # an earlier attempt, or a request_id used again: see which
                _log.info("store_earlier_attempt_suspected", sends=len(batch))
            except DBAPIError as exc:
                code = exc.orig.args[0] if exc.orig is not None and exc.orig.args else None
                retryable = code in _RETRYABLE or exc.connection_invalidated
                if not retryable or attempt == _ATTEMPTS:
                    raise
                _log.warning("store_retry", code=code, attempt=attempt, sends=len(batch))
                await asyncio.sleep(0.01 * attempt)
        raise AssertionError("unreachable")

    async def _store_batch(
        self, conn: AsyncConnection, batch: list[_Pending], look_up: bool
    ) -> list[dict[int, int] | BaseException]:
        results: list[dict[int, int] | BaseException | None] = [None] * len(batch)
        copies: dict[int, int] = {}
        taken: set[tuple[int, int]] = set()
        if look_up:
            copies = await self._find_retries(conn, batch, results)
            taken = await self._keys_taken(conn, [batch[i] for i, r in enumerate(results) if r is None])
        live = [i for i, r in enumerate(batch) if results[i] is None]
        counts = Counter(u for i in live for u in batch[i].users)
        if counts:
            highest = await seq_rows.allocate(conn, SEQ_OBJECT_USER, counts)
            next_seq = {u: highest[u] - n + 1 for u, n in counts.items()}
            for i in live:
                seqs = {}
                for u in batch[i].users:
                    seqs[u] = next_seq[u]
                    next_seq[u] += 1
                results[i] = seqs
            await self._insert(conn, [(batch[i], results[i], taken) for i in live])  # type: ignore[misc]
        for i, first in copies.items():  # the same send twice in this batch
            stored = results[first]
            assert isinstance(stored, dict)
            results[i] = DuplicateSend(stored[batch[i].row.sender_id])
        return results  # type: ignore[return-value]

    async def _keys_taken(self, conn: AsyncConnection, sends: list[_Pending]) -> set[tuple[int, int]]:
        """The (sender, request_id) keys of these new sends that an older message holds (a
        client that used a request_id again, beyond RETRY_WINDOW or for other content):
        those are stored without the key."""
        wanted = {_unique_key(p) for p in sends if _may_be_retry(p)}
        by_table: dict[sa.Table, set[tuple[int, int]]] = defaultdict(set)
        for sender, request_id in wanted:
            by_table[self._shards.table_for(sender)].add((sender, request_id))
        taken: set[tuple[int, int]] = set()
        for table, keys in by_table.items():
            c = table.c
            query = sa.select(c.user_id, c.sender_request_id).where(
                c.user_id.in_(sorted({k[0] for k in keys})), c.sender_request_id.in_(sorted({k[1] for k in keys}))
            )
            taken.update(k for k in ((int(u), int(r)) for u, r in await conn.execute(query)) if k in keys)
        return taken

    async def _find_retries(
        self, conn: AsyncConnection, batch: list[_Pending], results: list[dict[int, int] | BaseException | None]
    ) -> dict[int, int]:
        """Mark the sends already stored by an earlier attempt (`DuplicateSend`); returns
        {index: index of the first copy} for a send that comes twice in this batch."""
        retryable = [i for i, p in enumerate(batch) if _may_be_retry(p)]
        if not retryable:
            return {}
        # the senders' seq rows locked: concurrent attempts of one send queue here
        current = await seq_rows.lock(conn, SEQ_OBJECT_USER, sorted({batch[i].row.sender_id for i in retryable}))
        earlier = await self._earlier_copies(conn, [batch[i].row for i in retryable], current)
        first: dict[tuple[object, ...], int] = {}
        copies: dict[int, int] = {}
        for i in retryable:
            key = _send_key(batch[i].row)
            if key in first:
                copies[i] = first[key]
                results[i] = DuplicateSend(0)  # settled after allocation
            elif key in earlier:
                results[i] = DuplicateSend(earlier[key])
            else:
                first[key] = i
        return copies

    async def _earlier_copies(
        self, conn: AsyncConnection, rows: list[MessageRow], current: dict[int, int]
    ) -> dict[tuple[object, ...], int]:
        """The sender's seq of each message already stored by an earlier attempt, by
        `_send_key`: one query per message table for the whole batch.

        The same message: same request_id, receiver and content, among the sender's last
        RETRY_WINDOW messages (a client that reuses request_ids later is not mistaken for a
        retry). Concurrent attempts queue on the sender's seq row (`current` was read with
        it locked), so the later one sees the earlier one's rows: on MySQL this plain read
        is the transaction's first consistent read, so its snapshot is taken now, after
        the earlier attempt committed; it takes no locks (shared range locks on message
        rows made two logic nodes' inserts deadlock).
        """
        by_table: dict[sa.Table, list[MessageRow]] = defaultdict(list)
        for row in rows:
            by_table[self._shards.table_for(row.sender_id)].append(row)
        wanted = {_send_key(row) for row in rows}
        found: dict[tuple[object, ...], int] = {}
        for table, some in by_table.items():
            c = table.c
            recent = [
                sa.and_(c.user_id == sender, c.seq > current.get(sender, 0) - RETRY_WINDOW)
                for sender in sorted({row.sender_id for row in some})
            ]
            query = sa.select(c.sender_id, c.request_id, c.receiver_type, c.receiver_id, c.content, c.seq).where(
                sa.or_(*recent),
                c.request_id.in_(sorted({row.request_id for row in some})),
                c.sender_type == SenderType.USER,
                c.sender_id == c.user_id,  # the sender's own copy
            )
            for sender_id, request_id, receiver_type, receiver_id, content, seq in await conn.execute(query):
                key = (int(sender_id), int(request_id), int(receiver_type), int(receiver_id), bytes(content))
                if key in wanted:
                    found[key] = min(int(seq), found.get(key, int(seq)))
        return found

    async def _insert(
        self, conn: AsyncConnection, sends: list[tuple[_Pending, dict[int, int], set[tuple[int, int]]]]
    ) -> None:
        """One multi-row INSERT per shard, its rows as plain tuples, all in one round trip on
        MySQL (`db.insert_rows`): a group message is hundreds of rows over every message
        table, and this runs while the seq rows are locked. The sender's copy of
        a send that may be retried carries its request_id in `sender_request_id` (unique
        per sender), unless an older message holds that key (`taken`)."""
        by_shard: dict[sa.Insert, list[tuple[Any, ...]]] = defaultdict(list)
        for pending, seqs, taken in sends:
            row = pending.row
            common = (
                row.request_id,
                row.sender_type,
                row.sender_id,
                row.receiver_type,
                row.receiver_id,
                ",".join(map(str, row.to_user_ids)),
                row.message_type,
                row.content,
                row.send_time,
                row.status,
            )
            keyed = _may_be_retry(pending) and _unique_key(pending) not in taken
            for user_id, seq in seqs.items():
                key = row.request_id if keyed and user_id == row.sender_id else None
                by_shard[self._inserts[self._shards.table_for(user_id)]].append((user_id, seq, *common, key))
        await db.insert_rows(conn, by_shard, _INSERT_COLUMNS, shared=_ONE_MESSAGE)

    async def after(self, user_id: int, seq: int, limit: int) -> list[StoredMessage]:
        """The user's messages with seq greater than `seq`, in seq order, at most `limit`:
        one page of a sync, so driver SQL written once per table and plain row tuples
        (no select built, no row mappings, only the columns a message needs)."""
        table = self._shards.table_for(user_id)
        async with db.reading(self._engine) as conn:
            rows = await conn.exec_driver_sql(self._page_sql(conn, table), (user_id, seq, limit))
            return [_stored(row) for row in cast("Iterable[tuple[Any, ...]]", rows)]

    def _page_sql(self, conn: AsyncConnection, table: sa.Table) -> str:
        mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
        key = (mark, table.name)
        sql = self._pages.get(key)
        if sql is None:
            sql = self._pages[key] = (
                f"SELECT {', '.join(_PAGE_COLUMNS)} FROM {table.name} "
                f"WHERE user_id = {mark} AND seq > {mark} ORDER BY seq LIMIT {mark}"
            )
        return sql

    async def max_seq(self, user_id: int) -> int:
        return (await self.max_seqs([user_id]))[user_id]

    async def max_seqs(self, user_ids: list[int]) -> dict[int, int]:
        """Each user's highest seq (committed), 0 for a user without messages."""
        return await seq_rows.current(self._engine, SEQ_OBJECT_USER, user_ids)


def _queued_rows(store: MessageStore) -> list[tuple[tuple[str, ...], float]]:
    return [((), store.pending_rows)]


def _send_key(row: MessageRow) -> tuple[object, ...]:
    """What makes two attempts the same send (with the sender, see `_earlier_copies`)."""
    return (row.sender_id, row.request_id, row.receiver_type, row.receiver_id, bytes(row.content))


def _caller_gone() -> GimError:
    return GimError(
        Code.BAD_REQUEST, "the call ended (cancelled or past its deadline) before the send was stored: nothing stored"
    )


# What a page of a sync reads, in `_stored`'s order.
_PAGE_COLUMNS = (
    "user_id", "seq", "request_id", "sender_type", "sender_id", "receiver_type", "receiver_id",
    "to_user_ids", "type", "content", "send_time", "status",
)  # fmt: skip


def _stored(r: tuple[Any, ...]) -> StoredMessage:
    user_id, seq, request_id, sender_type, sender_id, receiver_type, receiver_id, ids, kind, content, sent, status = r
    ids = str(ids)
    return StoredMessage(
        user_id=int(user_id),
        seq=int(seq),
        row=MessageRow(
            request_id=int(request_id),
            sender_type=int(sender_type),
            sender_id=int(sender_id),
            receiver_type=int(receiver_type),
            receiver_id=int(receiver_id),
            to_user_ids=[int(x) for x in ids.split(",")] if ids else [],
            message_type=int(kind),
            content=bytes(content),
            send_time=int(sent),
            status=int(status),
        ),
    )
