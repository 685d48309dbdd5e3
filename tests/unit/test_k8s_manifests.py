"""deploy/k8s: the kustomize base and the production overlay, rendered in Python (resources,
namespace, images and JSON 6902 patches: the features our kustomizations use) and validated
against the Kubernetes schemas bundled with `kubernetes-validate`.

ServiceMonitor, ScaledObject and TriggerAuthentication are CRDs that those schemas do not
contain: for them, the test checks the fields that tie them to the rest (names, ports, partition
count), not a schema. Where ``kubectl`` is installed, its ``kustomize`` output must equal ours.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import fields
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from stream.paths import CHECKOUT as REPO_ROOT
from stream.settings import ENV_PREFIX, Settings

K8S = REPO_ROOT / "deploy" / "k8s"
KUSTOMIZATIONS = [K8S / "base", K8S / "overlays" / "production"]
CRD_KINDS = {"ServiceMonitor", "ScaledObject", "TriggerAuthentication"}
K8S_VERSION = "1.36"


def render(folder: Path) -> list[dict[str, Any]]:
    spec = yaml.safe_load((folder / "kustomization.yaml").read_text())
    resources: list[dict[str, Any]] = []
    for entry in spec.get("resources", []):
        path = folder / entry
        if path.is_dir():
            resources += render(path)
        else:
            resources += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    for label in spec.get("labels", []):
        for resource in resources:
            resource["metadata"].setdefault("labels", {}).update(label["pairs"])
    for patch in spec.get("patches", []):
        for resource in resources:
            if all(resource.get(k if k != "name" else "metadata", {}) == v if k != "name"
                   else resource["metadata"]["name"] == v for k, v in patch["target"].items()):
                for op in yaml.safe_load(patch["patch"]):
                    apply(resource, op)
    for image in spec.get("images", []):
        for container in containers(resources):
            if container["image"].split(":")[0] == image["name"]:
                container["image"] = f"{image['name']}:{image['newTag']}"
    if "namespace" in spec:
        for resource in resources:
            resource["metadata"]["namespace"] = spec["namespace"]
    return resources


def apply(resource: dict[str, Any], op: dict[str, Any]) -> None:
    assert op["op"] in ("replace", "add"), f"unsupported patch op {op['op']}"
    *parents, last = op["path"].lstrip("/").split("/")
    node: Any = resource
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if op["op"] == "replace":
        assert (last in node) if isinstance(node, dict) else int(last) < len(node), op["path"]
    node[int(last) if isinstance(node, list) else last] = op["value"]


def containers(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c for r in resources if r["kind"] == "Deployment"
            for c in r["spec"]["template"]["spec"]["containers"]]


def one(resources: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    [found] = [r for r in resources if r["kind"] == kind]
    return found


@pytest.fixture(params=KUSTOMIZATIONS, ids=lambda p: p.name)
def rendered(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return render(request.param)


def test_every_builtin_resource_is_valid_against_the_kubernetes_schemas(
        rendered: list[dict[str, Any]]) -> None:
    kinds = {r["kind"] for r in rendered}
    assert {"Deployment", "ConfigMap", "Secret", "Service", "PodDisruptionBudget"} <= kinds
    for resource in rendered:
        if resource["kind"] in CRD_KINDS:
            with pytest.raises(kubernetes_validate.SchemaNotFoundError):
                kubernetes_validate.validate(resource, K8S_VERSION, strict=True)
            continue
        kubernetes_validate.validate(resource, K8S_VERSION, strict=True)


def test_the_config_map_holds_real_settings_with_valid_values(
        rendered: list[dict[str, Any]]) -> None:
    data = one(rendered, "ConfigMap")["data"]
    known = {ENV_PREFIX + f.name.upper() for f in fields(Settings)}
    assert set(data) <= known, set(data) - known
    settings = Settings.load({**data, "SIGNALS_SASL_USERNAME": "u", "SIGNALS_SASL_PASSWORD": "p"})
    deployment = one(rendered, "Deployment")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["ports"][0]["containerPort"] == settings.metrics_port
    assert {e["name"] for e in container["env"]} == {"SIGNALS_SASL_USERNAME",
                                                      "SIGNALS_SASL_PASSWORD"}
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > settings.session_timeout_s


def test_keda_scales_up_to_the_partition_count_on_the_worker_group(
        rendered: list[dict[str, Any]]) -> None:
    settings = Settings.load(one(rendered, "ConfigMap")["data"] | {
        "SIGNALS_SASL_USERNAME": "u", "SIGNALS_SASL_PASSWORD": "p"})
    scaled = one(rendered, "ScaledObject")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert scaled["spec"]["maxReplicaCount"] == settings.partitions
    assert scaled["spec"]["scaleTargetRef"]["name"] == one(rendered, "Deployment")["metadata"][
        "name"]
    [trigger] = scaled["spec"]["triggers"]
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["consumerGroup"] == settings.app_id
    assert trigger["metadata"]["topic"] == settings.topics.events
    assert trigger["metadata"]["bootstrapServers"] == settings.bootstrap_servers
    auth = one(rendered, "TriggerAuthentication")
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    secret = one(rendered, "Secret")
    assert {ref["key"] for ref in auth["spec"]["secretTargetRef"]} <= set(secret["stringData"])


def test_prometheus_finds_the_metrics_port(rendered: list[dict[str, Any]]) -> None:
    service, monitor = one(rendered, "Service"), one(rendered, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"][
        "labels"].items()
    pod = one(rendered, "Deployment")["spec"]["template"]["metadata"]
    assert service["spec"]["selector"].items() <= pod["labels"].items()
    assert pod["annotations"]["prometheus.io/port"] == str(service["spec"]["ports"][0]["port"])


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
@pytest.mark.parametrize("folder", KUSTOMIZATIONS, ids=lambda p: p.name)
def test_our_rendering_equals_kubectl_kustomize(folder: Path) -> None:
    done = subprocess.run(["kubectl", "kustomize", str(folder)], capture_output=True, text=True,
                          timeout=60, check=True)
    theirs = sorted(yaml.safe_load_all(done.stdout), key=lambda r: (r["kind"],
                                                                    r["metadata"]["name"]))
    ours = sorted(render(folder), key=lambda r: (r["kind"], r["metadata"]["name"]))
    assert theirs == ours
