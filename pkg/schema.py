"""The database tables (what lives where: docs/architecture.md), for MySQL/MariaDB and SQLite.

`sql/create_table.sql` is this module rendered for MySQL (`gim migrate --sql`); a test
keeps the two in step. Message rows are sharded over `message_000 … message_{N-1}` by
`user_id % N`; every other table is one table.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)

# SQLite only auto-increments an INTEGER PRIMARY KEY; MySQL gets BIGINT.
Id = BigInteger().with_variant(Integer(), "sqlite")

MYSQL_OPTIONS: dict[str, Any] = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_unicode_ci",
}

SEQ_OBJECT_USER = 1
SEQ_OBJECT_ROOM = 2

DEVICE_OFFLINE = 0
DEVICE_ONLINE = 1

FRIEND_APPLIED = 1
FRIEND_AGREED = 2

NOW = text("CURRENT_TIMESTAMP")

metadata = MetaData()


def _times() -> list[Column[object]]:
    return [
        Column("create_time", DateTime, nullable=False, server_default=NOW),
        Column(
            "update_time",
            DateTime,
            nullable=False,
            server_default=NOW,
            onupdate=func.now(),
        ),
    ]


user = Table(
    "user",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("phone_number", String(20), nullable=False),
    Column("nickname", String(50), nullable=False, server_default=""),
    Column("sex", SmallInteger, nullable=False, server_default="0"),
    Column("avatar_url", String(255), nullable=False, server_default=""),
    Column("extra", String(1024), nullable=False, server_default=""),
    *_times(),
    UniqueConstraint("phone_number", name="uk_phone_number"),
    **MYSQL_OPTIONS,
)

device = Table(
    "device",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("user_id", BigInteger, nullable=False, server_default="0"),
    Column("type", SmallInteger, nullable=False),
    Column("brand", String(50), nullable=False, server_default=""),
    Column("model", String(50), nullable=False, server_default=""),
    Column("system_version", String(20), nullable=False, server_default=""),
    Column("sdk_version", String(20), nullable=False, server_default=""),
    Column("status", SmallInteger, nullable=False, server_default="0"),
    Column("conn_addr", String(64), nullable=False, server_default=""),
    Column("client_addr", String(64), nullable=False, server_default=""),
    *_times(),
    Index("idx_user_id", "user_id"),
    Index("idx_conn_addr", "conn_addr"),
    **MYSQL_OPTIONS,
)

friend = Table(
    "friend",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("user_id", BigInteger, nullable=False),
    Column("friend_id", BigInteger, nullable=False),
    Column("remarks", String(50), nullable=False, server_default=""),
    Column("extra", String(1024), nullable=False, server_default=""),
    Column("status", SmallInteger, nullable=False),
    *_times(),
    UniqueConstraint("user_id", "friend_id", name="uk_user_id_friend_id"),
    **MYSQL_OPTIONS,
)

group = Table(
    "group",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(50), nullable=False),
    Column("avatar_url", String(255), nullable=False, server_default=""),
    Column("introduction", String(255), nullable=False, server_default=""),
    Column("user_num", Integer, nullable=False, server_default="0"),
    Column("extra", String(1024), nullable=False, server_default=""),
    *_times(),
    **MYSQL_OPTIONS,
)

group_user = Table(
    "group_user",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("group_id", BigInteger, nullable=False),
    Column("user_id", BigInteger, nullable=False),
    Column("member_type", SmallInteger, nullable=False),
    Column("remarks", String(50), nullable=False, server_default=""),
    Column("extra", String(1024), nullable=False, server_default=""),
    *_times(),
    UniqueConstraint("group_id", "user_id", name="uk_group_id_user_id"),
    Index("idx_group_user_user_id", "user_id"),
    **MYSQL_OPTIONS,
)

# One row per sequence owner; the upsert that increments it is the allocation.
seq = Table(
    "seq",
    metadata,
    Column("object_type", SmallInteger, nullable=False),
    Column("object_id", BigInteger, nullable=False),
    Column("seq", BigInteger, nullable=False),
    PrimaryKeyConstraint("object_type", "object_id"),
    **MYSQL_OPTIONS,
)

# Sign-in tokens: the live one of each (user, device), as a SHA-256 digest (Redis caches it).
device_token = Table(
    "device_token",
    metadata,
    Column("user_id", BigInteger, nullable=False),
    Column("device_id", BigInteger, nullable=False),
    Column("token_sha256", String(64), nullable=False),
    Column("expire_time", BigInteger, nullable=False),  # Unix seconds
    PrimaryKeyConstraint("user_id", "device_id"),
    **MYSQL_OPTIONS,
)

# The highest seq each device acknowledged (written behind Redis, which caches it).
device_ack = Table(
    "device_ack",
    metadata,
    Column("user_id", BigInteger, nullable=False),
    Column("device_id", BigInteger, nullable=False),
    Column("seq", BigInteger, nullable=False),
    PrimaryKeyConstraint("user_id", "device_id"),
    **MYSQL_OPTIONS,
)


def max_length(column: Column[Any]) -> int:
    """The most characters a String column holds: the one place each text limit is set
    (the services check values against it before they reach the database)."""
    length = column.type.length if isinstance(column.type, String) else None
    if length is None:
        raise ValueError(f"{column} has no length")
    return int(length)


# A message's to_user_ids as stored (comma-separated, a MySQL TEXT column): at most this many bytes.
TO_USER_IDS_MAX = 65_535


class MessageShards:
    """The `message_NNN` tables: one message row per (user, seq), clustered by both."""

    def __init__(self, count: int) -> None:
        if not 1 <= count <= 1000:
            raise ValueError(f"message_shards must be 1..1000, got {count}")
        self.count = count
        self.metadata = MetaData()
        self.tables = [_message_table(self.metadata, f"message_{i:03d}") for i in range(count)]

    def table_for(self, user_id: int) -> Table:
        return self.tables[user_id % self.count]


def _message_table(meta: MetaData, name: str) -> Table:
    return Table(
        name,
        meta,
        Column("user_id", BigInteger, nullable=False),
        Column("seq", BigInteger, nullable=False),
        Column("request_id", BigInteger, nullable=False, server_default="0"),
        Column("sender_type", SmallInteger, nullable=False),
        Column("sender_id", BigInteger, nullable=False),
        Column("receiver_type", SmallInteger, nullable=False),
        Column("receiver_id", BigInteger, nullable=False),
        Column("to_user_ids", Text, nullable=False),
        Column("type", SmallInteger, nullable=False),
        Column("content", LargeBinary, nullable=False),
        Column("send_time", BigInteger, nullable=False),
        Column("status", SmallInteger, nullable=False, server_default="1"),
        Column("create_time", DateTime, nullable=False, server_default=NOW),
        # the request_id of a send on the sender's own copy (NULL on every other row): the
        # unique key below makes the insert of a retried send fail, so a send needs no
        # look-up for an earlier attempt (internal/logic/message_store.py)
        Column("sender_request_id", BigInteger, nullable=True),
        PrimaryKeyConstraint("user_id", "seq"),
        Index(f"uk_{name}_sender_request", "user_id", "sender_request_id", unique=True),
        **MYSQL_OPTIONS,
    )
