"""The internal credential and the TLS keys (issue 12, item 3): a node whose private port
is reachable from other hosts refuses to start without a credential (a real process, one
line, exit 1) unless told the network is private; mutual TLS on a private port; the
configuration's checks of the TLS keys (a secret is never shown)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import trustme
from grpc import aio

from gim.pkg import rpc
from gim.pkg.config import ConfigError, ConnectConfig, LogicConfig, load
from gim.pkg.security import Outbound, Security, client_credentials, exposure_problem

pytestmark = pytest.mark.integration  # starts gim processes or servers of its own

WAIT = 30.0


def _service_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIM_")}
    env.update(
        GIM_CONFIG_DIR=str(tmp_path),  # no YAML there: the defaults, then these
        GIM_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'gim.db'}",
        GIM_BUSINESS_EXT_LISTEN="127.0.0.1:0",
    )
    env.update({f"GIM_{key.upper()}": value for key, value in settings.items()})
    return env


async def _business(env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-P", "-m", "gim.cmd.business", env=env,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def _refusal(env: dict[str, str]) -> list[str]:
    process = await _business(env)
    async with asyncio.timeout(WAIT):
        _, err = await process.communicate()
    assert process.returncode == 1
    return [line for line in err.decode().splitlines() if line.strip()]


async def test_a_node_on_every_interface_without_a_credential_refuses_to_start(tmp_path: Path) -> None:
    lines = await _refusal(_service_env(tmp_path, business_int_listen="0.0.0.0:0"))
    assert len(lines) == 1, lines
    assert "cannot_start" in lines[0] and "int_listen=0.0.0.0:0" in lines[0] and "internal_secret" in lines[0]


def _loopback_name() -> str:
    """A host name (not 'localhost') that resolves to a loopback address here, so that the
    node is 'not known to be loopback' by its setting yet binds nothing beyond this host."""
    name = socket.gethostname()
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(name, 0, socket.AF_INET)}
    except OSError:
        addresses = set()
    if name == "localhost" or not addresses or not all(a.startswith("127.") for a in addresses):
        pytest.skip(f"this host's name {name!r} does not resolve to loopback only")
    return name


async def test_private_network_trusted_lets_it_start(tmp_path: Path) -> None:
    name = _loopback_name()
    lines = await _refusal(_service_env(tmp_path, business_int_listen=f"{name}:0"))
    assert f"int_listen={name}:0" in lines[0], "a host name counts as reachable from other hosts"
    process = await _business(_service_env(tmp_path, business_int_listen=f"{name}:0", private_network_trusted="true"))
    seen: list[str] = []
    try:
        assert process.stderr is not None
        async with asyncio.timeout(WAIT):
            while not any("business_started" in line for line in seen):
                line = await process.stderr.readline()
                assert line, f"exited early: {seen}"
                seen.append(line.decode())
        assert process.returncode is None
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(WAIT):
            await process.wait()


def test_exposure_rules() -> None:
    """Loopback needs nothing; elsewhere a secret, mutual TLS or an explicit trust."""
    assert exposure_problem(LogicConfig()) is None
    assert exposure_problem(LogicConfig(int_listen="[::1]:50000")) is None
    assert exposure_problem(LogicConfig(int_listen="10.0.0.5:50000"))
    assert exposure_problem(LogicConfig(int_listen=":50000"))  # every interface
    assert exposure_problem(LogicConfig(int_listen="10.0.0.5:50000", internal_secret="x" * 16)) is None
    assert exposure_problem(LogicConfig(int_listen="10.0.0.5:50000", private_network_trusted=True)) is None


# -- mutual TLS on a private port ----------------------------------------------------------


async def _echo(request: bytes, context: Any) -> bytes:
    return request


@pytest.fixture
async def mtls_server(tmp_path: Path) -> AsyncIterator[tuple[int, Security, str]]:
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    files = {"ca": tmp_path / "ca.pem", "cert": tmp_path / "node.pem", "key": tmp_path / "node.key"}
    ca.cert_pem.write_to_path(str(files["ca"]))
    leaf.cert_chain_pems[0].write_to_path(str(files["cert"]))
    leaf.private_key_pem.write_to_path(str(files["key"]))
    cfg = ConnectConfig(tls="int", tls_cert_file=str(files["cert"]), tls_key_file=str(files["key"]),
                        tls_ca_file=str(files["ca"]), internal_mtls=True)  # fmt: skip
    security = Security.from_config(cfg)
    assert (
        security.has_internal_credential
        and exposure_problem(ConnectConfig(**{**cfg.__dict__, "int_listen": "10.0.0.5:1"})) is None
    )
    server = rpc.new_server("gim", security.server_interceptors("int"))
    handler = grpc.unary_unary_rpc_method_handler(_echo)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("pb.Test", {"Echo": handler}),))
    port = rpc.bind(server, "127.0.0.1:0", security.server_credentials("int"))
    await server.start()
    yield port, security, str(files["ca"])
    await server.stop(0)


async def test_mutual_tls_takes_a_node_certificate_and_refuses_a_caller_without_one(
    mtls_server: tuple[int, Security, str],
) -> None:
    port, security, ca_file = mtls_server
    async with rpc.channel(f"127.0.0.1:{port}", private=True, outbound=security.outbound) as channel:
        assert await channel.unary_unary("/pb.Test/Echo")(b"hello", timeout=10) == b"hello"
    no_cert = Outbound(credentials=client_credentials(ca_file))  # trusts the server, presents nothing
    async with rpc.channel(f"127.0.0.1:{port}", private=True, outbound=no_cert) as channel:
        with pytest.raises(aio.AioRpcError) as info:
            await channel.unary_unary("/pb.Test/Echo")(b"hello", timeout=10)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE


# -- the configuration's checks ---------------------------------------------------------------


def _error(tmp_path: Path, environ: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as info:
        load(LogicConfig, "logic", path=tmp_path / "absent.yaml", environ=environ)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_a_short_secret_is_refused_without_showing_it(tmp_path: Path) -> None:
    message = _error(tmp_path, {"GIM_INTERNAL_SECRET": "hunter2"})
    assert message.startswith("GIM_INTERNAL_SECRET=***: expected at least 16 characters"), message
    assert "hunter2" not in message


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"GIM_TLS": "tcp,smtp"}, "GIM_TLS=tcp,smtp: unknown listener 'smtp'"),
        ({"GIM_TLS": "all"}, "tls=all: needs tls_cert_file and tls_key_file"),
        (
            {"GIM_TLS_CERT_FILE": "/nonexistent/node.pem"},
            "GIM_TLS_CERT_FILE=/nonexistent/node.pem: expected a readable PEM file",
        ),
        ({"GIM_TLS_CERT_FILE": __file__}, "tls_cert_file and tls_key_file: set both or neither"),
        ({"GIM_INTERNAL_MTLS": "true"}, "internal_mtls: needs int in tls and tls_ca_file"),
    ],
)
def test_tls_settings_are_checked(tmp_path: Path, environ: dict[str, str], expected: str) -> None:
    assert expected in _error(tmp_path, environ)
