"""Service configuration: YAML files under config/, every key overridable by environment.

Precedence, highest first: `GIM_<SERVICE>_<KEY>` (for example `GIM_LOGIC_REDIS_URL`),
then `GIM_<KEY>` (shared by every service that has the key, for example
`GIM_DATABASE_URL`), then `config/<service>.yaml`, then the defaults below. The folder is
`$GIM_CONFIG_DIR` when set. A bad value is a `ConfigError` naming the key and where it
came from.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from gim.pkg.errors import STATUS_MODES

REPO_ROOT = Path(__file__).resolve().parent.parent


class ConfigError(Exception):
    """A configuration value that cannot be used; the message names the key."""


@dataclasses.dataclass(frozen=True)
class BaseConfig:
    log_level: str = "info"
    log_format: str = "console"  # console | json
    redis_url: str = "redis://127.0.0.1:6390/0"
    redis_prefix: str = "gim:"
    # how a gim error goes out as a gRPC status: "gim" (the number itself, as the Go
    # original; grpc-go clients compare it) or "standard" (the nearest standard code)
    grpc_status: str = "gim"

    def __post_init__(self) -> None:
        if self.grpc_status not in STATUS_MODES:
            raise ConfigError(f"grpc_status: expected one of {', '.join(STATUS_MODES)}, got {self.grpc_status!r}")


@dataclasses.dataclass(frozen=True)
class StorageConfig(BaseConfig):
    database_url: str = "sqlite+aiosqlite:///var/gim.db"
    message_shards: int = 10  # message_000 ... message_{N-1}, by user_id % N
    cache_ttl: int = 300  # seconds a Redis cache entry (users, online devices, groups) lives


@dataclasses.dataclass(frozen=True)
class BusinessConfig(StorageConfig):
    int_listen: str = "127.0.0.1:50300"
    ext_listen: str = "127.0.0.1:50301"
    logic_int_addr: str = "127.0.0.1:50000"
    token_ttl: int = 30 * 24 * 3600
    dev_code: str = ""  # the development verifier's fixed code; empty = no such verifier
    search_limit: int = 20


@dataclasses.dataclass(frozen=True)
class LogicConfig(StorageConfig):
    int_listen: str = "127.0.0.1:50000"
    ext_listen: str = "127.0.0.1:50001"
    business_int_addr: str = "127.0.0.1:50300"
    sync_page_size: int = 50
    max_content_bytes: int = 60_000
    max_group_members: int = 1000
    auth_cache_seconds: float = 10.0  # an API caller's token, once checked, is trusted this long
    rpc_timeout: float = 5.0
    room_keep_seconds: int = 120  # persisted room messages stay replayable this long


@dataclasses.dataclass(frozen=True)
class ConnectConfig(BaseConfig):
    tcp_listen: str = "127.0.0.1:8080"
    ws_listen: str = "127.0.0.1:8081"
    int_listen: str = "127.0.0.1:50100"
    conn_addr: str = ""  # address logic uses to reach this node; default: int_listen
    logic_int_addr: str = "127.0.0.1:50000"
    max_body_bytes: int = 4096
    sign_in_timeout: float = 10.0
    idle_timeout: float = 660.0
    write_buffer_limit: int = 1 << 20
    close_timeout: float = 5.0  # a closing connection still not drained after this is aborted
    stats_interval: float = 60.0  # log connection and room counts this often (when changed)
    rpc_timeout: float = 5.0

    @property
    def advertised_addr(self) -> str:
        return self.conn_addr or self.int_listen


C = TypeVar("C", bound=BaseConfig)


def config_dir(environ: Mapping[str, str] = os.environ) -> Path:
    return Path(environ.get("GIM_CONFIG_DIR") or REPO_ROOT / "config")


def load(
    cls: type[C],
    service: str,
    *,
    path: Path | None = None,
    environ: Mapping[str, str] = os.environ,
    **overrides: Any,
) -> C:
    """Build `cls` from the service's YAML file, the environment and `overrides`."""
    path = path or config_dir(environ) / f"{service}.yaml"
    values: dict[str, Any] = {}
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if path.exists():
        values.update(_read_yaml(path, fields))
    for name, field in fields.items():
        for var in (f"GIM_{service.upper()}_{name.upper()}", f"GIM_{name.upper()}"):
            if var in environ:
                values[name] = _coerce(environ[var], field, var)
                break
    values.update(overrides)
    for name in values.keys() - fields.keys():
        raise ConfigError(f"unknown key {name!r}")
    for name, value in values.items():
        values[name] = _coerce(value, fields[name], f"{path.name}: {name}")
    return cls(**values)


def _read_yaml(path: Path, fields: Mapping[str, dataclasses.Field[Any]]) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values")
    for key in data:
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(f"{path}: unknown key {key!r} (known keys: {known})")
    return data


_TYPES: dict[str, type] = {"str": str, "int": int, "float": float, "bool": bool}


def _coerce(value: Any, field: dataclasses.Field[Any], where: str) -> Any:
    kind = field.type if isinstance(field.type, type) else _TYPES[str(field.type)]
    if kind is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("1", "true", "yes", "on"):
            return True
        if str(value).lower() in ("0", "false", "no", "off"):
            return False
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        try:
            return float(value)
        except (TypeError, ValueError):
            pass
    elif kind is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    raise ConfigError(f"{where}: expected {kind.__name__}, got {value!r}")


def split_host_port(addr: str, key: str = "address") -> tuple[str, int]:
    """'127.0.0.1:8080' -> ('127.0.0.1', 8080); '[::1]:80' works too."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"{key}: expected host:port, got {addr!r}")
    return host.strip("[]") or "0.0.0.0", int(port)
