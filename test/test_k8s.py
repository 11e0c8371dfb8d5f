"""deploy/k8s: every manifest validates offline against the Kubernetes schemas, kustomize
lists exactly the manifest files, and each Deployment's environment (ConfigMap, Secret,
its own variables) is a configuration gim accepts, probes and ports included."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from gim.pkg import config, security
from gim.pkg.config import BusinessConfig, ConnectConfig, LogicConfig

K8S = Path(__file__).resolve().parent.parent / "deploy" / "k8s"
KUBERNETES = "1.37.0"
CONFIGS: dict[str, type[config.BaseConfig]] = {
    "business": BusinessConfig,
    "logic": LogicConfig,
    "connect": ConnectConfig,
}
POD_IP = "10.1.2.3"


def manifests() -> dict[str, list[dict[str, Any]]]:
    return {
        path.name: [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
        for path in sorted(K8S.glob("*.yaml"))
        if path.name != "kustomization.yaml"
    }


def objects(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for docs in manifests().values() for doc in docs if doc["kind"] == kind}


def test_every_manifest_validates_against_the_kubernetes_schemas() -> None:
    docs = [doc for file_docs in manifests().values() for doc in file_docs]
    assert {doc["kind"] for doc in docs} >= {"Deployment", "Service", "PodDisruptionBudget", "ConfigMap", "Secret"}
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)
    broken = copy.deepcopy(objects("Deployment")["logic"])
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"grpc": {"port": 50000}}
    with pytest.raises(kubernetes_validate.ValidationError):  # the validation does catch a misspelled field
        kubernetes_validate.validate(broken, KUBERNETES, strict=True)


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    assert sorted(kustomization["resources"]) == sorted(manifests())


def environment(deployment: dict[str, Any]) -> dict[str, str]:
    """What the container's process sees: envFrom (ConfigMap, Secret), then `env`, with
    $(VAR) references and the downward API's pod IP filled in."""
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    maps, secrets = objects("ConfigMap"), objects("Secret")
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(maps[source["configMapRef"]["name"]]["data"])
        else:
            env.update(secrets[source["secretRef"]["name"]]["stringData"])
    for var in container.get("env", []):
        if "valueFrom" in var:
            assert var["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP", var
            env[var["name"]] = POD_IP
        else:
            value = var["value"]
            for name, known in env.items():
                value = value.replace(f"$({name})", known)
            env[var["name"]] = value
    return env


@pytest.mark.parametrize("service", sorted(CONFIGS))
def test_deployment_environment_is_a_valid_gim_configuration(service: str) -> None:
    deployment = objects("Deployment")[service]
    env = environment(deployment)
    gim_vars = {k: v for k, v in env.items() if k.startswith("GIM_")}
    # every GIM_* variable is a setting (a misspelled one is a ConfigError), every value valid
    cfg = config.load(CONFIGS[service], service, path=K8S / "absent.yaml", environ=gim_vars)
    assert security.exposure_problem(cfg) is None, "private port on 0.0.0.0 with the internal secret"
    assert cfg.log_format == "json" and cfg.drain_seconds > 0
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    int_port = config.split_host_port(cfg.int_listen)[1]
    assert ports["int"] == int_port and ports["metrics"] == config.split_host_port(cfg.metrics_listen)[1]
    assert container["readinessProbe"]["grpc"] == {"port": int_port}  # "" : the node and its dependencies
    assert container["livenessProbe"]["grpc"] == {"port": int_port, "service": "liveness"}
    assert container["command"] == [f"gim-{service}"]
    pod = deployment["spec"]["template"]["spec"]
    assert "preStop" in container["lifecycle"] and pod["terminationGracePeriodSeconds"] >= 30
    if service == "connect":
        assert cfg.conn_addr == f"{POD_IP}:{int_port}", "logic reaches each connect pod at its own IP"
    budgets = {
        b["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] for b in objects("PodDisruptionBudget").values()
    }
    assert service in budgets


def test_peers_reach_logic_and_business_through_headless_services() -> None:
    services = objects("Service")
    for name, target in (("logic-int", "logic"), ("business-int", "business")):
        assert services[name]["spec"]["clusterIP"] == "None", f"{name}: one DNS name, every pod an address"
        assert services[name]["spec"]["selector"] == {"app.kubernetes.io/name": target}
    peers = {
        "business": environment(objects("Deployment")["business"])["GIM_BUSINESS_LOGIC_INT_ADDR"],
        "connect": environment(objects("Deployment")["connect"])["GIM_CONNECT_LOGIC_INT_ADDR"],
        "logic": environment(objects("Deployment")["logic"])["GIM_LOGIC_BUSINESS_INT_ADDR"],
    }
    assert peers == {"business": "logic-int:50000", "connect": "logic-int:50000", "logic": "business-int:50300"}


def test_dashboard_and_scrape_config_use_what_gim_serves() -> None:
    """Every gim metric the Grafana dashboard queries exists, and prometheus.yml scrapes
    each compose node on its metrics port."""
    from prometheus_client import REGISTRY

    from gim.pkg import metrics  # noqa: F401  # registers gim's metrics

    suffixes = ("", "_total", "_bucket", "_sum", "_count")  # the series a counter or histogram family has
    known = {family.name + suffix for family in REGISTRY.collect() for suffix in suffixes}
    dashboard = json.loads((K8S.parent / "grafana" / "gim-dashboard.json").read_text())
    queries = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    labels = {"grpc_service", "grpc_method", "grpc_code"}
    used = {name for query in queries for name in re.findall(r"\b((?:gim|grpc)_[a-z_]+)", query)} - labels
    assert used and used <= known, used - known
    scrape = yaml.safe_load((K8S.parent.parent / "prometheus.yml").read_text())
    targets = {t for job in scrape["scrape_configs"] for c in job["static_configs"] for t in c["targets"]}
    compose = yaml.safe_load((K8S.parent.parent / "docker-compose.yml").read_text())
    wanted = set()
    for name, service in compose["services"].items():
        kind = next((k for k in CONFIGS if service.get("command") == [f"gim-{k}"]), None)
        if kind:
            env = service["environment"]
            wanted.add(f"{name}:{config.split_host_port(env[f'GIM_{kind.upper()}_METRICS_LISTEN'])[1]}")
    assert targets == wanted
