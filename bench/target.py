"""`--target`: benchmark services that are already running instead of starting nodes.

Where they listen and what storage they share come from the same configuration the
services read (`config/*.yaml` and `GIM_*` variables), so `gim bench single --target`
measures what `make run` started. `SPEC` overrides addresses: `logic=HOST:PORT` (LogicExt),
`business=HOST:PORT` (UserExt), `tcp=HOST:PORT` and `ws=HOST:PORT` (one pair per connect
node, repeat them for several), comma-separated. `--mysql` and `--redis` override the
database and Redis; the benchmark seeds its users there and leaves them.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

from gim.pkg import config

KEYS = ("logic", "business", "tcp", "ws")


@dataclasses.dataclass(frozen=True)
class Target:
    logic: str  # LogicExt address (a list is balanced over)
    business: str  # UserExt address
    tcp: tuple[str, ...]  # each connect node's TCP listener
    ws: tuple[str, ...]  # and its WebSocket listener, in the same order
    database_url: str
    redis_url: str
    redis_prefix: str
    shards: int


def _reachable(addr: str) -> str:
    host, port = config.split_host_port(addr)
    return f"127.0.0.1:{port}" if host in ("", "0.0.0.0", "::") else addr


def parse(spec: str, database_url: str = "", redis_url: str = "", environ: Mapping[str, str] | None = None) -> Target:
    """The target `spec` names (see the module docstring); ValueError on a bad spec."""
    env = os.environ if environ is None else environ
    logic = config.load(config.LogicConfig, "logic", environ=env)
    business = config.load(config.BusinessConfig, "business", environ=env)
    connect = config.load(config.ConnectConfig, "connect", environ=env)
    given: dict[str, list[str]] = {key: [] for key in KEYS}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        key, sep, addr = part.partition("=")
        if not sep or key not in given or not addr:
            raise ValueError(f"--target: {part!r} is not one of {', '.join(k + '=HOST:PORT' for k in KEYS)}")
        try:
            config.split_host_port(addr, key)
        except config.ConfigError as exc:
            raise ValueError(f"--target: {exc}") from None
        given[key].append(addr)
    tcp = given["tcp"] or [connect.tcp_listen]
    ws = given["ws"] or ([connect.ws_listen] if not given["tcp"] else [])
    if len(ws) != len(tcp):
        raise ValueError("--target: give one ws= for each tcp= (the listeners of each connect node)")
    return Target(
        logic=",".join(map(_reachable, given["logic"] or [logic.ext_listen])),
        business=_reachable((given["business"] or [business.ext_listen])[-1]),
        tcp=tuple(map(_reachable, tcp)),
        ws=tuple(map(_reachable, ws)),
        database_url=database_url or logic.database_url,
        redis_url=redis_url or logic.redis_url,
        redis_prefix=logic.redis_prefix,
        shards=logic.message_shards,
    )
