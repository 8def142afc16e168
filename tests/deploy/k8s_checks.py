"""Consistency checks of the Kubernetes example (deploy/k8s) that a schema cannot make.

    docs = load_example()                # the documents kustomization.yaml lists
    assert consistency_problems(docs) == []

Each check returns sentences naming the object and what is wrong, so a test can show that a
broken copy of a manifest is refused for the right reason. The env names a container may set
come from the settings classes of the command it runs (the same fields the README's
configuration reference is generated from), so a misspelt ``PRGATE_*`` name is caught.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import yaml

from archive.settings import ArchiveSettings
from gateway.settings import GatewaySettings
from prgate.cli.topics import TopicsCommandSettings
from prgate.kafka.settings import KafkaSettings
from processor.settings import ProcessorSettings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
IMAGE = "prgate"  # the name every container uses; kustomization.yaml's `images` rewrites it
IMAGE_UID = 10001  # USER of deploy/Containerfile
CLOSE_MARGIN_S = 7  # the gateway's Kafka clients close within about this (producer 5 s, log 2 s)
MIN_CATCH_UP_S = 60  # a startupProbe must allow the read model at least this long to catch up

Doc = dict[str, Any]

# What each container command reads: the settings classes behind `prgate <args>`.
SETTINGS_OF: dict[tuple[str, ...], tuple[type, ...]] = {
    ("gateway",): (KafkaSettings, GatewaySettings),
    ("processor",): (KafkaSettings, ProcessorSettings),
    ("archive",): (KafkaSettings, ArchiveSettings),
    ("archive", "maintain"): (KafkaSettings, ArchiveSettings),
    ("topics", "ensure"): (KafkaSettings, TopicsCommandSettings),
}
# Instance ids that must be the pod's name (a StatefulSet's stable, unique identity).
INSTANCE_IDS = {
    ("processor",): "PRGATE_PROCESSOR_INSTANCE_ID",
    ("archive",): "PRGATE_ARCHIVE_INSTANCE_ID",
}
WORKLOADS = ("Deployment", "StatefulSet", "CronJob")


def env_names(classes: tuple[type, ...]) -> set[str]:
    """The environment variables the settings ``classes`` read."""
    return {
        str(f.metadata["env"])
        for cls in classes
        for f in dataclasses.fields(cls)
        if f.metadata.get("env")
    }


def load_example(directory: Path = K8S) -> list[Doc]:
    """The documents of the files ``kustomization.yaml`` lists under ``resources``, in order."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    return [
        doc
        for name in kustomization["resources"]
        for doc in yaml.safe_load_all((directory / name).read_text())
        if doc
    ]


def name_of(doc: Doc) -> str:
    return f"{doc['kind']}/{doc['metadata']['name']}"


def pod_template(doc: Doc) -> Doc:
    """The pod template of a Deployment, StatefulSet or CronJob."""
    if doc["kind"] == "CronJob":
        return cast(Doc, doc["spec"]["jobTemplate"]["spec"]["template"])
    return cast(Doc, doc["spec"]["template"])


def containers(pod: Doc) -> Iterator[Doc]:
    yield from pod["spec"].get("initContainers", [])
    yield from pod["spec"]["containers"]


def env_of(container: Doc) -> dict[str, Doc]:
    return {e["name"]: e for e in container.get("env", [])}


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and selector.items() <= labels.items()


def _workloads(docs: list[Doc]) -> list[Doc]:
    return [d for d in docs if d["kind"] in WORKLOADS]


def _by_kind(docs: list[Doc], kind: str) -> dict[str, Doc]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def check_selectors(docs: list[Doc]) -> list[str]:
    """Selectors match their pods; Services and PDBs select exactly one workload's pods."""
    problems = []
    workloads = _workloads(docs)
    for w in workloads:
        labels = pod_template(w)["metadata"]["labels"]
        if w["kind"] != "CronJob" and not selects(w["spec"]["selector"]["matchLabels"], labels):
            problems.append(f"{name_of(w)}: selector does not match its pod labels")
    for d in docs:
        if d["kind"] == "Service":
            selector = d["spec"].get("selector", {})
        elif d["kind"] == "PodDisruptionBudget":
            selector = d["spec"]["selector"]["matchLabels"]
        else:
            continue
        matched = [w for w in workloads if selects(selector, pod_template(w)["metadata"]["labels"])]
        if len(matched) != 1:
            problems.append(f"{name_of(d)}: selects {len(matched)} workloads, not one")
    return problems


def _ports(pod: Doc) -> tuple[set[int], set[str]]:
    numbers, names = set(), set()
    for c in containers(pod):
        for p in c.get("ports", []):
            numbers.add(p["containerPort"])
            if "name" in p:
                names.add(p["name"])
    return numbers, names


def check_ports(docs: list[Doc]) -> list[str]:
    """Probe and Service target ports are ports the pods declare."""
    problems = []
    workloads = _workloads(docs)
    for w in workloads:
        numbers, names = _ports(pod_template(w))
        for c in containers(pod_template(w)):
            for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
                action = c.get(kind, {})
                port = action.get("grpc") or action.get("httpGet") or action.get("tcpSocket") or {}
                target = port.get("port")
                if target is not None and target not in numbers and target not in names:
                    problems.append(f"{name_of(w)}: {c['name']} {kind} port {target} not declared")
    for svc in _by_kind(docs, "Service").values():
        for w in workloads:
            if selects(svc["spec"].get("selector", {}), pod_template(w)["metadata"]["labels"]):
                numbers, names = _ports(pod_template(w))
                for p in svc["spec"]["ports"]:
                    target = p.get("targetPort", p["port"])
                    if target not in numbers and target not in names:
                        problems.append(f"{name_of(svc)}: targetPort {target} not declared")
    return problems


def check_statefulsets(docs: list[Doc]) -> list[str]:
    """A StatefulSet's governing Service is headless; instance ids are the pod names."""
    problems = []
    services = _by_kind(docs, "Service")
    for sts in _by_kind(docs, "StatefulSet").values():
        svc = services.get(sts["spec"].get("serviceName", ""))
        if svc is None or svc["spec"].get("clusterIP") != "None":
            problems.append(f"{name_of(sts)}: serviceName is not a headless Service")
    for w in _workloads(docs):
        for c in pod_template(w)["spec"]["containers"]:
            variable = INSTANCE_IDS.get(tuple(c.get("args", [])))
            if variable is None:
                continue
            source = env_of(c).get(variable, {}).get("valueFrom", {}).get("fieldRef", {})
            if w["kind"] != "StatefulSet" or source.get("fieldPath") != "metadata.name":
                problems.append(f"{name_of(w)}: {variable} must be the StatefulSet pod's name")
    return problems


def check_gateway_stop(docs: list[Doc]) -> list[str]:
    """preStop + PRGATE_DRAIN_S + PRGATE_GRACE_PERIOD_S + closing fit the grace period."""
    problems = []
    for w in _workloads(docs):
        pod = pod_template(w)
        for c in pod["spec"]["containers"]:
            if c.get("args") != ["gateway"]:
                continue
            env = env_of(c)
            drain = float(env.get("PRGATE_DRAIN_S", {}).get("value", "5"))
            grace = float(env.get("PRGATE_GRACE_PERIOD_S", {}).get("value", "10"))
            pre_stop = c.get("lifecycle", {}).get("preStop", {})
            if "sleep" in pre_stop:
                sleep = float(pre_stop["sleep"]["seconds"])
            elif "exec" in pre_stop and pre_stop["exec"]["command"][0].endswith("sleep"):
                sleep = float(pre_stop["exec"]["command"][-1])
            else:
                sleep = 0.0
                problems.append(f"{name_of(w)}: gateway has no preStop sleep")
            total = sleep + drain + grace + CLOSE_MARGIN_S
            budget = pod["spec"].get("terminationGracePeriodSeconds", 30)
            if total > budget:
                problems.append(
                    f"{name_of(w)}: preStop {sleep:g} + drain {drain:g} + grace {grace:g} + close"
                    f" {CLOSE_MARGIN_S} = {total:g} s > terminationGracePeriodSeconds {budget}"
                )
            ready = c.get("readinessProbe", {})
            noticed = ready.get("periodSeconds", 10) * ready.get("failureThreshold", 3)
            if "grpc" not in ready or drain < noticed:
                problems.append(
                    f"{name_of(w)}: PRGATE_DRAIN_S {drain:g} s < {noticed} s for a gRPC"
                    " readinessProbe to see NOT_SERVING"
                )
            start = c.get("startupProbe", {})
            if "grpc" not in start or (
                start.get("periodSeconds", 10) * start.get("failureThreshold", 3) < MIN_CATCH_UP_S
            ):
                problems.append(f"{name_of(w)}: gRPC startupProbe allows under {MIN_CATCH_UP_S} s")
    return problems


def check_security(docs: list[Doc]) -> list[str]:
    """Non-root as the image's user, read-only root, writable /tmp, no privileges."""
    problems = []
    for w in _workloads(docs):
        pod = pod_template(w)
        ctx = pod["spec"].get("securityContext", {})
        if not ctx.get("runAsNonRoot") or ctx.get("runAsUser") != IMAGE_UID:
            problems.append(f"{name_of(w)}: pod must run as non-root uid {IMAGE_UID}")
        for c in containers(pod):
            sc = c.get("securityContext", {})
            if not (
                sc.get("readOnlyRootFilesystem")
                and sc.get("allowPrivilegeEscalation") is False
                and sc.get("capabilities", {}).get("drop") == ["ALL"]
            ):
                problems.append(f"{name_of(w)}: {c['name']} must drop privileges, read-only root")
            if "/tmp" not in {m["mountPath"] for m in c.get("volumeMounts", [])}:
                problems.append(f"{name_of(w)}: {c['name']} has no writable /tmp")
            if c["image"] != IMAGE:
                problems.append(f"{name_of(w)}: {c['name']} image {c['image']!r} is not {IMAGE!r}")
    return problems


def _mounts(pod: Doc, container: Doc) -> list[tuple[str, Doc, bool]]:
    volumes = {v["name"]: v for v in pod["spec"].get("volumes", [])}
    return [
        (m["mountPath"], volumes.get(m["name"], {}), bool(m.get("readOnly")))
        for m in container.get("volumeMounts", [])
    ]


def check_env_and_files(docs: list[Doc]) -> list[str]:
    """Known env names; files and directories the settings name are on mounted volumes.

    A container's own ``env`` must be read by its command; a ConfigMap's keys, shared by
    several commands, each by at least one of the commands that load it.
    """
    problems = []
    configmaps = _by_kind(docs, "ConfigMap")
    read_from: dict[str, set[str]] = {name: set() for name in configmaps}
    for w in _workloads(docs):
        pod = pod_template(w)
        for c in containers(pod):
            args = tuple(c.get("args", []))
            if args not in SETTINGS_OF:
                problems.append(f"{name_of(w)}: {c['name']} runs `prgate {' '.join(args)}`?")
                continue
            known = env_names(SETTINGS_OF[args])
            for source in c.get("envFrom", []):
                ref = source.get("configMapRef")
                if ref and ref["name"] in configmaps:
                    read_from[ref["name"]] |= known
            for unknown in sorted(n for n in set(env_of(c)) - known if not n.startswith("OTEL_")):
                problems.append(f"{name_of(w)}: {c['name']} sets {unknown}, which it does not read")
            env = env_of(c)
            for variable, writable in (
                ("PRGATE_ARCHIVE_ROOT", True),
                ("PRGATE_AUTH_TOKEN_FILE", False),
                ("PRGATE_TLS_CERT_FILE", False),
                ("PRGATE_TLS_KEY_FILE", False),
            ):
                path = env.get(variable, {}).get("value")
                if path is not None:
                    problems += _check_path(w, c, pod, variable, path, writable=writable)
    for name, known in read_from.items():
        for unknown in sorted(set(configmaps[name]["data"]) - known):
            problems.append(f"ConfigMap/{name}: {unknown} is read by none of its users")
    return problems


def _check_path(w: Doc, c: Doc, pod: Doc, variable: str, path: str, *, writable: bool) -> list[str]:
    for mount_path, volume, read_only in _mounts(pod, c):
        if path != mount_path and not path.startswith(mount_path.rstrip("/") + "/"):
            continue
        if writable and read_only:
            return [f"{name_of(w)}: {variable} {path} is on a read-only mount"]
        secret = volume.get("secret")
        if secret is not None:
            mode = secret.get("defaultMode", 0o644)
            key = path[len(mount_path) :].strip("/")
            items = [i["path"] for i in secret.get("items", [])]
            if items and key not in items:
                return [f"{name_of(w)}: {variable} {path}: the Secret volume has no {key}"]
            if mode & 0o007:
                return [f"{name_of(w)}: {variable} {path} is readable by others ({mode:o})"]
        return []
    return [f"{name_of(w)}: {variable} {path} is not on a mounted volume"]


def check_cronjobs(docs: list[Doc]) -> list[str]:
    """`prgate archive maintain` runs from a CronJob, one at a time."""
    problems = []
    maintains = [
        w
        for w in _workloads(docs)
        for c in pod_template(w)["spec"]["containers"]
        if c.get("args") == ["archive", "maintain"]
    ]
    if not maintains:
        problems.append("no workload runs `prgate archive maintain`")
    for w in maintains:
        if w["kind"] != "CronJob" or w["spec"].get("concurrencyPolicy") != "Forbid":
            problems.append(
                f"{name_of(w)}: archive maintain needs a CronJob, concurrencyPolicy Forbid"
            )
    return problems


CHECKS = (
    check_selectors,
    check_ports,
    check_statefulsets,
    check_gateway_stop,
    check_security,
    check_env_and_files,
    check_cronjobs,
)


def consistency_problems(docs: list[Doc]) -> list[str]:
    """Every check's problems; empty when the example is consistent."""
    return [problem for check in CHECKS for problem in check(docs)]


def referenced_secrets(docs: list[Doc]) -> dict[str, bool]:
    """Secrets the pods use that the example does not define: name -> optional."""
    defined = set(_by_kind(docs, "Secret"))
    found: dict[str, bool] = {}

    def note(name: str, optional: bool) -> None:
        if name not in defined:
            found[name] = found.get(name, True) and optional

    for w in _workloads(docs):
        pod = pod_template(w)
        for v in pod["spec"].get("volumes", []):
            if "secret" in v:
                note(v["secret"]["secretName"], bool(v["secret"].get("optional")))
        for c in containers(pod):
            for source in c.get("envFrom", []):
                if "secretRef" in source:
                    note(source["secretRef"]["name"], bool(source["secretRef"].get("optional")))
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    note(ref["name"], bool(ref.get("optional")))
    return found


def strategic_merge(base: Any, patch: Any) -> Any:
    """``patch`` merged into a copy of ``base`` like kubectl's strategic merge for these
    manifests: maps merge key by key, lists of maps with a ``name`` merge by name (new names
    are appended), any other value is replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = copy.deepcopy(base)
        for key, value in patch.items():
            merged[key] = strategic_merge(base[key], value) if key in base else value
        return merged
    if (
        isinstance(base, list)
        and isinstance(patch, list)
        and all(isinstance(x, dict) and "name" in x for x in base + patch)
    ):
        merged_list = copy.deepcopy(base)
        index = {item["name"]: i for i, item in enumerate(merged_list)}
        for item in patch:
            if item["name"] in index:
                at = index[item["name"]]
                merged_list[at] = strategic_merge(merged_list[at], item)
            else:
                merged_list.append(copy.deepcopy(item))
        return merged_list
    return copy.deepcopy(patch)
