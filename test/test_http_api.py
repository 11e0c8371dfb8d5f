"""The HTTP/JSON API (internal/web) against the session cluster: the same servicers as gRPC
answer, identities from headers, gim-coded JSON errors, the private listener's secret,
CORS, the page and its configuration, /openapi.json, TLS and client certificates."""

from __future__ import annotations

import base64
import ssl
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme

from gim.internal.web import openapi
from gim.internal.web.server import WebServer
from gim.pkg.config import ConfigError, LogicConfig
from gim.pkg.pb import connect_ext_pb2 as cx
from gimtest.cluster import DEV_CODE, Cluster

SECRET = "s3cret-s3cret-s3cret"
ORIGIN = "http://app.example.test:3000"


class Http:
    """A started WebServer in front of the cluster's logic servicers, and a client session."""

    def __init__(self, web: WebServer, session: aiohttp.ClientSession) -> None:
        self.web = web
        self.session = session
        self.base = f"http://127.0.0.1:{web.port}"
        self.private = f"http://127.0.0.1:{web.int_port}"

    async def post(self, path: str, body: Any = None, base: str | None = None, **headers: Any) -> tuple[int, Any]:
        data = body if isinstance(body, str) else None
        async with self.session.post(
            (base or self.base) + path,
            json=None if data is not None else (body if body is not None else {}),
            data=data,
            headers={k: str(v) for k, v in headers.items()},
        ) as response:
            assert response.content_type == "application/json", await response.text()
            return response.status, await response.json()


@pytest.fixture
async def http(cluster: Cluster) -> AsyncIterator[Http]:
    cfg = LogicConfig(
        http_listen="127.0.0.1:0",
        http_int_listen="127.0.0.1:0",
        http_cors_origins=ORIGIN,
        internal_secret=SECRET,
        business_ext_addr=f"127.0.0.1:{cluster.business.ext_port}",
        web_ws_url=cluster.ws_url,
    )
    web = WebServer.for_logic(cfg, cluster.logic.web.logic_ext, cluster.logic.web.logic_int)
    await web.start()
    async with aiohttp.ClientSession() as session:
        yield Http(web, session)
    await web.stop()


def text_content(text: str) -> str:
    return base64.b64encode(cx.Text(text=text).SerializeToString()).decode()


def ids(creds: dict[str, Any]) -> dict[str, Any]:
    return {"user_id": creds["userId"], "device_id": creds["deviceId"], "token": creds["token"]}


async def sign_in(http: Http, phone: str) -> dict[str, Any]:
    status, device = await http.post("/v1/logic/RegisterDevice", {"type": 5, "brand": "test"})
    assert status == 200 and int(device["deviceId"]) > 0, device
    status, signed = await http.post(
        "/v1/user/SignIn", {"phoneNumber": phone, "code": DEV_CODE, "deviceId": device["deviceId"]}
    )
    assert status == 200, signed
    assert set(signed) == {"isNew", "userId", "token"} and signed["isNew"] is True
    return {"userId": signed["userId"], "deviceId": device["deviceId"], "token": signed["token"]}


def phone() -> str:
    return "1" + str(uuid.uuid4().int)[:10]


async def test_sign_in_send_and_the_receiver_gets_it(http: Http, cluster: Cluster) -> None:
    alice = await sign_in(http, phone())
    [bob] = await cluster.new_user(nickname="bob")
    conn = await cluster.online(bob)
    try:
        body = {"receiverType": "RT_USER", "receiverId": str(bob.user_id), "messageType": "MT_TEXT",
                "messageContent": text_content("hi over http"), "isPersist": True}  # fmt: skip
        status, sent = await http.post("/v1/logic/SendMessage", body, **ids(alice), request_id=77)
        assert status == 200 and int(sent["seq"]) > 0, sent
        push = await conn.next_message(timeout=10)
        assert cx.Text.FromString(push.message_content).text == "hi over http"
        assert push.sender.sender_id == int(alice["userId"]) and push.sender.sender_type == cx.ST_USER
        # the same request_id again: the servicer's retry rule holds over HTTP too
        status, again = await http.post("/v1/logic/SendMessage", body, **ids(alice), request_id=77)
        assert (status, again) == (200, sent)
        # snake_case field names and numbers are accepted too; answers carry every field
        status, group = await http.post(
            "/v1/logic/CreateGroup", {"name": "web", "member_ids": [bob.user_id]}, **ids(alice)
        )
        assert status == 200, group
        status, groups = await http.post("/v1/logic/GetGroups", None, **ids(alice))
        assert status == 200 and [g["groupId"] for g in groups["groups"]] == [group["groupId"]]
        assert groups["groups"][0]["userMum"] == 2 and groups["groups"][0]["introduction"] == ""
        status, user = await http.post("/v1/user/GetUser", {"userId": bob.user_id}, **ids(alice))
        assert status == 200 and user["user"]["nickname"] == "bob"
    finally:
        await conn.close()


async def test_errors_are_json_with_the_gim_code(http: Http, cluster: Cluster) -> None:
    alice = await sign_in(http, phone())
    cases: list[tuple[str, Any, dict[str, Any], int, int, str]] = [
        ("/v1/logic/SendMessage", '{"receiverId": ', ids(alice), 400, 10001, "INVALID_ARGUMENT"),
        ("/v1/logic/SendMessage", {"nope": 1}, ids(alice), 400, 10001, "INVALID_ARGUMENT"),
        ("/v1/logic/SendMessage", {"receiverType": "RT_USER", "receiverId": "1"}, {}, 401, 10000, "UNAUTHENTICATED"),
        ("/v1/logic/GetGroups", None, {**ids(alice), "token": "forged"}, 401, 10000, "UNAUTHENTICATED"),
        ("/v1/logic/GetGroupMembers", {"groupId": "987654321"}, ids(alice), 404, 10013, "NOT_FOUND"),
        (
            "/v1/user/SignIn",
            {"phoneNumber": phone(), "code": "wrong", "deviceId": alice["deviceId"]},
            {},
            401,
            10010,
            "UNAUTHENTICATED",
        ),  # fmt: skip  (a refusal of business, forwarded)
        ("/v1/logic/NoSuchMethod", None, {}, 404, 10001, "NOT_FOUND"),
        ("/v1/logic-int/SendMessage", None, {}, 404, 10001, "NOT_FOUND"),  # private methods: not here
    ]
    for path, body, headers, http_status, code, status_name in cases:
        status, answer = await http.post(path, body, **headers)
        assert (status, answer["code"], answer["status"]) == (http_status, code, status_name), (path, answer)
        assert answer["message"], answer
    async with http.session.get(http.base + "/v1/logic/SendMessage") as response:
        assert response.status == 405 and (await response.json())["code"] == 10001


async def test_private_listener_needs_the_secret(http: Http, cluster: Cluster) -> None:
    [bob] = await cluster.new_user()
    conn = await cluster.online(bob)
    try:
        body = {"receiverType": "RT_USER", "receiverId": bob.user_id, "messageType": "MT_TEXT",
                "messageContent": text_content("from the backend"), "isPersist": True}  # fmt: skip
        for secret in (None, "wrong-wrong-wrong-wrong"):
            headers = {"gim-internal-secret": secret} if secret else {}
            status, answer = await http.post("/v1/logic-int/SendMessage", body, base=http.private, **headers)
            assert (status, answer["code"]) == (401, 10000), answer
        status, answer = await http.post("/v1/logic-int/SendMessage", body, base=http.private,
                                         **{"gim-internal-secret": SECRET})  # fmt: skip
        assert status == 200, answer
        push = await conn.next_message(timeout=10)
        assert push.sender.sender_type == cx.ST_BUSINESS
        assert cx.Text.FromString(push.message_content).text == "from the backend"
        status, device = await http.post("/v1/logic-int/GetDevice", {"deviceId": bob.device_id}, base=http.private,
                                         **{"gim-internal-secret": SECRET})  # fmt: skip
        assert status == 200 and device["device"]["userId"] == str(bob.user_id), device
        status, answer = await http.post("/v1/logic/GetGroups", None, base=http.private,
                                         **{"gim-internal-secret": SECRET})  # fmt: skip
        assert (status, answer["code"]) == (404, 10001)  # public methods are not on the private listener
    finally:
        await conn.close()


async def test_page_config_cors_and_openapi(http: Http, cluster: Cluster) -> None:
    async with http.session.get(http.base + "/") as response:
        assert response.status == 200 and '<script src="/static/app.js">' in await response.text()
    async with http.session.get(http.base + "/static/app.js") as response:
        assert response.status == 200 and "class Connection" in await response.text()
    async with http.session.get(http.base + "/config.json") as response:
        assert await response.json() == {"wsUrls": [cluster.ws_url]}
    async with http.session.get(http.base + "/openapi.json") as response:
        assert await response.json() == openapi.build()
    preflight = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type,user_id,device_id,token"}  # fmt: skip
    async with http.session.options(http.base + "/v1/logic/SendMessage", headers=preflight) as response:
        assert response.status == 204
        assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
        assert {"user_id", "device_id", "token", "request_id"} <= {
            h.strip() for h in response.headers["Access-Control-Allow-Headers"].split(",")
        }
    async with http.session.post(http.base + "/v1/logic/GetGroups", headers={"Origin": ORIGIN}) as response:
        assert response.status == 401 and response.headers["Access-Control-Allow-Origin"] == ORIGIN
    async with http.session.post(http.base + "/v1/logic/GetGroups", headers={"Origin": "http://evil.test"}) as response:
        assert "Access-Control-Allow-Origin" not in response.headers


async def test_tls_on_both_listeners_and_client_certificates_on_the_private_one(
    cluster: Cluster, tmp_path: Path
) -> None:
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    files = {name: str(tmp_path / name) for name in ("ca.pem", "node.pem", "node.key")}
    ca.cert_pem.write_to_path(files["ca.pem"])
    leaf.private_key_and_cert_chain_pem.write_to_path(files["node.pem"])
    leaf.private_key_pem.write_to_path(files["node.key"])
    cfg = LogicConfig(
        http_listen="127.0.0.1:0",
        http_int_listen="127.0.0.1:0",
        tls="ext,int",
        tls_cert_file=files["node.pem"],
        tls_key_file=files["node.key"],
        tls_ca_file=files["ca.pem"],
        internal_mtls=True,
        internal_secret=SECRET,
    )
    web = WebServer.for_logic(cfg, cluster.logic.web.logic_ext, cluster.logic.web.logic_int)
    await web.start()
    [bob] = await cluster.new_user()
    trusting = ssl.create_default_context(cafile=files["ca.pem"])
    with_certificate = ssl.create_default_context(cafile=files["ca.pem"])
    with_certificate.load_cert_chain(files["node.pem"], files["node.key"])
    body = {"deviceId": bob.device_id}
    try:
        async with aiohttp.ClientSession() as session:
            async with session.post(
                f"https://127.0.0.1:{web.port}/v1/logic/RegisterDevice", json={"type": 5}, ssl=trusting
            ) as r:
                assert r.status == 200 and int((await r.json())["deviceId"]) > 0
            with pytest.raises(aiohttp.ClientError):  # plaintext to the TLS port
                async with session.post(f"http://127.0.0.1:{web.port}/v1/logic/RegisterDevice", json={}) as r:
                    await r.read()
            private = f"https://127.0.0.1:{web.int_port}/v1/logic-int/GetDevice"
            with pytest.raises(aiohttp.ClientError):  # no client certificate
                async with session.post(private, json=body, ssl=trusting, headers={"gim-internal-secret": SECRET}) as r:
                    await r.read()
            async with session.post(
                private, json=body, ssl=with_certificate, headers={"gim-internal-secret": SECRET}
            ) as r:
                assert r.status == 200 and (await r.json())["device"]["userId"] == str(bob.user_id)
    finally:
        await web.stop()


def test_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="http_int_listen=0.0.0.0:8089 is reachable from other hosts"):
        LogicConfig(http_int_listen="0.0.0.0:8089")
    assert LogicConfig(http_int_listen="0.0.0.0:8089", internal_secret=SECRET).http_int_listen == "0.0.0.0:8089"
    assert LogicConfig(http_int_listen="0.0.0.0:8089", private_network_trusted=True).private_network_trusted
    with pytest.raises(ConfigError, match="http_cors_origins='example.com'"):
        LogicConfig(http_cors_origins="example.com")
    with pytest.raises(ConfigError, match="web_ws_url='http://x/ws'"):
        LogicConfig(web_ws_url="http://x/ws")
    with pytest.raises(ConfigError, match="http_listen='8088'"):
        LogicConfig(http_listen="8088")
