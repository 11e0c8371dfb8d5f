"""How a scenario's work spread over the workers of each service (`cluster`): what each
node's /metrics says, read before and after the measured phase.

Per logic worker, the LogicExt calls it answered (`logic_<i>_calls`); per connect worker,
the devices signed in there (`connect_<i>_devices`) and the deliveries it made
(`connect_<i>_deliveries`: the messages logic handed it for its devices, plus, for a
room, its members there times the pushes). Which logic worker handed a delivery to
which connect worker no node counts (their counters name no peer), so no figure says so.
"""

from __future__ import annotations

import asyncio
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from gim.bench.services import Deployment

SCRAPE_TIMEOUT = 10.0
KINDS = ("calls", "pushes", "devices", "room_members")


def counts(text: str) -> dict[str, float]:
    """The figures of one node's /metrics text (0 for what the node does not have)."""
    out = dict.fromkeys(KINDS, 0.0)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "grpc_server_handled_total" and labels.get("grpc_service") == "pb.LogicExt":
                out["calls"] += sample.value
            elif sample.name == "gim_connect_pushes_total" and labels.get("outcome") == "delivered":
                out["pushes"] += sample.value
            elif sample.name == "gim_connect_connections" and labels.get("state") == "signed_in":
                out["devices"] += sample.value
            elif sample.name == "gim_connect_room_members":
                out["room_members"] += sample.value
    return out


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=SCRAPE_TIMEOUT) as answer:
        return str(answer.read().decode())


class Spread:
    """The logic and connect nodes started for `dep` (none for a --target: no figures)."""

    def __init__(self, dep: Deployment) -> None:
        nodes = [n for s in ("logic", "connect") for n in dep.launcher.of(s)] if dep.launcher is not None else []
        self._ports = {node.name: node.ports["metrics"] for node in nodes if node.ports.get("metrics")}
        self._before: dict[str, dict[str, float]] = {}

    async def _read(self) -> dict[str, dict[str, float]]:
        texts = await asyncio.gather(*(asyncio.to_thread(_scrape, port) for port in self._ports.values()))
        return {name: counts(text) for name, text in zip(self._ports, texts, strict=True)}

    async def start(self) -> None:
        self._before = await self._read()

    async def figures(self, room_pushes: int = 0) -> dict[str, float]:
        """Each worker's share since `start` (devices and room members: now)."""
        out: dict[str, float] = {}
        for name, now in (await self._read()).items():
            before, key = self._before.get(name, dict.fromkeys(KINDS, 0.0)), name.replace("-", "_")
            if name.startswith("logic"):
                out[f"{key}_calls"] = now["calls"] - before["calls"]
            else:
                out[f"{key}_devices"] = now["devices"]
                out[f"{key}_deliveries"] = now["pushes"] - before["pushes"] + now["room_members"] * room_pushes
        return out
