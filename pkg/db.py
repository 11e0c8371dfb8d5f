"""Database engines for MySQL/MariaDB (asyncmy) and SQLite (aiosqlite), and migration."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy import event, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.schema import CreateIndex, CreateTable
from sqlalchemy.sql.base import ReadOnlyColumnCollection
from sqlalchemy.sql.expression import ColumnElement, Executable

from gim.pkg import schema

DRIVERS = {"mysql": "mysql+asyncmy", "sqlite": "sqlite+aiosqlite"}


def normalize_url(url: str | URL) -> URL:
    """Accept `mysql://` and `sqlite://` as well as the async driver spellings."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend not in DRIVERS:
        raise ValueError(f"database_url: unsupported database {backend!r} (mysql or sqlite)")
    parsed = parsed.set(drivername=DRIVERS[backend])
    if backend == "mysql" and "charset" not in parsed.query:
        parsed = parsed.update_query_dict({"charset": "utf8mb4"})
    return parsed


def epoch_seconds(value: dt.datetime | str | None) -> int:
    """A DATETIME column (UTC, as CURRENT_TIMESTAMP writes it) as Unix seconds."""
    if value is None:
        return 0
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return int(value.replace(tzinfo=dt.UTC).timestamp())


_driver_sql: dict[tuple[object, ...], str] = {}


def driver_sql(conn: AsyncConnection, statement: Executable, columns: Sequence[str]) -> str:
    """`statement` compiled once for this kind of server (MySQL and MariaDB differ), for
    `conn.exec_driver_sql(sql, rows)` with each row a tuple in `columns` order: a
    multi-row insert skips SQLAlchemy's per-row parameter work, which counts when it
    holds hundreds of rows (a group message) and runs while seq rows are locked."""
    dialect = conn.dialect
    key = (dialect.name, dialect.server_version_info, getattr(dialect, "is_mariadb", False), statement)
    sql = _driver_sql.get(key)
    if sql is None:
        compiled = statement.compile(dialect=dialect, column_keys=list(columns))  # type: ignore[attr-defined]  # every statement given here is a ClauseElement
        if list(compiled.positiontup or ()) != list(columns):
            raise ValueError(f"{statement} takes {compiled.positiontup}, not {list(columns)}")
        sql = _driver_sql[key] = str(compiled)
    return sql


# -- where MySQL and SQLite differ --------------------------------------------------------
# Every difference between the two databases that a statement must spell out lives here;
# repositories build their statements with these and never look at the dialect themselves.


def is_sqlite(bind: AsyncEngine | AsyncConnection) -> bool:
    return bind.dialect.name == "sqlite"


def is_mysql(bind: AsyncEngine | AsyncConnection) -> bool:
    """MySQL or MariaDB."""
    return bind.dialect.name == "mysql"


S = TypeVar("S")


@dataclasses.dataclass(frozen=True)
class PerDialect(Generic[S]):
    """One statement spelled for each database; `for_(conn)` is the one for that connection."""

    mysql: S
    sqlite: S

    def for_(self, bind: AsyncEngine | AsyncConnection) -> S:
        return self.mysql if is_mysql(bind) else self.sqlite


@dataclasses.dataclass(frozen=True)
class Proposed:
    """What an upsert's update may refer to: the row it proposed (`new`: MySQL's inserted
    values, SQLite's `excluded`) and the dialect's spelling of the larger of two values."""

    new: ReadOnlyColumnCollection[str, ColumnElement[Any]]
    dialect: str

    def greatest(self, a: ColumnElement[Any], b: ColumnElement[Any]) -> ColumnElement[Any]:
        return sa.func.greatest(a, b) if self.dialect == "mysql" else sa.func.max(a, b)


def upsert(table: sa.Table, keys: Sequence[str], update: Callable[[Proposed], dict[str, Any]]) -> PerDialect[sa.Insert]:
    """INSERT that, on a row with the same `keys` (a primary or unique key), sets what
    `update(proposed)` returns instead: ON DUPLICATE KEY UPDATE / ON CONFLICT DO UPDATE."""
    on_mysql = mysql.insert(table)
    on_sqlite = sqlite.insert(table)
    return PerDialect(
        on_mysql.on_duplicate_key_update(update(Proposed(on_mysql.inserted, "mysql"))),
        on_sqlite.on_conflict_do_update(
            index_elements=[table.c[k] for k in keys], set_=update(Proposed(on_sqlite.excluded, "sqlite"))
        ),
    )


def insert_ignore(table: sa.Table) -> PerDialect[sa.Insert]:
    """INSERT that skips a row whose unique key exists: INSERT IGNORE / ON CONFLICT DO NOTHING."""
    return PerDialect(mysql.insert(table).prefix_with("IGNORE"), sqlite.insert(table).on_conflict_do_nothing())


def locking(query: sa.Select[Any]) -> sa.Select[Any]:
    """`query` locking the rows it reads until commit (SELECT ... FOR UPDATE). SQLite has no
    row locks and renders nothing: its writers hold the database lock from BEGIN IMMEDIATE
    (`create_engine`), which serializes them anyway."""
    return query.with_for_update()


def through_primary_key(query: sa.Select[Any], table: sa.Table) -> sa.Select[Any]:
    """`query` reading `table` through its primary key (MySQL: FORCE INDEX (PRIMARY), so a
    locking read locks the rows asked for, not a scan of the whole small table)."""
    return query.with_hint(table, "FORCE INDEX (PRIMARY)", dialect_name="mysql")


SCRIPT_BYTES = 1 << 20  # one multi-statement query of `insert_rows`, about at most


async def insert_rows(
    conn: AsyncConnection,
    rows_by_insert: Mapping[sa.Insert, list[tuple[Any, ...]]],
    columns: Sequence[str],
    shared: slice | None = None,
) -> None:
    """Rows into several tables: one multi-row INSERT per table, each row a tuple in
    `columns` order; no rows, no statement. On MySQL (asyncmy) the INSERTs go together as
    one multi-statement query (up to about SCRIPT_BYTES each): one round trip instead of
    one per table, which is most of the time of a group message's rows spread over the
    message tables. Its values are written into the text (`_literal`: bytes and strings as
    hex, safe whatever the session's sql_mode). The values at `shared` (a slice with a start
    and a stop; hashable values) repeat from row to row and are written once for each
    distinct run of them: a group message's hundreds of rows differ only in the user, its
    seq and the sender's request key. Elsewhere, one statement per table."""
    rows_by_insert = {insert: rows for insert, rows in rows_by_insert.items() if rows}
    if not rows_by_insert:
        return
    if conn.dialect.driver != "asyncmy":
        for insert, rows in rows_by_insert.items():
            await conn.exec_driver_sql(driver_sql(conn, insert, columns), rows)
        return
    driver = (await conn.get_raw_connection()).driver_connection
    assert driver is not None, "a connection in a transaction has its driver connection"
    row_marks = "(" + ", ".join(["%s"] * len(columns)) + ")"
    scripts: list[list[tuple[str, str]]] = [[]]  # each statement: (with placeholders, with values)
    size = 0
    own_head, own_tail = (
        (slice(shared.start), slice(shared.stop, None)) if shared is not None else (slice(None), slice(0))
    )
    literals_of: dict[tuple[Any, ...], str] = {}  # shared values -> their literals
    for insert, rows in rows_by_insert.items():
        template = driver_sql(conn, insert, columns)
        head, found, rest = template.partition("VALUES " + row_marks)
        if not found or rest:
            raise ValueError(f"{insert} is not a plain INSERT ... VALUES")
        values: list[str] = []
        for row in rows:
            parts = [_literal(driver, v) for v in row[own_head]]
            if shared is not None:
                repeated = row[shared]
                literals = literals_of.get(repeated)
                if literals is None:
                    literals = literals_of[repeated] = ", ".join([_literal(driver, v) for v in repeated])
                parts.append(literals)
            parts += [_literal(driver, v) for v in row[own_tail]]
            text = "(" + ", ".join(parts) + ")"
            if size and size + len(text) > SCRIPT_BYTES:  # this script is full: the next one
                if values:
                    scripts[-1].append((template, head + "VALUES " + ", ".join(values)))
                    values = []
                scripts.append([])
                size = 0
            values.append(text)
            size += len(text) + 2
        scripts[-1].append((template, head + "VALUES " + ", ".join(values)))
    async with driver.cursor() as cursor:
        for script in scripts:
            done = 0
            try:
                # text protocol: a multi-statement query is not preparable
                await cursor.execute("; ".join(sql for _, sql in script))
                done = 1
                while await cursor.nextset():  # each statement's outcome; an error raises here
                    done += 1
            except conn.dialect.loaded_dbapi.Error as exc:
                # the statement that failed as written, without its values (user content)
                raise sa.exc.DBAPIError.instance(
                    script[min(done, len(script) - 1)][0],
                    None,
                    exc,
                    conn.dialect.loaded_dbapi.Error,
                    dialect=conn.dialect,
                ) from exc


def _literal(driver: Any, value: Any) -> str:
    """`value` as a MySQL literal. Bytes and strings as hex (X'..', a string with its
    character set): the driver escapes bytes with backslashes even when the session's
    sql_mode has NO_BACKSLASH_ESCAPES, where content could end the literal early."""
    if type(value) is int:
        return str(value)
    if value is None:
        return "NULL"
    if isinstance(value, str):
        return "_utf8mb4 X'" + value.encode().hex() + "'"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "X'" + bytes(value).hex() + "'"
    if isinstance(value, int):
        return str(int(value))
    return str(driver.literal(value))  # other numbers, dates: no quotes to escape


STATEMENT_CACHE = 32  # prepared statements per MySQL connection (40 connections a process)


def create_engine(url: str | URL, **kwargs: Any) -> AsyncEngine:
    """An async engine; SQLite gets WAL, a busy timeout and write-locking transactions."""
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "mysql":
        options: dict[str, Any] = {
            "pool_size": 20,
            "max_overflow": 20,
            "pool_recycle": 3600,
            # Statements with parameters run as server-side prepared statements (binary
            # protocol: no escaping, no text parsing of rows), and on MariaDB a multi-row
            # insert goes as one bulk execution. Each connection keeps this many; the
            # server allows max_prepared_stmt_count (16,382 by default) in all.
            "connect_args": {"stmt_cache_size": STATEMENT_CACHE},
            # Row locks only: under REPEATABLE READ the range and gap locks of one logic
            # node's store transaction (seq rows, message rows) deadlocked another's.
            # Everything that must not race takes row locks (FOR UPDATE, upserts).
            "isolation_level": "READ COMMITTED",
        }
        options.update(kwargs)
        engine = create_async_engine(parsed, **options)
        _ping_when_idle(engine)
        return engine
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(parsed, connect_args={"timeout": 30}, **kwargs)
    _serialize_sqlite_writers(engine)
    return engine


# A pooled MySQL connection unused for this long is pinged before it is handed out; one
# that fails is replaced (the server restarted, or dropped it). One used more recently is
# not: a ping is a round trip per transaction, most of the database's share of a send
# under load. If the server went away meanwhile, the first statement fails and the whole
# pool is renewed (SQLAlchemy's handling of a disconnect); sends retry it.
IDLE_BEFORE_PING = 1.0
_IDLE_SINCE = "gim_idle_since"


def _ping_when_idle(engine: AsyncEngine) -> None:
    pool, dialect = engine.sync_engine.pool, engine.sync_engine.dialect

    @event.listens_for(pool, "checkin")
    def _checkin(dbapi_connection: Any, record: Any) -> None:
        if record is not None:
            record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(pool, "checkout")
    def _checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        since = record.info.get(_IDLE_SINCE)
        if since is None or time.monotonic() - since < IDLE_BEFORE_PING:
            return  # just made, or just used
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as exc:  # the pool tries another connection (3 times at most)
            raise sa_exc.DisconnectionError(f"a pooled connection failed its ping: {exc}") from exc


def _serialize_sqlite_writers(engine: AsyncEngine) -> None:
    # logic and business are separate processes sharing one SQLite file: a deferred
    # transaction that upgrades to a writer can fail at once with "database is locked",
    # so every transaction takes the write lock up front and waits for it (busy_timeout).
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Reads (see `reading`) take no lock: in WAL mode they never block a writer.
        conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get(_READ_ONLY) else "BEGIN IMMEDIATE")


_READ_ONLY = "gim_read_only"


@contextlib.asynccontextmanager
async def reading(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection for reads only (on SQLite: a transaction that takes no write lock)."""
    async with engine.connect() as conn:
        yield await conn.execution_options(**{_READ_ONLY: True})


async def ensure_database(url: str | URL) -> None:
    """Create the MySQL database named in `url` if it is missing (SQLite: nothing to do)."""
    parsed = normalize_url(url)
    if parsed.get_backend_name() != "mysql" or not parsed.database:
        return
    server = create_async_engine(_server_url(parsed), poolclass=_null_pool())
    try:
        async with server.begin() as conn:
            await conn.execute(
                text(
                    f"CREATE DATABASE IF NOT EXISTS `{parsed.database}` "
                    "CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
                )
            )
    finally:
        await server.dispose()


async def drop_database(url: str | URL) -> None:
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "mysql" and parsed.database:
        server = create_async_engine(_server_url(parsed), poolclass=_null_pool())
        try:
            async with server.begin() as conn:
                await conn.execute(text(f"DROP DATABASE IF EXISTS `{parsed.database}`"))
        finally:
            await server.dispose()
    elif parsed.database and parsed.database != ":memory:":
        for suffix in ("", "-wal", "-shm"):
            Path(parsed.database + suffix).unlink(missing_ok=True)  # noqa: ASYNC240 (a test-time reset; local file)


def _null_pool() -> Any:
    from sqlalchemy.pool import NullPool

    return NullPool


async def migrate(engine: AsyncEngine, shards: schema.MessageShards) -> None:
    """Create every missing table, and in a table made by an older version every missing
    nullable column and index (idempotent)."""
    async with engine.begin() as conn:
        await conn.run_sync(schema.metadata.create_all)
        await conn.run_sync(shards.metadata.create_all)
        await conn.run_sync(_add_missing, [*schema.metadata.sorted_tables, *shards.tables])


def _add_missing(sync_conn: Any, tables: Sequence[sa.Table]) -> None:
    """Nullable columns and indexes a table of an older version lacks: added in place."""
    inspector = sa.inspect(sync_conn)
    for table in tables:
        have = {c["name"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name not in have:
                if not column.nullable:
                    raise RuntimeError(f"{table.name}.{column.name}: only nullable columns are added by a migration")
                kind = column.type.compile(dialect=sync_conn.dialect)
                sync_conn.exec_driver_sql(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind} NULL")
        indexes = {i["name"] for i in inspector.get_indexes(table.name)}
        for index in table.indexes:
            if index.name not in indexes:
                index.create(sync_conn)


def _render(ddl: Any, dialect: Any) -> str:
    lines = str(ddl.compile(dialect=dialect)).strip().splitlines()
    return "\n".join(line.rstrip().replace("\t", "    ") for line in lines)


def mysql_ddl(shards: schema.MessageShards) -> str:
    """The schema as MySQL statements: the content of sql/create_table.sql."""
    dialect = mysql.dialect()
    statements = []
    for meta in (schema.metadata, shards.metadata):
        for table in meta.sorted_tables:
            statements.append(_render(CreateTable(table), dialect))
            for index in sorted(table.indexes, key=lambda i: str(i.name)):
                statements.append(_render(CreateIndex(index), dialect))
    header = (
        "-- gim schema for MySQL 8 / MariaDB 10.11, generated by `gim migrate --sql`.\n"
        "-- Keep in step with gim/pkg/schema.py (test/test_schema.py checks it).\n\n"
    )
    return header + ";\n\n".join(statements) + ";\n"


def _server_url(url: URL) -> URL:
    """The same server without a database (`URL.set(database=None)` would keep it)."""
    return url._replace(database=None)
