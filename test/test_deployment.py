"""The deployment: docker-compose.yml checked for structure, and the same topology
(business, two logic nodes, two connect nodes) run as local processes on MariaDB and
Redis, with one connect node killed mid-traffic.

The cluster test derives its nodes and their environment from docker-compose.yml
(service host names become 127.0.0.1, container ports become free local ports), so the
compose file and what is tested cannot drift apart.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import tomllib
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import compose_spec
import pytest
import yaml
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

REPO = Path(__file__).resolve().parent.parent
COMPOSE = REPO / "docker-compose.yml"
CONFIGS: dict[str, type[config.BaseConfig]] = {
    "business": config.BusinessConfig,
    "logic": config.LogicConfig,
    "connect": config.ConnectConfig,
}
DEV_CODE = "0000"
WAIT = 30.0  # bound on any one wait
FAST = Timing(heartbeat_interval=5.0, heartbeat_timeout=5.0, request_timeout=5.0, backoff_initial=0.02, backoff_max=0.3)


def load_compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict) and isinstance(data.get("services"), dict)
    return data


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


# -- the compose file ---------------------------------------------------------------------


def test_compose_file_follows_the_compose_specification() -> None:
    """The Compose Specification's own model (compose-spec) accepts the file, YAML
    anchors and merge keys resolved as Docker Compose resolves them; and it does catch a
    mistake of the kind a hand edit makes."""
    spec = compose_spec.PyCompose.from_json(json.dumps(load_compose())).to_spec()
    assert spec.services is not None and set(spec.services) == set(load_compose()["services"])
    broken = load_compose()
    broken["services"]["business"]["healthchek"] = broken["services"]["business"].pop("healthcheck")
    with pytest.raises(ValueError, match="healthchek"):
        compose_spec.PyCompose.from_json(json.dumps(broken))


def test_compose_services_images_and_health_checks() -> None:
    compose = load_compose()
    services = compose["services"]
    kinds = gim_services(compose)
    assert set(services) == {"mysql", "redis", *kinds}
    assert Counter(kinds.values()) == {"business": 1, "logic": 2, "connect": 2}
    assert services["mysql"]["image"].startswith("mysql:8")
    assert services["redis"]["image"].startswith("redis:7")
    assert "FROM python:3.12-slim" in (REPO / "Dockerfile").read_text().splitlines()
    for name, svc in services.items():
        assert svc.get("healthcheck", {}).get("test"), f"{name} has no health check"
        for dep, how in (svc.get("depends_on") or {}).items():
            assert dep in services and how == {"condition": "service_healthy"}, (name, dep, how)
        for volume in svc.get("volumes", []):
            host = volume.split(":")[0]
            assert (REPO / host).is_file(), f"{name} mounts {host}, which does not exist"
    assert any("create_table.sql:/docker-entrypoint-initdb.d/" in v for v in services["mysql"]["volumes"])
    for name, kind in kinds.items():
        svc = services[name]
        assert svc["build"] == "." and svc["command"][0] in scripts(), name
        env = {k: str(v) for k, v in svc["environment"].items()}
        ports = listen_ports(kind, env)
        assert svc["healthcheck"]["test"] == ["CMD", "gim", "health", *(f"127.0.0.1:{p}" for p in ports.values())]


def test_compose_environment_is_real_configuration() -> None:
    """Every GIM_* variable is a key of that service's config (and loads); peer addresses
    name services (or a network alias) and ports they listen on."""
    compose = load_compose()
    services = compose["services"]
    kinds = gim_services(compose)
    names = aliases(compose)
    for name, kind in kinds.items():
        env = {k: str(v) for k, v in services[name]["environment"].items()}
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
                    target_env = {k: str(v) for k, v in services[target]["environment"].items()}
                    assert port in listen_ports(kinds[target], target_env).values(), f"{name}: {var}={value}"
    connects = [n for n, k in kinds.items() if k == "connect"]
    published = [p for svc in services.values() for p in svc.get("ports", [])]
    assert len({p.split(":")[0] for p in published}) == len(published), "every host port once"
    for name in connects:
        env = services[name]["environment"]
        assert env["GIM_CONNECT_CONN_ADDR"] == f"{name}:{listen_ports('connect', env)['int']}"
        inside = {int(p.split(":")[1]) for p in services[name]["ports"]}
        assert inside == {listen_ports("connect", env)[k] for k in ("tcp", "ws")}, "TCP and WebSocket published"


def test_gim_health() -> None:
    import socket

    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        up = f"127.0.0.1:{listening.getsockname()[1]}"
        gim_main(["health", up])  # returns: exit code 0
        with pytest.raises(SystemExit, match="not listening"):
            gim_main(["health", up, f"127.0.0.1:{redis_client.free_port()}"])


# -- the same topology as local processes ----------------------------------------------


def compose_nodes(database_url: str, redis_url: str, redis_prefix: str) -> list[NodeSpec]:
    """The gim services of docker-compose.yml as local nodes: each (service, container
    port) gets a free loopback port; addresses naming a service or an alias are rewritten
    to those ports; the database and Redis become the test's own."""
    compose = load_compose()
    kinds = gim_services(compose)
    names = aliases(compose)
    envs = {n: {k: str(v) for k, v in compose["services"][n]["environment"].items()} for n in kinds}
    local = {(n, p): f"127.0.0.1:{redis_client.free_port()}" for n in kinds for p in listen_ports(kinds[n], envs[n]).values()}

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
            if var.endswith("DATABASE_URL"):
                value = database_url
            elif var.endswith("REDIS_URL"):
                value = redis_url
            elif var.endswith(("_LISTEN", "_ADDR")):
                value = rewrite(node, value)
            env[var] = value
        env.update(service_env(kind, {"redis_prefix": redis_prefix}))
        if kind == "business":
            env.update(service_env(kind, {"dev_code": DEV_CODE}))  # the test signs in with it
        listen = {k: local[(node, p)] for k, p in listen_ports(kind, envs[node]).items()}
        specs.append(NodeSpec(node, kind, listen, env))
    return specs


@pytest.fixture
async def compose_database(empty_mysql: str) -> str:
    """A new MySQL database initialised the way the compose MySQL is: sql/create_table.sql."""
    engine = db.create_engine(empty_mysql)
    try:
        async with engine.begin() as conn:
            for statement in (REPO / "sql" / "create_table.sql").read_text().split(";"):
                lines = [line for line in statement.splitlines() if not line.startswith("--")]
                if "".join(lines).strip():
                    await conn.execute(sql("\n".join(lines)))
    finally:
        await engine.dispose()
    return empty_mysql


@pytest.fixture
async def deployment(compose_database: str, storage: Any, tmp_path: Path) -> Any:
    """The compose topology as local processes (logs under tmp_path); stopped, by PID,
    whatever happens."""
    prefix = f"{storage.redis_prefix}deploy:{uuid.uuid4().hex[:6]}:"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIM_")}
    nodes = Launcher(compose_nodes(compose_database, storage.redis_url, prefix), env=env, log_dir=tmp_path)
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


@pytest.mark.parametrize("storage", ["mysql"], indirect=True)
async def test_cluster_delivers_across_nodes_and_survives_a_killed_connect_node(deployment: Launcher) -> None:
    nodes = deployment
    tcp = [config.split_host_port(a) for a in nodes.addrs("connect", "tcp")]
    api = GimApi(",".join(nodes.addrs("logic", "ext")), nodes.addr("business", "ext"), timeout=10)
    logic_int = rpc.channel(",".join(nodes.addrs("logic", "int")))
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


@pytest.mark.parametrize("storage", ["mysql"], indirect=True)
async def test_a_logic_node_killed_mid_traffic_leaves_no_half_written_message(
    deployment: Launcher, compose_database: str
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
                    except Exception:  # noqa: BLE001 - the error a client retries on
                        failures += 1
                assert label in returned, f"{label}: no send succeeded in 5 attempts"
                if len(returned) >= 8:
                    enough.set()

        senders = asyncio.gather(*(sender(k) for k in range(4)))
        await asyncio.wait_for(enough.wait(), WAIT)
        assert await nodes.kill("logic-1") == -signal.SIGKILL
        await asyncio.wait_for(senders, WAIT)
        assert len(returned) == 40
        mine, theirs = await _stored(compose_database, alice.user_id), await _stored(compose_database, bob.user_id)
        for rows in (mine, theirs):
            assert [seq for seq, _ in rows] == list(range(1, len(rows) + 1)), "gapless"
        labels = Counter(label for _, label in mine)
        assert labels == Counter(label for _, label in theirs), "every message stored for both or neither"
        assert set(labels) == set(returned), "every send that returned is stored"
        assert set(mine) >= {(seq, label) for label, seq in returned.items()}, "the returned seq is the sender's"
        assert sum(labels.values()) - len(returned) <= failures, "a duplicate only where a send was retried"
    finally:
        await api.close()
