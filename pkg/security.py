"""Who may talk to a node, and how: TLS on its listeners and the credential that private
calls carry (see docs/security.md).

- `Security.from_config(cfg)`: what a node's configuration asks for. `tls` names the
  listeners that speak TLS (`tcp`, `ws`, `ext` are public, `int` is private); one
  certificate and key (`tls_cert_file`, `tls_key_file`) serve all of them. With `int`,
  this node's channels to other nodes' private ports speak TLS too, trusting
  `tls_ca_file` (the system's roots when empty); `internal_mtls` makes the private port
  require a client certificate signed by that CA and makes the channels present this
  node's own certificate.
- `internal_secret`: every call to a private port carries it as the metadata
  `gim-internal-secret` (`SecretMetadata`, on the channel), and a private server refuses a
  call without it or with another value (`SecretCheck`): UNAUTHENTICATED, trailer
  `gim-code: 10000`, logged summarised.
- `Outbound`: how this process calls other nodes (credentials, secret); `rpc.channel`
  uses it.
"""

from __future__ import annotations

import dataclasses
import hmac
import ipaddress
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
from grpc import aio

from gim.pkg import handlers, log
from gim.pkg.errors import GIM_CODE_KEY, Code

_log = log.get("security")

SECRET_KEY = "gim-internal-secret"  # the metadata key of the shared secret
PUBLIC = ("tcp", "ws", "ext")
LISTENERS = (*PUBLIC, "int")
ALIASES = {"public": PUBLIC, "all": LISTENERS}
REFUSED = "internal call refused: missing or wrong gim-internal-secret"
OPEN_PREFIX = "/grpc.health.v1.Health/"  # calls a private port answers without the secret


def tls_listeners(value: str) -> frozenset[str]:
    """`tls` setting -> listener names ('public' = tcp,ws,ext; 'all' = those and int);
    ValueError naming an unknown one."""
    names: set[str] = set()
    for part in (p.strip() for p in value.split(",")):
        if not part:
            continue
        if part not in LISTENERS and part not in ALIASES:
            raise ValueError(
                f"unknown listener {part!r}: expected a comma-separated list of tcp, ws, ext, int, public, all"
            )
        names.update(ALIASES.get(part, (part,)))
    return frozenset(names)


def is_loopback(host: str) -> bool:
    """Whether a listen host is reachable only from this machine ('' = every interface)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name other than localhost (or every interface): may be any address


@dataclasses.dataclass(frozen=True)
class Outbound:
    """How calls to other nodes' private ports go out: TLS `credentials` (None: plaintext),
    the name expected in the peer's certificate (`server_name`, '' = the address's host),
    and the shared `secret` each call carries ('' = none)."""

    credentials: grpc.ChannelCredentials | None = None
    server_name: str = ""
    secret: str = ""

    def options(self) -> list[tuple[str, Any]]:
        return [("grpc.ssl_target_name_override", self.server_name)] if self.credentials and self.server_name else []

    def interceptors(self) -> list[aio.ClientInterceptor]:
        return [SecretMetadata(self.secret)] if self.secret else []


PLAINTEXT = Outbound()


@dataclasses.dataclass(frozen=True)
class Security:
    """A node's TLS and internal-credential settings, files read once."""

    tls: frozenset[str] = frozenset()
    cert_file: str = ""
    key_file: str = ""
    ca_file: str = ""
    server_name: str = ""
    mtls: bool = False
    secret: str = ""
    _pem: dict[str, bytes] = dataclasses.field(default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def from_config(cls, cfg: Any) -> Security:
        security = cls(
            tls=tls_listeners(cfg.tls),
            cert_file=cfg.tls_cert_file,
            key_file=cfg.tls_key_file,
            ca_file=cfg.tls_ca_file,
            server_name=cfg.tls_server_name,
            mtls=cfg.internal_mtls,
            secret=cfg.internal_secret,
        )
        for name in ("cert_file", "key_file", "ca_file"):
            if path := getattr(security, name):
                security._pem[name] = Path(path).read_bytes()
        return security

    def on(self, listener: str) -> bool:
        return listener in self.tls

    @property
    def has_internal_credential(self) -> bool:
        """Whether a caller of the private port must prove something (secret or client certificate)."""
        return bool(self.secret) or (self.mtls and self.on("int"))

    # -- servers -------------------------------------------------------------------------

    def server_credentials(self, listener: str) -> grpc.ServerCredentials | None:
        """TLS credentials for gRPC listener `listener` ('int' or 'ext'); None: plaintext."""
        if not self.on(listener):
            return None
        mtls = listener == "int" and self.mtls
        return grpc.ssl_server_credentials(
            [(self._pem["key_file"], self._pem["cert_file"])],
            root_certificates=self._pem.get("ca_file") if mtls else None,
            require_client_auth=mtls,
        )

    def server_interceptors(self, listener: str) -> list[aio.ServerInterceptor]:
        return [SecretCheck(self.secret)] if listener == "int" and self.secret else []

    def ssl_context(self, listener: str) -> ssl.SSLContext | None:
        """The server-side TLS context of long-connection listener `listener` ('tcp' or 'ws')."""
        if not self.on(listener):
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert_file, self.key_file)
        return context

    # -- channels --------------------------------------------------------------------------

    @property
    def outbound(self) -> Outbound:
        """How this node calls other nodes' private ports."""
        credentials = None
        if self.on("int"):
            own = (self._pem["key_file"], self._pem["cert_file"]) if self.mtls else (None, None)
            credentials = grpc.ssl_channel_credentials(self._pem.get("ca_file"), *own)
        return Outbound(credentials, self.server_name, self.secret)


def client_credentials(ca_file: str | None = None) -> grpc.ChannelCredentials:
    """TLS credentials for an app's channel to a public gRPC port, trusting `ca_file`
    (the system's roots when None)."""
    return grpc.ssl_channel_credentials(Path(ca_file).read_bytes() if ca_file else None)


def client_ssl_context(ca_file: str | None = None) -> ssl.SSLContext:
    """An app's TLS context for the TCP or WebSocket listener, trusting `ca_file` (the
    system's roots when None); host names are checked."""
    return ssl.create_default_context(cafile=ca_file)


class SecretMetadata(aio.UnaryUnaryClientInterceptor):
    """Adds the shared secret to every call of a channel."""

    def __init__(self, secret: str) -> None:
        self._pair = (SECRET_KEY, secret)

    async def intercept_unary_unary(
        self, continuation: Callable[..., Awaitable[Any]], details: aio.ClientCallDetails, request: Any
    ) -> Any:
        metadata = aio.Metadata(*(details.metadata or ()), self._pair)
        call = aio.ClientCallDetails(
            details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
        )
        return await continuation(call, request)


class SecretCheck(aio.ServerInterceptor):
    """Refuses a private call that lacks the shared secret or carries another value."""

    def __init__(self, secret: str) -> None:
        self._secret = secret.encode()
        self.refusals = log.Summary(_log)

    async def intercept_service(
        self, continuation: handlers.Continuation, details: grpc.HandlerCallDetails
    ) -> handlers.Handler | None:
        if details.method.startswith(OPEN_PREFIX):  # health status: what probes without the secret may ask
            return await continuation(details)
        given = next((value for key, value in details.invocation_metadata or () if key == SECRET_KEY), None)
        if isinstance(given, str) and hmac.compare_digest(given.encode(), self._secret):
            return await continuation(details)
        reason = "no gim-internal-secret" if given is None else "wrong gim-internal-secret"
        method = details.method

        async def refuse(request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
            self.refusals.warning("internal_call_refused", kind=reason, method=method, peer=context.peer())
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                REFUSED,
                trailing_metadata=((GIM_CODE_KEY, str(int(Code.UNAUTHORIZED))),),
            )

        return grpc.unary_unary_rpc_method_handler(refuse)


def exposure_problem(cfg: Any) -> str | None:
    """Why a node must not start: its private port listens beyond this machine and nobody
    has to prove anything to call it (see docs/security.md); None if it may start."""
    addr = getattr(cfg, "int_listen", "")
    host = addr.rpartition(":")[0].strip("[]")
    if not addr or is_loopback(host) or cfg.private_network_trusted:
        return None
    if Security(tls=tls_listeners(cfg.tls), mtls=cfg.internal_mtls, secret=cfg.internal_secret).has_internal_credential:
        return None
    return (
        f"int_listen={addr} is reachable from other hosts and private calls need no credential: "
        "set internal_secret (GIM_INTERNAL_SECRET, the same on every node) or internal_mtls, "
        "or private_network_trusted: true if only trusted hosts can reach this port"
    )
