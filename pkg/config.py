"""Service configuration: YAML files under config/, every key overridable by environment.

Precedence, highest first: `GIM_<SERVICE>_<KEY>` (for example `GIM_LOGIC_REDIS_URL`),
then `GIM_<KEY>` (shared by every service that has the key, for example
`GIM_DATABASE_URL`), then `config/<service>.yaml`, then the defaults below. The folder is
`$GIM_CONFIG_DIR` when set.

Every value is checked in one place, `CHECKS` (type from the dataclass, then range or
format), whether it comes from a file, the environment or a constructor call. A bad value
is a one-line `ConfigError` naming where it came from
(`GIM_CONNECT_TCP_LISTEN=8080: expected host:port (port 0..65535)`), and a `GIM_*`
variable that is no setting of any service is an error that suggests the closest name.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import math
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from gim.pkg.errors import STATUS_MODES
from gim.pkg.limits import FRAME_MAX

REPO_ROOT = Path(__file__).resolve().parent.parent

DATABASE_SCHEMES = ("sqlite+aiosqlite", "sqlite", "mysql+asyncmy", "mysql")  # see pkg/db.normalize_url

# GIM_* variables that are no service setting but are read elsewhere: a service accepts
# them in its environment (an operator may well have sourced .env).
OTHER_VARIABLES = frozenset(
    {
        "GIM_CONFIG_DIR",  # the folder of the YAML files (below)
        "GIM_TEST_MYSQL_URL",  # the test suite's MariaDB and Redis (test/conftest.py)
        "GIM_TEST_REDIS_URL",
        # docker-compose.yml reads these from .env (see .env.example)
        "GIM_IMAGE",
        "GIM_MYSQL_USER",
        "GIM_MYSQL_PASSWORD",
        "GIM_MYSQL_ROOT_PASSWORD",
        "GIM_REDIS_PASSWORD",
    }
)


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
    # TLS and the internal credential (pkg/security.py, docs/security.md); the defaults are
    # plaintext and no credential, as before
    tls: str = ""  # listeners that speak TLS: tcp, ws, ext (public), int (private); public; all
    tls_cert_file: str = ""  # PEM certificate chain of this node (every TLS listener)
    tls_key_file: str = ""  # PEM private key of tls_cert_file
    tls_ca_file: str = ""  # PEM CA(s) trusted on calls to private TLS ports ('' = system roots)
    tls_server_name: str = ""  # name expected in peers' certificates ('' = the address's host)
    internal_mtls: bool = False  # private TLS ports require a client certificate from tls_ca_file
    internal_secret: str = ""  # shared secret of private calls (metadata gim-internal-secret)
    private_network_trusted: bool = False  # a non-loopback int_listen may run without a credential
    drain_seconds: float = 0.0  # a stopping node reports NOT_SERVING and still serves this long

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            problem = _problem(field, value)
            if problem:
                raise ConfigError(f"{field.name}={_shown(value, field.name)!r}: {problem}")
        problem = _security_problem(self)
        if problem:
            raise ConfigError(problem)


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
    # sign-in codes (internal/business/verifier.py) and their attempt limits (docs/security.md)
    verifier: str = "dev"  # dev (dev_code, '' refuses all) | http (the operator's SMS service) | none
    verifier_url: str = ""  # http: POST {"phone_number", "code"} here; 200 {"valid": true|false}
    verifier_timeout: float = 5.0
    dev_code_anywhere: bool = False  # allow dev_code although ext_listen is not a loopback address
    sign_in_phone_limit: str = "5/15m"  # wrong codes per phone number, then locked until the window ends
    sign_in_address_limit: str = "20/15m"  # wrong codes per client address, likewise
    limit_exempt: str = "127.0.0.0/8,::1"  # client addresses no per-address limit applies to
    metrics_listen: str = "127.0.0.1:9103"  # Prometheus /metrics over HTTP ('' = off)
    reflection: bool = True  # gRPC server reflection on ext_listen (grpcurl list / describe)

    def __post_init__(self) -> None:
        super().__post_init__()
        problem = _sign_in_problem(self)
        if problem:
            raise ConfigError(problem)


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
    # limits (docs/security.md "Limits"): COUNT/WINDOW per user unless said, '' = none
    send_limit: str = "300/10s"  # LogicExt.SendMessage
    room_push_limit: str = "100/10s"  # LogicExt.PushRoom
    new_room_limit: str = "20/1h"  # rooms a user's pushes bring into being (each keeps a seq row)
    create_group_limit: str = "20/1h"
    add_friend_limit: str = "50/1h"
    register_device_limit: str = "100/1h"  # per client address
    room_keep_bytes: int = 1 << 20  # kept (replayable) bytes per room; the oldest go first
    room_replay_bytes: int = 256 << 10  # bytes one subscribe replays at most (oldest first)
    limit_exempt: str = "127.0.0.0/8,::1"  # client addresses no per-address limit applies to
    metrics_listen: str = "127.0.0.1:9102"  # Prometheus /metrics over HTTP ('' = off)
    reflection: bool = True  # gRPC server reflection on ext_listen (grpcurl list / describe)
    reuse_port: bool = False  # SO_REUSEPORT on the public listeners (ext, http, http_int): workers share them
    # the HTTP/JSON API and the browser chat (internal/web, docs/http.md); '' = off (gim run turns them on)
    http_listen: str = ""  # public: LogicExt + UserExt as JSON, the chat page at /
    http_int_listen: str = ""  # private: the LogicInt calls of business backends
    http_cors_origins: str = ""  # origins allowed to call http_listen from a browser page ('*' = any)
    business_ext_addr: str = "127.0.0.1:50301"  # UserExt, where http_listen forwards /v1/user/* calls
    web_ws_url: str = "ws://127.0.0.1:8081/ws"  # where the chat page connects (comma-separated: tried in turn)

    def __post_init__(self) -> None:
        super().__post_init__()
        problem = _http_problem(self)
        if problem:
            raise ConfigError(problem)


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
    max_pending_per_address: int = 256  # connections not signed in yet from one client address (0: no cap)
    limit_exempt: str = "127.0.0.0/8,::1"  # client addresses no per-address limit applies to
    metrics_listen: str = "127.0.0.1:9101"  # Prometheus /metrics over HTTP ('' = off)
    reuse_port: bool = False  # SO_REUSEPORT on tcp_listen and ws_listen: workers share them
    sync_read_ahead: int = 9  # sync pages asked of logic beyond the one a client asks for (0: none)
    sync_read_ahead_bytes: int = 64 << 20  # pages held for syncing clients, all together, at most

    @property
    def advertised_addr(self) -> str:
        return self.conn_addr or self.int_listen


SERVICES: dict[str, type[BaseConfig]] = {"connect": ConnectConfig, "logic": LogicConfig, "business": BusinessConfig}

C = TypeVar("C", bound=BaseConfig)

# --- checks: each says what is wrong with a value of the right type, or None ----------

Check = Callable[[Any], "str | None"]


def _count(low: int, high: int | None = None) -> Check:
    text = f"an integer from {low} to {high}" if high is not None else f"an integer >= {low}"
    return lambda value: None if low <= value and (high is None or value <= high) else f"expected {text}"


def _seconds(*, zero_ok: bool = False) -> Check:
    text = "a finite number of seconds " + (">= 0" if zero_ok else "> 0")
    return lambda value: None if math.isfinite(value) and (value > 0 or zero_ok and value == 0) else f"expected {text}"


def _one_of(*choices: str) -> Check:
    return lambda value: None if value in choices else f"expected one of {', '.join(choices)}"


def _url(*schemes: str) -> Check:
    def check(value: str) -> str | None:
        scheme, sep, _ = value.partition("://")
        return None if sep and scheme in schemes else f"expected a URL starting {', '.join(s + '://' for s in schemes)}"

    return check


def _database_url(value: str) -> str | None:
    scheme, sep, _ = value.partition("://")
    if not sep or scheme not in DATABASE_SCHEMES:
        what = f"unsupported database {scheme!r}" if sep else "expected a database URL"
        return f"{what}: gim supports {', '.join(s + '://' for s in DATABASE_SCHEMES)}"
    from sqlalchemy.engine import make_url  # only the services with a database pay for it

    try:
        make_url(value)
    except Exception as exc:  # sqlalchemy raises ArgumentError or ValueError
        return f"not a database URL: {exc}"
    return None


_ADDRESS = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]*):(?P<port>[0-9]{1,5})")


def _host_port(addr: str) -> tuple[str, int] | None:
    """'host:port' or '[v6]:port' -> (host without brackets, port); None if it is not that."""
    match = _ADDRESS.fullmatch(addr)
    if not match or int(match["port"]) > 65535:
        return None
    return match["host"].strip("[]"), int(match["port"])


def _listen(value: str) -> str | None:
    """An address to bind: port 0 picks a free one, an empty host means every interface."""
    return None if _host_port(value) else "expected host:port (port 0..65535)"


def _peers(value: str, *, many: bool = True) -> str | None:
    """An address to call: `host:port`, or (`many`) a comma-separated list of `IP:port`
    (see pkg/rpc.target)."""
    peers = [p.strip() for p in value.split(",")] if many else [value]
    for peer in peers:
        host, port = _host_port(peer) or ("", 0)
        if not host or not port or len(peers) > 1 and not _is_ip(host):
            which = f"{peer!r}: " if len(peers) > 1 else ""
            alternative = ", or a comma-separated list of IP:port" if many else ""
            return f"{which}expected host:port (port 1..65535){alternative}"
    return None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _rate(value: str) -> str | None:
    from gim.pkg.ratelimit import rate_problem

    return rate_problem(value)


def _networks(value: str) -> str | None:
    from gim.pkg.ratelimit import networks_problem

    return networks_problem(value)


LOOPBACK_HOSTS = ("localhost",)


def is_loopback(addr: str) -> bool:
    """Whether a listen address (host:port) binds only the loopback interface."""
    host, _ = _host_port(addr) or ("", 0)
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a wildcard ('', 0.0.0.0 is an IP: not loopback) or a name


def _sign_in_problem(cfg: BusinessConfig) -> str | None:
    """What the verifier keys ask for together that cannot be, or None."""
    if cfg.verifier == "http" and not cfg.verifier_url:
        return "verifier=http: needs verifier_url (the operator's code-checking service)"
    if cfg.verifier == "dev" and cfg.dev_code and not cfg.dev_code_anywhere and not is_loopback(cfg.ext_listen):
        return (
            f"dev_code is set but ext_listen={cfg.ext_listen} is not a loopback address: the development code "
            "would let anyone sign in as anyone; remove dev_code (use verifier: http), "
            "or set dev_code_anywhere: true on a network you trust"
        )
    return None


def _anything(value: Any) -> None:
    return None


def _pem_file(value: str) -> str | None:
    if value and not (os.path.isfile(value) and os.access(value, os.R_OK)):
        return "expected a readable PEM file"
    return None


def _tls(value: str) -> str | None:
    from gim.pkg.security import tls_listeners

    try:
        tls_listeners(value)
    except ValueError as exc:
        return str(exc)
    return None


def _secret(value: str) -> str | None:
    return (
        "expected at least 16 characters (e.g. openssl rand -hex 24), or '' for none" if 0 < len(value) < 16 else None
    )


def _origins(value: str) -> str | None:
    """'' (same origin only), '*' or a comma-separated list of scheme://host[:port]."""
    for origin in (o.strip() for o in value.split(",") if o.strip()):
        if origin != "*" and not re.fullmatch(r"https?://[^/\s]+/?", origin):
            return f"expected '*' or a comma-separated list of origins like http://localhost:3000 (not {origin!r})"
    return None


def _url_list(value: str, *schemes: str) -> str | None:
    urls = [u.strip() for u in value.split(",") if u.strip()]
    if not urls:
        return "expected at least one URL"
    return next((problem for url in urls if (problem := _url(*schemes)(url))), None)


def _http_problem(cfg: LogicConfig) -> str | None:
    """A private HTTP listener reachable from other hosts without any credential: as for
    int_listen (pkg/security.exposure_problem)."""
    if not cfg.http_int_listen or is_loopback(cfg.http_int_listen) or cfg.private_network_trusted:
        return None
    if cfg.internal_secret or (cfg.internal_mtls and "int" in cfg.tls):
        return None
    return (
        f"http_int_listen={cfg.http_int_listen} is reachable from other hosts and private calls need no credential: "
        "set internal_secret (GIM_INTERNAL_SECRET) or internal_mtls, or private_network_trusted: true"
    )


def _security_problem(cfg: BaseConfig) -> str | None:
    """What the TLS and credential keys ask for together that cannot work, or None."""
    from gim.pkg.security import tls_listeners

    if bool(cfg.tls_cert_file) != bool(cfg.tls_key_file):
        return "tls_cert_file and tls_key_file: set both or neither"
    if tls_listeners(cfg.tls) and not cfg.tls_cert_file:
        return f"tls={cfg.tls}: needs tls_cert_file and tls_key_file"
    if cfg.internal_mtls and ("int" not in tls_listeners(cfg.tls) or not cfg.tls_ca_file):
        return "internal_mtls: needs int in tls and tls_ca_file (the CA of the nodes' client certificates)"
    return None


SECRET_KEYS = frozenset({"internal_secret"})  # never shown in an error message

# The one table of what each key accepts (beyond its type in the dataclass).
CHECKS: dict[str, Check] = {
    "log_level": _one_of("debug", "info", "warning", "error"),
    "log_format": _one_of("console", "json"),
    "redis_url": _url("redis", "rediss", "unix"),
    "redis_prefix": _anything,
    "grpc_status": _one_of(*STATUS_MODES),
    "database_url": _database_url,
    "message_shards": _count(1, 1000),
    "cache_ttl": _count(1),
    "int_listen": _listen,
    "ext_listen": _listen,
    "tcp_listen": _listen,
    "ws_listen": _listen,
    "logic_int_addr": _peers,
    "business_int_addr": _peers,
    "conn_addr": lambda value: _peers(value, many=False) if value else None,  # '' = int_listen
    "token_ttl": _count(1),
    "dev_code": _anything,
    "search_limit": _count(1, 1000),
    "sync_page_size": _count(1, 1000),
    "sync_read_ahead": _count(0, 19),
    "sync_read_ahead_bytes": _count(0),
    "max_content_bytes": _count(1, 60_000),  # a pushed message, with its envelope, fits one frame
    "max_group_members": _count(1),
    "auth_cache_seconds": _seconds(zero_ok=True),
    "rpc_timeout": _seconds(),
    "room_keep_seconds": _count(1),
    "max_body_bytes": _count(1, FRAME_MAX),
    "sign_in_timeout": _seconds(),
    "idle_timeout": _seconds(),
    "write_buffer_limit": _count(1),
    "close_timeout": _seconds(),
    "stats_interval": _seconds(),
    "tls": _tls,
    "tls_cert_file": _pem_file,
    "tls_key_file": _pem_file,
    "tls_ca_file": _pem_file,
    "tls_server_name": _anything,
    "internal_mtls": _anything,
    "internal_secret": _secret,
    "private_network_trusted": _anything,
    "verifier": _one_of("dev", "http", "none"),
    "verifier_url": lambda value: _url("http", "https")(value) if value else None,
    "verifier_timeout": _seconds(),
    "dev_code_anywhere": _anything,
    "sign_in_phone_limit": _rate,
    "sign_in_address_limit": _rate,
    "limit_exempt": _networks,
    "send_limit": _rate,
    "room_push_limit": _rate,
    "new_room_limit": _rate,
    "create_group_limit": _rate,
    "add_friend_limit": _rate,
    "register_device_limit": _rate,
    "room_keep_bytes": _count(65535),
    "room_replay_bytes": _count(65535),
    "max_pending_per_address": _count(0),
    "metrics_listen": lambda value: _listen(value) if value else None,  # '' = no metrics listener
    "reflection": _anything,
    "reuse_port": _anything,
    "http_listen": lambda value: _listen(value) if value else None,  # '' = off
    "http_int_listen": lambda value: _listen(value) if value else None,
    "http_cors_origins": lambda value: _origins(value),
    "business_ext_addr": _peers,
    "web_ws_url": lambda value: _url_list(value, "ws", "wss"),
    "drain_seconds": lambda value: None if 0 <= value <= 5 else "expected seconds from 0 to 5",
}

_TYPES: dict[str, type] = {"str": str, "int": int, "float": float, "bool": bool}
_BOOLS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}
_TYPE_TEXT = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}


def _kind(field: dataclasses.Field[Any]) -> type:
    return field.type if isinstance(field.type, type) else _TYPES[str(field.type)]


def _problem(field: dataclasses.Field[Any], value: Any) -> str | None:
    """What is wrong with `value` for `field`, or None."""
    kind = _kind(field)
    if isinstance(value, bool) or kind is bool:
        fits = isinstance(value, bool) and kind is bool
    else:
        fits = isinstance(value, (int, float) if kind is float else kind)
    return CHECKS.get(field.name, _anything)(value) if fits else f"expected {_TYPE_TEXT[kind]}"


def _coerce(value: Any, kind: type) -> Any:
    """`value` (a string from the environment, or what YAML made of it) as `kind`;
    unchanged when it does not convert, for `_problem` to name."""
    if kind is bool and not isinstance(value, bool):
        return _BOOLS.get(str(value).lower(), value)
    if kind is int and isinstance(value, str) and re.fullmatch(r"\s*[-+]?[0-9]+\s*", value):
        return int(value)
    if kind is float and isinstance(value, (str, int)) and not isinstance(value, bool):
        try:
            return float(value)
        except ValueError:
            return value
    if kind is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return value


def _valid(field: dataclasses.Field[Any], raw: Any, origin: str) -> Any:
    """`raw` as the field's type, or a ConfigError naming `origin` (a variable or a key)."""
    value = _coerce(raw, _kind(field))
    problem = _problem(field, value)
    if problem:
        raise ConfigError(f"{origin}={_shown(raw, field.name)}: {problem}")
    return value


def _shown(value: Any, key: str = "") -> Any:
    """`value` fit for an error message: a URL's password replaced by ***, a secret by ***."""
    if key in SECRET_KEYS:
        return "***"
    return re.sub(r"^([\w+.-]+://[^:/@]*:).*@", r"\1***@", value) if isinstance(value, str) else value


# --- loading ---------------------------------------------------------------------------


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
    fields = {f.name: f for f in dataclasses.fields(cls)}
    _check_variables(environ, service, cls)
    chosen: dict[str, tuple[Any, str]] = {}  # key -> (value, where it came from)
    if path.exists():
        chosen.update((name, (value, f"{path}: {name}")) for name, value in _read_yaml(path, fields).items())
    for name in fields:
        for var in (f"GIM_{service.upper()}_{name.upper()}", f"GIM_{name.upper()}"):
            if var in environ:
                chosen[name] = (environ[var], var)
                break
    for name, value in overrides.items():
        if name not in fields:
            raise ConfigError(f"unknown key {name!r}")
        chosen[name] = (value, name)
    return cls(**{name: _valid(fields[name], value, where) for name, (value, where) in chosen.items()})


def _read_yaml(path: Path, fields: Mapping[str, dataclasses.Field[Any]]) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        one_line = " ".join(line.strip() for line in str(exc).splitlines())
        raise ConfigError(f"{path}: not valid YAML: {one_line}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values")
    for key in data:
        if key not in fields:
            hint = _did_you_mean(str(key), fields) or f" (known keys: {', '.join(sorted(fields))})"
            raise ConfigError(f"{path}: unknown key {key!r}{hint}")
    return data


def _check_variables(environ: Mapping[str, str], service: str, cls: type[BaseConfig]) -> None:
    """Every `GIM_*` variable is a setting of some service (or one of OTHER_VARIABLES):
    a misspelled one is an error, not silently ignored."""
    services = {**SERVICES, service: cls}
    keys = {s: {f.name for f in dataclasses.fields(c)} for s, c in services.items()}
    known = {f"GIM_{key.upper()}" for names in keys.values() for key in names} | OTHER_VARIABLES
    known |= {f"GIM_{s.upper()}_{key.upper()}" for s, names in keys.items() for key in names}
    unknown = sorted(var for var in environ if var.startswith("GIM_") and var not in known)
    if unknown:
        problems = [_not_a_setting(var, keys, known) for var in unknown]
        raise ConfigError("; ".join(problems))


def _not_a_setting(var: str, keys: Mapping[str, set[str]], known: set[str]) -> str:
    for service, _names in keys.items():
        key = var.removeprefix(f"GIM_{service.upper()}_").lower()
        if var.startswith(f"GIM_{service.upper()}_") and any(key in other for other in keys.values()):
            return f"{var} is not a gim setting: {service} has no key {key}"
    return f"{var} is not a gim setting{_did_you_mean(var, known)}"


def _did_you_mean(name: str, known: Any) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def split_host_port(addr: str, key: str = "address") -> tuple[str, int]:
    """'127.0.0.1:8080' -> ('127.0.0.1', 8080); '[::1]:80' works too; an empty host is
    every interface."""
    parsed = _host_port(addr)
    if parsed is None:
        raise ConfigError(f"{key}: expected host:port, got {addr!r}")
    host, port = parsed
    return host or "0.0.0.0", port
