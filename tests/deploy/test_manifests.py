"""The Kubernetes example (deploy/k8s), validated offline: every document against the strict
JSON schemas of Kubernetes 1.27 to 1.37 (kubernetes-validate's Python API: unlike its CLI, it
raises for an unknown kind or apiVersion), plus the consistency checks of k8s_checks.py. Broken
copies show that both the schema and the checks refuse what they should."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import cast

import kubernetes_validate
import pytest
import yaml

from tests.deploy.k8s_checks import (
    K8S,
    ROOT,
    Doc,
    consistency_problems,
    load_example,
    name_of,
    pod_template,
    referenced_secrets,
    strategic_merge,
)

# 1.27: gRPC probes are GA; 1.37: the newest schemas kubernetes-validate 1.37.0 ships.
VERSIONS = [f"1.{minor}.0" for minor in range(27, 38)]
DOCS = load_example()
TLS_PATCH = K8S / "gateway-tls.patch.yaml"


def validate(doc: Doc, version: str) -> None:
    kubernetes_validate.validate(doc, version, strict=True)


def find(docs: list[Doc], kind: str, name: str) -> Doc:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def test_kustomization_lists_every_manifest() -> None:
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    present = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", TLS_PATCH.name}
    assert sorted(listed) == sorted(present)
    kinds = {name_of(d).split("/")[0] for d in DOCS}
    assert {"Deployment", "StatefulSet", "CronJob", "Service", "PodDisruptionBudget"} <= kinds


@pytest.mark.parametrize("version", VERSIONS)
def test_every_document_is_valid_strictly(version: str) -> None:
    for doc in DOCS:
        validate(doc, version)


def test_the_example_is_consistent() -> None:
    assert consistency_problems(DOCS) == []


def _container(docs: list[Doc], kind: str, name: str) -> Doc:
    return cast(Doc, pod_template(find(docs, kind, name))["spec"]["containers"][0])


def _gateway(docs: list[Doc]) -> Doc:
    return find(docs, "Deployment", "prgate-gateway")


# Each breaks a copy of the gateway Deployment; the strict schema must refuse it.
SCHEMA_BREAKS: dict[str, Callable[[Doc], None]] = {
    "replicas as a string": lambda d: d["spec"].update(replicas="2"),
    "gRPC probe port by name": lambda d: _c(d)["readinessProbe"]["grpc"].update(port="grpc"),
    "misspelt field": lambda d: _c(d).update(readinesProbe=_c(d).pop("readinessProbe")),
    "container without a name": lambda d: _c(d).pop("name"),
    "unknown apiVersion": lambda d: d.update(apiVersion="apps/v1beta1"),
    "unknown kind": lambda d: d.update(kind="Deploymnet"),
}


def _c(doc: Doc) -> Doc:
    return cast(Doc, doc["spec"]["template"]["spec"]["containers"][0])


@pytest.mark.parametrize("case", SCHEMA_BREAKS)
def test_schema_refuses_a_broken_manifest(case: str) -> None:
    broken = copy.deepcopy(_gateway(DOCS))
    SCHEMA_BREAKS[case](broken)
    with pytest.raises(
        (kubernetes_validate.ValidationError, kubernetes_validate.SchemaNotFoundError)
    ):
        validate(broken, "1.31.0")


def _env(container: Doc, name: str, value: str) -> None:
    for entry in container["env"]:
        if entry["name"] == name:
            entry["value"] = value
            return
    container["env"].append({"name": name, "value": value})


def _set_grace(docs: list[Doc], seconds: int) -> None:
    pod_template(_gateway(docs))["spec"]["terminationGracePeriodSeconds"] = seconds


# Each breaks a copy of the example in a way the schema allows; the checks must say so.
CONSISTENCY_BREAKS: dict[str, tuple[Callable[[list[Doc]], None], str]] = {
    "drain longer than the grace period": (
        lambda docs: _env(_container(docs, "Deployment", "prgate-gateway"), "PRGATE_DRAIN_S", "30"),
        "> terminationGracePeriodSeconds",
    ),
    "grace period too short": (
        lambda docs: _set_grace(docs, 20),
        "> terminationGracePeriodSeconds",
    ),
    "drain shorter than readiness notices": (
        lambda docs: _env(_container(docs, "Deployment", "prgate-gateway"), "PRGATE_DRAIN_S", "2"),
        "for a gRPC readinessProbe to see NOT_SERVING",
    ),
    "selector does not match the pods": (
        lambda docs: find(docs, "StatefulSet", "prgate-processor")["spec"]["selector"][
            "matchLabels"
        ].update({"app.kubernetes.io/component": "processors"}),
        "selector does not match its pod labels",
    ),
    "probe on an undeclared port": (
        lambda docs: _container(docs, "Deployment", "prgate-gateway")["livenessProbe"][
            "grpc"
        ].update(port=50052),
        "livenessProbe port 50052 not declared",
    ),
    "instance id not the pod name": (
        lambda docs: _container(docs, "StatefulSet", "prgate-processor")["env"][0].update(
            valueFrom={"fieldRef": {"fieldPath": "metadata.uid"}}
        ),
        "PRGATE_PROCESSOR_INSTANCE_ID must be the StatefulSet pod's name",
    ),
    "governing Service not headless": (
        lambda docs: find(docs, "Service", "prgate-processor")["spec"].pop("clusterIP"),
        "serviceName is not a headless Service",
    ),
    "misspelt setting": (
        lambda docs: _env(
            _container(docs, "Deployment", "prgate-gateway"), "PRGATE_DRAIN_SEC", "5"
        ),
        "sets PRGATE_DRAIN_SEC, which it does not read",
    ),
    "root file system writable": (
        lambda docs: _container(docs, "StatefulSet", "prgate-archive")["securityContext"].update(
            readOnlyRootFilesystem=False
        ),
        "must drop privileges, read-only root",
    ),
    "token file readable by others": (
        lambda docs: pod_template(_gateway(docs))["spec"]["volumes"][1]["secret"].update(
            defaultMode=0o444
        ),
        "readable by others",
    ),
    "archive root not on a volume": (
        lambda docs: _env(
            _container(docs, "StatefulSet", "prgate-archive"), "PRGATE_ARCHIVE_ROOT", "/data"
        ),
        "PRGATE_ARCHIVE_ROOT /data is not on a mounted volume",
    ),
    "maintenance may overlap": (
        lambda docs: find(docs, "CronJob", "prgate-archive-maintain")["spec"].update(
            concurrencyPolicy="Allow"
        ),
        "concurrencyPolicy Forbid",
    ),
    "ConfigMap key nobody reads": (
        lambda docs: find(docs, "ConfigMap", "prgate")["data"].update(PRGATE_PARTITONS="6"),
        "PRGATE_PARTITONS is read by none of its users",
    ),
    "PDB selects nothing": (
        lambda docs: find(docs, "PodDisruptionBudget", "prgate-gateway")["spec"]["selector"][
            "matchLabels"
        ].update({"app.kubernetes.io/component": "gw"}),
        "selects 0 workloads",
    ),
}


@pytest.mark.parametrize("case", CONSISTENCY_BREAKS)
def test_checks_refuse_an_inconsistent_manifest(case: str) -> None:
    docs = copy.deepcopy(DOCS)
    breaks, expected = CONSISTENCY_BREAKS[case]
    breaks(docs)
    problems = consistency_problems(docs)
    assert any(expected in p for p in problems), problems
    for doc in docs:  # what the schema cannot see
        validate(doc, "1.31.0")


def test_tls_patch_needs_kubernetes_1_37() -> None:
    patch = yaml.safe_load(TLS_PATCH.read_text())
    docs = [strategic_merge(d, patch) if name_of(d) == name_of(patch) else d for d in DOCS]
    container = _container(docs, "Deployment", "prgate-gateway")
    assert container["readinessProbe"]["grpc"]["mode"] == "TLS"
    assert {e["name"] for e in container["env"]} >= {"PRGATE_TLS_CERT_FILE", "PRGATE_LISTEN"}
    assert consistency_problems(docs) == []
    validate(_gateway(docs), "1.37.0")
    with pytest.raises(kubernetes_validate.ValidationError, match="mode"):
        validate(_gateway(docs), "1.36.0")


def test_readme_says_how_to_create_the_secrets() -> None:
    secrets = referenced_secrets(DOCS) | referenced_secrets(
        [strategic_merge(_gateway(DOCS), yaml.safe_load(TLS_PATCH.read_text()))]
    )
    assert set(secrets) == {"prgate-gateway", "prgate-kafka", "prgate-gateway-tls"}
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Deployment") :]
    section = section[: section.index("\n## ", 3)]
    for name in secrets:
        assert re.search(rf"kubectl create secret \S+ {re.escape(name)}\b", section), name


def test_preStop_sleep_action_is_newer_than_the_oldest_version() -> None:
    """Why the example's preStop runs /bin/sleep: the `sleep` action is unknown to 1.27."""
    gateway = copy.deepcopy(_gateway(DOCS))
    _c(gateway)["lifecycle"]["preStop"] = {"sleep": {"seconds": 5}}
    validate(gateway, "1.30.0")
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(gateway, "1.27.0")


def test_manifest_files_parse_as_yaml_1_1_octal() -> None:
    """defaultMode 0440 must reach Kubernetes as octal (288), as kubectl reads it."""
    text = (K8S / "gateway.yaml").read_text()
    assert "defaultMode: 0440" in text
    volumes = pod_template(_gateway(DOCS))["spec"]["volumes"]
    assert [v["secret"]["defaultMode"] for v in volumes if "secret" in v] == [0o440]
