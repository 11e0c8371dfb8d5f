"""The logic node's HTTP listeners (docs/http.md).

- `http_listen` (public, '' = off): the HTTP/JSON API of LogicExt (answered by this node's
  `LogicExtServicer`, in process) and UserExt (forwarded over gRPC to `business_ext_addr`),
  the browser chat at `/` (`static/`, built from web/ by `make web`), `/config.json`
  (where the page's WebSocket connects: `web_ws_url`) and `/openapi.json`. CORS for the
  origins in `http_cors_origins`. TLS when `ext` is in `tls`.
- `http_int_listen` (private, '' = off): the LogicInt methods business backends call,
  answered by this node's `LogicIntServicer`; each call carries `gim-internal-secret`
  when `internal_secret` is set; TLS (and client certificates with `internal_mtls`) when
  `int` is in `tls`.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import grpc
from aiohttp import web

from gim.internal.web import openapi
from gim.internal.web.api import Handler, JsonApi, json_response
from gim.internal.web.forward import Forwarder
from gim.internal.web.routes import IDENTITY_HEADERS, PRIVATE, PUBLIC, SERVICES, routes
from gim.pkg import config, log, rpc
from gim.pkg.config import LogicConfig
from gim.pkg.security import Outbound, Security, client_credentials

STATIC_DIR = Path(__file__).resolve().parent / "static"
MAX_BODY = 1 << 20  # bytes of a request body (a message's content is at most 60,000 bytes, base64: 80,000)
_log = log.get("http")


def cors_origins(value: str) -> frozenset[str]:
    return frozenset(origin.strip().rstrip("/") for origin in value.split(",") if origin.strip())


def cors_middleware(origins: frozenset[str]) -> Any:
    """Answers preflights and adds Access-Control-* to answers for `origins` ('*' = any)."""
    allow_headers = ", ".join(["content-type", *IDENTITY_HEADERS, *(h.replace("_", "-") for h in IDENTITY_HEADERS)])

    @web.middleware
    async def cors(request: web.Request, handler: Any) -> web.StreamResponse:
        origin = request.headers.get("Origin", "")
        allowed = bool(origin) and ("*" in origins or origin.rstrip("/") in origins)
        if request.method == "OPTIONS" and allowed and "Access-Control-Request-Method" in request.headers:
            response: web.StreamResponse = web.Response(status=204)
            response.headers["Access-Control-Allow-Methods"] = "POST, GET, OPTIONS"
            response.headers["Access-Control-Allow-Headers"] = allow_headers
            response.headers["Access-Control-Max-Age"] = "600"
        else:
            response = await handler(request)
        if allowed:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"
        return response

    return cors


def add_page_routes(app: web.Application, ws_urls: list[str]) -> None:
    """The browser chat: `/`, `/static/<file>` (revalidated on every load, so that a new
    build is picked up at once), `/config.json`."""
    no_cache = {"Cache-Control": "no-cache"}

    def serve_file(path: Path) -> Any:
        async def serve(request: web.Request) -> web.FileResponse:
            return web.FileResponse(path, headers=no_cache)

        return serve

    async def page_config(request: web.Request) -> web.Response:
        return json_response(200, {"wsUrls": ws_urls})

    app.router.add_get("/", serve_file(STATIC_DIR / "index.html"))
    for path in sorted(STATIC_DIR.iterdir()):
        if path.is_file():
            app.router.add_get(f"/static/{path.name}", serve_file(path))
    app.router.add_get("/config.json", page_config)


def add_openapi_route(app: web.Application) -> None:
    document = openapi.dumps(openapi.build())

    async def serve(request: web.Request) -> web.Response:
        return web.Response(text=document, content_type="application/json")

    app.router.add_get("/openapi.json", serve)


class Listener:
    """One aiohttp application on one address."""

    def __init__(
        self, name: str, app: web.Application, addr: str, ssl_context: ssl.SSLContext | None, reuse_port: bool = False
    ) -> None:
        self.name = name
        self.app = app
        self.addr = addr
        self.ssl_context = ssl_context
        self.reuse_port = reuse_port  # SO_REUSEPORT: several processes (workers) share the port
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        host, port = config.split_host_port(self.addr, f"{self.name}_listen")
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, ssl_context=self.ssl_context, reuse_port=self.reuse_port or None)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def private_ssl_context(security: Security) -> ssl.SSLContext | None:
    context = security.ssl_context("int")
    if context is not None and security.mtls:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(security.ca_file)
    return context


class WebServer:
    """The logic node's HTTP listeners (see the module docstring); `port` / `int_port` are
    None while a listener is off."""

    def __init__(
        self,
        cfg: LogicConfig,
        logic_ext: object,
        logic_int: object,
        user_ext: Forwarder | None,
        security: Security | None = None,
        channel: Any = None,
    ) -> None:
        self.config = cfg
        self.logic_ext = logic_ext  # the servicers that answer, as for gRPC
        self.logic_int = logic_int
        self._channel = channel  # the forwarder's, closed by stop()
        security = security if security is not None else Security.from_config(cfg)
        self.listeners: dict[str, Listener] = {}
        if cfg.http_listen:
            app = web.Application(
                client_max_size=MAX_BODY, middlewares=[cors_middleware(cors_origins(cfg.http_cors_origins))]
            )
            handlers: list[tuple[Any, Handler]] = []
            for route in routes(PUBLIC):
                if route.service == "UserExt":
                    if user_ext is not None:
                        handlers.append((route, user_ext.handler(route.method)))
                else:
                    handlers.append((route, getattr(logic_ext, route.method)))
            JsonApi(handlers).add_to(app)
            add_openapi_route(app)
            add_page_routes(app, [url.strip() for url in cfg.web_ws_url.split(",") if url.strip()])
            self.listeners["http"] = Listener(
                "http", app, cfg.http_listen, security.ssl_context("ext"), reuse_port=cfg.reuse_port
            )
        if cfg.http_int_listen:
            app = web.Application(client_max_size=MAX_BODY)
            JsonApi([(r, getattr(logic_int, r.method)) for r in routes(PRIVATE)], secret=cfg.internal_secret).add_to(
                app
            )
            add_openapi_route(app)
            self.listeners["http_int"] = Listener(
                "http_int", app, cfg.http_int_listen, private_ssl_context(security), reuse_port=cfg.reuse_port
            )

    @property
    def port(self) -> int | None:
        listener = self.listeners.get("http")
        return listener.port if listener is not None else None

    @property
    def int_port(self) -> int | None:
        listener = self.listeners.get("http_int")
        return listener.port if listener is not None else None

    async def start(self) -> None:
        for listener in self.listeners.values():
            await listener.start()
        if self.listeners:
            _log.info("http_started", **{f"{name}_port": lis.port for name, lis in self.listeners.items()})

    async def stop(self) -> None:
        for listener in self.listeners.values():
            await listener.stop()
        if self._channel is not None:
            await self._channel.close()

    @classmethod
    def for_logic(cls, cfg: LogicConfig, logic_ext: object, logic_int: object) -> WebServer:
        """A logic node's listeners, UserExt forwarded to `business_ext_addr`."""
        forward = user_ext_forwarder(cfg)
        return cls(cfg, logic_ext, logic_int, forward[0] if forward else None, channel=forward[1] if forward else None)


def user_ext_forwarder(cfg: LogicConfig) -> tuple[Forwarder, Any] | None:
    """The UserExt forwarder of a logic node and its channel (to close), or None when the
    public HTTP listener is off. TLS toward business's public port when `ext` is in `tls`."""
    if not cfg.http_listen:
        return None
    security = Security.from_config(cfg)
    credentials: grpc.ChannelCredentials | None = None
    if security.on("ext"):
        credentials = client_credentials(cfg.tls_ca_file or None)
    channel = rpc.channel(cfg.business_ext_addr, outbound=Outbound(credentials, cfg.tls_server_name))
    user_ext = next(service for service, _, _ in SERVICES if service.name == "UserExt")
    return Forwarder(channel, user_ext, cfg.rpc_timeout, "business"), channel
