"""Server reflection on the public gRPC ports (what `grpcurl list` and `describe` use):
on by default, listing and describing the services; `reflection: false` turns it off."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from gim.internal.business.server import BusinessServer
from gim.pkg import redis_client
from gim.pkg.config import BusinessConfig


def reflect(port: int, service: str = "") -> tuple[list[str], list[str]]:
    """(the services a server lists, the methods of `service`) through a reflection client."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = sorted(database.get_services())
        methods: list[str] = []
        if service:
            pool = DescriptorPool(database)
            methods = [m.name for m in pool.FindServiceByName(service).methods]
        return services, methods


async def test_public_ports_list_and_describe_their_services(cluster: Any) -> None:
    services, methods = await asyncio.to_thread(reflect, cluster.logic.ext_port, "pb.LogicExt")
    assert services == ["grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection", "pb.LogicExt"]
    assert {"RegisterDevice", "SendMessage", "PushRoom", "GetGroupMembers"} <= set(methods)
    services, methods = await asyncio.to_thread(reflect, cluster.business.ext_port, "pb.UserExt")
    assert {"pb.UserExt", "pb.BusinessExt"} <= set(services)
    assert methods == ["SignIn", "GetUser", "UpdateUser", "SearchUser"]
    with pytest.raises(grpc.RpcError) as info:  # the private ports offer none
        await asyncio.to_thread(reflect, cluster.logic.int_port)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED  # type: ignore[attr-defined]  # a grpc.Call too


async def test_reflection_false_turns_it_off(tmp_path: Path) -> None:
    cfg = BusinessConfig(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'gim.db'}",
        redis_url=f"redis://127.0.0.1:{redis_client.free_port()}/0",
        int_listen="127.0.0.1:0",
        ext_listen="127.0.0.1:0",
        reflection=False,
    )
    server = BusinessServer.from_config(cfg)
    await server.start()
    try:
        with pytest.raises(grpc.RpcError) as info:
            await asyncio.to_thread(reflect, server.ext_port)
        assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED  # type: ignore[attr-defined]
    finally:
        await server.stop(0)
