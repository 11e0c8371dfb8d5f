"""The database schema (gim.pkg.schema) and its MySQL rendering sql/create_table.sql."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import sqlalchemy

from gim.pkg import db, schema
from gim.pkg.schema import MessageShards

REPO_ROOT = Path(__file__).resolve().parent.parent
SQL_FILE = REPO_ROOT / "sql" / "create_table.sql"

BASE_TABLES = {"user", "device", "friend", "group", "group_user", "seq", "device_token", "device_ack"}


def _message_tables(count: int) -> set[str]:
    return {f"message_{i:03d}" for i in range(count)}


def test_sql_file_matches_schema() -> None:
    expected = db.mysql_ddl(MessageShards(10))
    assert SQL_FILE.read_text() == expected, "regenerate with `gim migrate --sql > sql/create_table.sql`"


def test_sql_file_creates_exactly_the_tables() -> None:
    names = re.findall(r"CREATE TABLE\s+`?(\w+)`?", SQL_FILE.read_text())
    assert len(names) == len(set(names)), names
    assert set(names) == BASE_TABLES | _message_tables(10)
    assert len(names) == 18


@pytest.mark.parametrize("user_id", [0, 1, 9, 10, 11, 123, 99_999, 2**62 + 7])
def test_table_for_picks_user_id_mod_10(user_id: int) -> None:
    shards = MessageShards(10)
    assert shards.table_for(user_id).name == f"message_{user_id % 10:03d}"


def test_shard_tables_are_numbered() -> None:
    shards = MessageShards(3)
    assert [t.name for t in shards.tables] == ["message_000", "message_001", "message_002"]
    assert set(shards.metadata.tables) == _message_tables(3)
    assert MessageShards(1000).tables[-1].name == "message_999"


@pytest.mark.parametrize("count", [0, -1, 1001])
def test_bad_shard_count_is_a_value_error(count: int) -> None:
    with pytest.raises(ValueError):
        MessageShards(count)


def test_schema_creates_in_sqlite_idempotently(tmp_path: Path) -> None:
    engine = sqlalchemy.create_engine("sqlite:///" + str(tmp_path / "gim.db"))
    try:
        shards = MessageShards(3)
        for _ in range(2):
            schema.metadata.create_all(engine)
            shards.metadata.create_all(engine)
        inspector = sqlalchemy.inspect(engine)
        assert set(inspector.get_table_names()) == BASE_TABLES | _message_tables(3)
        assert inspector.get_pk_constraint("seq")["constrained_columns"] == ["object_type", "object_id"]
        assert inspector.get_pk_constraint("message_000")["constrained_columns"] == ["user_id", "seq"]
        assert inspector.get_pk_constraint("user")["constrained_columns"] == ["id"]
        uniques = {u["name"]: u["column_names"] for u in inspector.get_unique_constraints("friend")}
        assert uniques["uk_user_id_friend_id"] == ["user_id", "friend_id"]
        indexes = {i["name"] for i in inspector.get_indexes("device")}
        assert {"idx_user_id", "idx_conn_addr"} <= indexes

        # The auto-increment id and the server defaults work in SQLite.
        with engine.begin() as conn:
            conn.execute(schema.user.insert().values(phone_number="1"))
            conn.execute(schema.user.insert().values(phone_number="2"))
            rows = conn.execute(
                sqlalchemy.select(schema.user.c.id, schema.user.c.nickname, schema.user.c.create_time).order_by(
                    schema.user.c.id
                )
            ).all()
        assert [r.id for r in rows] == [1, 2]
        assert rows[0].nickname == ""
        assert rows[0].create_time is not None
    finally:
        engine.dispose()
