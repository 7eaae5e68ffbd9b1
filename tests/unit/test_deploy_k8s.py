"""Kubernetes manifests: generated ones match the code, the rest are valid and consistent.

Built-in kinds are validated against the Kubernetes JSON schemas of the
``kubernetes-validate`` package when it is installed; the CRDs (Strimzi, KubeRay,
prometheus-operator) and the cross-references between resources are checked here.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from aitl import cli_deploy, k8s
from kernel.events import Component
from streams.catalog import CATALOG
from tests.unit.test_deploy_compose import (
    AITL_IMAGE,
    ROOT,
    dockerfile_stages,
    env_var_ok,
)
from tests.unit.test_security import _secret_fields

K8S_VERSION = "1.33"
CRD_KINDS = {"KafkaTopic", "KafkaUser", "RayService", "PodMonitor", "PrometheusRule"}


def manifests() -> list[tuple[str, dict[str, Any]]]:
    return [
        (path.name, doc)
        for path in sorted(k8s.K8S_DIR.glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in manifests() if doc["kind"] == kind]


def pod_specs() -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(owner, pod template metadata, pod spec) of every workload, Ray groups included."""
    for _, doc in manifests():
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        spec = doc.get("spec", {})
        if doc["kind"] in ("Deployment", "StatefulSet"):
            yield name, spec["template"]["metadata"], spec["template"]["spec"]
        elif doc["kind"] == "CronJob":
            template = spec["jobTemplate"]["spec"]["template"]
            yield name, template["metadata"], template["spec"]
        elif doc["kind"] == "RayService":
            cluster = spec["rayClusterConfig"]
            head = cluster["headGroupSpec"]["template"]
            yield f"{name}/head", head["metadata"], head["spec"]
            for group in cluster["workerGroupSpecs"]:
                template = group["template"]
                yield f"{name}/{group['groupName']}", template["metadata"], template["spec"]


def aitl_containers() -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    for owner, _, spec in pod_specs():
        for container in spec["containers"]:
            if container["image"].split(":")[0] == AITL_IMAGE.split(":")[0]:
                yield owner, spec, container


def test_generated_manifests_match_the_code() -> None:
    assert k8s.drift(k8s.TOPICS_FILE, k8s.topics_manifest()) is None, (
        "deploy/k8s/kafka-topics.yaml is stale: run `aitl deploy k8s-topics`"
    )
    assert k8s.drift(k8s.RULES_FILE, k8s.rules_manifest()) is None, (
        "deploy/k8s/prometheus-rules.yaml is stale: run `aitl deploy k8s-rules`"
    )


def test_kafka_topics_mirror_the_catalog() -> None:
    topics = {doc["spec"]["topicName"]: doc for doc in of_kind("KafkaTopic")}
    assert set(topics) == {k8s.PREFIX + spec.suffix for spec in CATALOG}
    for spec in CATALOG:
        doc = topics[k8s.PREFIX + spec.suffix]
        assert doc["spec"]["partitions"] == (spec.partitions or k8s.PARTITIONS)
        assert doc["spec"]["replicas"] == k8s.REPLICAS
        assert doc["spec"]["config"].items() >= spec.configs().items()
        assert doc["spec"]["config"]["min.insync.replicas"] == "2"
        assert doc["metadata"]["labels"]["strimzi.io/cluster"] == k8s.CLUSTER
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", doc["metadata"]["name"])


def test_a_catalog_change_is_reported_as_drift(tmp_path: Path) -> None:
    """The drift check is what fails when the catalog moves and the manifest does not."""
    changed = k8s.topics_manifest(partitions=k8s.PARTITIONS + 6)
    assert k8s.drift(k8s.TOPICS_FILE, changed) is not None
    assert k8s.resource_name("Staging_AITL.Interactions") == "staging-aitl.interactions"


def test_deploy_cli_writes_and_checks(tmp_path: Path) -> None:
    out = tmp_path / "topics.yaml"
    runner = CliRunner()
    check = runner.invoke(cli_deploy.app, ["k8s-topics", "--out", str(out), "--check"])
    assert check.exit_code == 1 and not out.exists()
    wrote = runner.invoke(cli_deploy.app, ["k8s-topics", "--out", str(out), "--replicas", "1"])
    assert wrote.exit_code == 0, wrote.output
    assert "min.insync.replicas: '1'" in out.read_text()
    same = ["k8s-topics", "--out", str(out), "--replicas", "1", "--check"]
    assert runner.invoke(cli_deploy.app, same).exit_code == 0
    other = runner.invoke(cli_deploy.app, ["k8s-topics", "--out", str(out), "--check"])
    assert other.exit_code == 1 and "replicas: 3" in other.output
    assert runner.invoke(cli_deploy.app, ["k8s-rules", "--check"]).exit_code == 0


def test_kustomization_applies_every_manifest() -> None:
    kustomization = yaml.safe_load((k8s.K8S_DIR / "kustomization.yaml").read_text())
    files = {p.name for p in k8s.K8S_DIR.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files
    assert kustomization["images"][0]["newTag"] == AITL_IMAGE.split(":")[1]
    for _, doc in manifests():
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == kustomization["namespace"], doc["kind"]


def test_builtin_kinds_validate_against_the_kubernetes_schemas() -> None:
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="pip install kubernetes-validate"
    )
    checked = 0
    for name, doc in manifests():
        if doc["kind"] in CRD_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{name} {doc['kind']}/{doc['metadata']['name']}: {path}: {exc.message}")
        checked += 1
    assert checked >= 10


def test_every_process_is_deployed() -> None:
    args = {" ".join(c.get("args", [])[:2]) for _, _, c in aitl_containers()}
    assert {"gateway start", "processors start"} <= args
    assert {f"train {c.slug}" for c in Component} <= args
    assert [doc["metadata"]["name"] for doc in of_kind("RayService")] == ["aitl-serving"]


def test_pods_run_as_the_image_user_with_requests_and_no_privileges() -> None:
    user = [r for kw, r in dockerfile_stages()[-1].instructions if kw == "USER"][-1]
    uid = int(user.split(":")[0])
    for owner, spec, container in aitl_containers():
        assert spec["securityContext"]["runAsNonRoot"] is True, owner
        assert spec["securityContext"]["runAsUser"] == uid, owner
        assert container["securityContext"]["allowPrivilegeEscalation"] is False, owner
        assert container["securityContext"]["capabilities"]["drop"] == ["ALL"], owner
        assert {"cpu", "memory"} <= container["resources"]["requests"].keys(), owner
        assert "memory" in container["resources"]["limits"], owner


def test_settings_come_from_the_configmap_and_secrets_from_secrets() -> None:
    config = of_kind("ConfigMap")[0]
    secret_vars = {
        ("AITL_" + name.replace(".", "_")).upper()
        for name in _secret_fields(__import__("kernel.settings").settings.Settings)
    } | {"AITL_PROCESSORS_PSEUDONYM_KEY"}
    for key in config["data"]:
        assert env_var_ok(AITL_IMAGE, key), f"ConfigMap key {key} is read by nothing"
        assert key not in secret_vars, f"{key} is a secret: use a Secret"
    for owner, _, container in aitl_containers():
        assert container["envFrom"] == [{"configMapRef": {"name": config["metadata"]["name"]}}]
        for env in container.get("env", []):
            assert env_var_ok(AITL_IMAGE, env["name"]), f"{owner}: {env['name']} read by nothing"
            if env["name"] in secret_vars:
                assert "secretKeyRef" in env.get("valueFrom", {}), f"{owner}: {env['name']}"
        names = {e["name"] for e in container.get("env", [])}
        if config["data"]["AITL_KAFKA_SECURITY_PROTOCOL"].startswith("SASL"):
            assert "AITL_KAFKA_SASL_PASSWORD" in names, owner


def test_volumes_mounts_and_claims_resolve() -> None:
    claims = {doc["metadata"]["name"] for doc in of_kind("PersistentVolumeClaim")}
    ca_path = of_kind("ConfigMap")[0]["data"]["AITL_KAFKA_SSL_CA_LOCATION"]
    for owner, spec, container in aitl_containers():
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        mounts = {m["name"]: m["mountPath"] for m in container.get("volumeMounts", [])}
        assert mounts.keys() <= volumes.keys(), owner
        for volume in volumes.values():
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims, owner
        ca_volume = volumes["kafka-ca"]["secret"]
        assert str(Path(mounts["kafka-ca"]) / ca_volume["items"][0]["path"]) == ca_path, owner


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return selector.items() <= labels.items()


def test_selectors_match_their_pods_and_ports() -> None:
    pods = list(pod_specs())
    for doc in of_kind("Deployment") + of_kind("StatefulSet"):
        selector = doc["spec"]["selector"]["matchLabels"]
        assert _selects(selector, doc["spec"]["template"]["metadata"]["labels"])
    for kind in ("Service", "PodDisruptionBudget", "PodMonitor"):
        for doc in of_kind(kind):
            spec = doc["spec"]
            selector = spec["selector"].get("matchLabels", spec["selector"])
            matched = [(o, s) for o, meta, s in pods if _selects(selector, meta["labels"])]
            ray_head = selector.get("ray.io/node-type") == "head"  # label set by KubeRay
            if ray_head:
                plain = {k: v for k, v in selector.items() if k != "ray.io/node-type"}
                matched = [
                    (o, s)
                    for o, meta, s in pods
                    if o.endswith("/head") and _selects(plain, meta["labels"])
                ]
            assert matched, f"{kind}/{doc['metadata']['name']} selects no pod"
            ports = {
                p["name"] for _, s in matched for c in s["containers"] for p in c.get("ports", [])
            }
            wanted = [p.get("targetPort") for p in spec.get("ports", [])]
            wanted += [p["port"] for p in spec.get("podMetricsEndpoints", [])]
            for port in wanted:
                if isinstance(port, str):
                    assert port in ports, f"{kind}/{doc['metadata']['name']}: no port {port}"


def test_kafka_user_and_topics_fit_the_cluster_and_prefix() -> None:
    config = of_kind("ConfigMap")[0]["data"]
    users = {u["metadata"]["name"]: u for u in of_kind("KafkaUser")}
    mechanism = config["AITL_KAFKA_SASL_MECHANISM"].lower()
    for user in users.values():
        cluster = user["metadata"]["labels"]["strimzi.io/cluster"]
        assert config["AITL_KAFKA_BOOTSTRAP"].startswith(f"{cluster}-kafka-bootstrap.")
        assert user["spec"]["authentication"]["type"] == mechanism
        for topic in of_kind("KafkaTopic"):
            assert topic["metadata"]["labels"]["strimzi.io/cluster"] == cluster
    for owner, _, container in aitl_containers():
        env = {e["name"]: e for e in container.get("env", [])}
        name = env["AITL_KAFKA_SASL_USERNAME"]["value"]
        assert name in users, f"{owner} connects as {name}, which is no KafkaUser"
        secret = env["AITL_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]
        assert secret == {"name": name, "key": "password"}, owner  # Strimzi's Secret
    assert "AITL_KAFKA_SASL_USERNAME" not in config  # one identity per service
    assert config["AITL_KAFKA_REPLICATION_FACTOR"] == str(k8s.REPLICAS)
    assert config["AITL_KAFKA_DEFAULT_PARTITIONS"] == str(k8s.PARTITIONS)


def _allowed(user: dict[str, Any], kind: str, name: str, operation: str) -> bool:
    """Whether a Strimzi simple-authorization user may do ``operation`` on a resource."""
    for acl in user["spec"]["authorization"]["acls"]:
        res = acl["resource"]
        if res["type"] != kind or operation not in acl["operations"]:
            continue
        if kind == "cluster":
            return True
        pattern = res.get("patternType", "literal")
        if res["name"] == name or (pattern == "prefix" and name.startswith(res["name"])):
            return True
    return False


# What each service's pods do on the catalog's topics; nothing else is allowed.
SERVICE_TOPICS = {
    "aitl-gateway": {"Write": {"interactions", "suggestions", "annotations.*"}},
    "aitl-processors": {
        "Read": {"interactions", "suggestions", "annotations.*", "knowledge", "shards.sealed"},
        "Write": {"judge.verdicts", "shards.sealed", "dlq"},
    },
    "aitl-trainers": {"Read": {"shards.sealed", "models"}, "Write": {"models"}},
    "aitl-serving": {"Read": {"models", "knowledge"}, "Write": {"suggestions"}},
    "aitl-knowledge": {"Write": {"knowledge"}},
}


def test_each_service_reads_and_writes_only_its_own_topics() -> None:
    users = {u["metadata"]["name"]: u for u in of_kind("KafkaUser")}
    assert set(users) == set(SERVICE_TOPICS)
    prefix = of_kind("ConfigMap")[0]["data"]["AITL_KAFKA_TOPIC_PREFIX"]
    for name, user in users.items():
        for spec in CATALOG:
            topic = prefix + spec.suffix
            pattern = "annotations.*" if spec.suffix.startswith("annotations.") else spec.suffix
            for op in ("Read", "Write"):
                expected = pattern in SERVICE_TOPICS[name].get(op, set())
                assert _allowed(user, "topic", topic, op) is expected, (name, op, topic)
            assert _allowed(user, "topic", topic, "Describe"), (name, topic)  # start checks
            assert not _allowed(user, "topic", topic, "Create"), (name, topic)  # Strimzi's
    processors = users["aitl-processors"]
    changelog = f"{prefix}processors-bundles-changelog"
    assert all(_allowed(processors, "topic", changelog, op) for op in ("Create", "Write"))
    assert _allowed(processors, "group", f"{prefix}processors", "Read")
    assert _allowed(users["aitl-serving"], "group", f"{prefix}serving-indexer-1a2b", "Read")
    assert _allowed(users["aitl-trainers"], "group", "aitl-trainers", "Read")
    assert not _allowed(users["aitl-gateway"], "topic", f"{prefix}models", "Write")


def _module_defines(module: str, name: str) -> bool:
    path = ROOT / Path(*module.split(".")).with_suffix(".py")
    if not path.is_file():
        return False
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef) and node.name == name:
            return True
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            return True
    return False


def serve_config() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(of_kind("RayService")[0]["spec"]["serveConfigV2"])
    return config


def test_rayservice_imports_an_application_builder_that_exists() -> None:
    for application in serve_config()["applications"]:
        module, _, attr = application["import_path"].partition(":")
        assert _module_defines(module, attr), (
            f"serveConfigV2 imports {application['import_path']}, which does not exist"
        )


def test_rayservice_runs_the_locked_ray() -> None:
    service = of_kind("RayService")[0]
    assert [a["import_path"] for a in serve_config()["applications"]] == ["serving.app:app_builder"]
    lock = (ROOT / "uv.lock").read_text()
    ray_version = re.search(r'name = "ray"\nversion = "([^"]+)"', lock)
    assert ray_version is not None
    cluster = service["spec"]["rayClusterConfig"]
    assert cluster["rayVersion"] == ray_version.group(1)
    for group in cluster["workerGroupSpecs"]:
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    head_ports = {
        p["containerPort"]
        for c in cluster["headGroupSpec"]["template"]["spec"]["containers"]
        for p in c["ports"]
    }
    assert serve_config()["http_options"]["port"] in head_ports


def test_cronjobs_do_not_overlap_and_the_generator_gets_a_gpu() -> None:
    for job in of_kind("CronJob"):
        assert job["spec"]["concurrencyPolicy"] == "Forbid"
        assert job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    generator = next(j for j in of_kind("CronJob") if j["metadata"]["name"].endswith("generator"))
    container = generator["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_secrets_the_manifests_read_are_documented() -> None:
    docs = (ROOT / "docs" / "operations.md").read_text()
    names = set()
    for _, doc in manifests():
        names.update(re.findall(r"'secretName': '([^']+)'", str(doc)))
        names.update(re.findall(r"'secretKeyRef': \{'name': '([^']+)'", str(doc)))
    assert names
    for name in names:
        assert f" {name}" in docs or f'"{name}"' in docs or f"`{name}`" in docs, name


def test_trainers_and_serving_share_the_lifecycle_key_and_nothing_else_has_it() -> None:
    """Trainers sign lifecycle events and serving verifies them: both read the one Secret;
    the gateway and the processors, which never write the models topic, do not get it."""
    for owner, _, container in aitl_containers():
        refs = {
            e["name"]: e.get("valueFrom", {}).get("secretKeyRef", {}).get("name")
            for e in container.get("env", [])
        }
        if owner.startswith(("CronJob/", "RayService/")):
            assert refs.get("AITL_LIFECYCLE_KEY") == "aitl-lifecycle-key", owner
        else:
            assert "AITL_LIFECYCLE_KEY" not in refs, owner
