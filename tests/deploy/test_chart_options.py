"""The chart's optional service and training settings: TLS, the gateway token, metrics, rerank rules and the
KubeRay jobs (train through Feast on the worker group, batch recommendations), checked on renders of the ci/
values files and of targeted `--set` overrides."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from services.common.security import TlsSettings
from services.rerank.rules import Boost, BusinessRules, Exploration, Pin

from .helpers import CHART_DIR, Render, Tools, helm_template, pod_templates, values_comments
from .test_chart import STAGES, assert_tls_health_exec, component, env_of, merged_values

DEFAULT_VALUES = CHART_DIR / "ci" / "default-values.yaml"
PRODUCTION_VALUES = CHART_DIR / "ci" / "production-values.yaml"


def render_with(tools: Tools, values: Path, *overrides: str) -> list[dict[str, Any]]:
    args: list[str | Path] = ["-f", values]
    for override in overrides:
        args += ["--set", override]
    return helm_template(tools, *args)


def stage_deployments(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {component(o): o for o in objects if o["kind"] == "Deployment" and component(o) in STAGES}


def validate_k8s(objects: list[dict[str, Any]]) -> None:
    for obj in objects:
        if obj["kind"] in {"RayJob", "RayCluster"}:
            continue
        kubernetes_validate.validate(obj, "1.30.0", strict=True)


def ray_node_pods(objects: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(where, pod spec) of the Ray heads and workers (not the submitters) of every RayJob/RayCluster."""
    return [
        (f"{o['metadata']['name']}[{where}]", tpl["spec"])
        for o in objects
        if o["kind"] in {"RayJob", "RayCluster"}
        for where, tpl in pod_templates(o)
        if where != "submitter"
    ]


# ----------------------------------------------------------------------------------------------------- TLS


@pytest.mark.parametrize("mtls", [False, True])
def test_tls_on_every_stage(k8s_tools: Tools, monkeypatch: pytest.MonkeyPatch, mtls: bool) -> None:
    objects = render_with(
        k8s_tools, DEFAULT_VALUES, f"tls.enabled=true,tls.existingSecret=stages-tls,tls.requireClientCert={mtls}"
    )
    validate_k8s(objects)
    deployments = stage_deployments(objects)
    assert set(deployments) == set(STAGES)
    for dep in deployments.values():
        pod = dep["spec"]["template"]["spec"]
        c = pod["containers"][0]
        env = env_of(c)
        volume = next(v for v in pod["volumes"] if v.get("secret", {}).get("secretName") == "stages-tls")
        assert {i["key"] for i in volume["secret"]["items"]} == {"tls.crt", "tls.key", "ca.crt"}
        mount = next(m for m in c["volumeMounts"] if m["name"] == volume["name"])
        assert mount["readOnly"] is True
        files = {mount["mountPath"] + "/" + i["path"]: i["key"] for i in volume["secret"]["items"]}
        assert files[env["RECSYS_TLS_CERT_FILE"]["value"]] == "tls.crt"
        assert files[env["RECSYS_TLS_KEY_FILE"]["value"]] == "tls.key"
        assert files[env["RECSYS_TLS_CA_FILE"]["value"]] == "ca.crt"
        assert env["RECSYS_TLS_REQUIRE_CLIENT_CERT"]["value"] == str(mtls).lower()
        # The services accept the rendered variables (TlsSettings validates them together).
        for name in ("CERT_FILE", "KEY_FILE", "CA_FILE", "REQUIRE_CLIENT_CERT"):
            monkeypatch.setenv(f"RECSYS_TLS_{name}", env[f"RECSYS_TLS_{name}"]["value"])
        tls = TlsSettings()
        assert tls.server_enabled and tls.require_client_cert is mtls
        # Native gRPC probes cannot do TLS.
        port = c["ports"][0]["containerPort"]
        assert_tls_health_exec(c["startupProbe"], port, dep["metadata"]["name"])
        assert_tls_health_exec(c["readinessProbe"], port, dep["metadata"]["name"])
        assert c["livenessProbe"]["tcpSocket"] == {"port": "grpc"}
    # The gateway dials the stages by their Service names, which the probe also verifies the certificate against.
    gateway_env = env_of(deployments["gateway"]["spec"]["template"]["spec"]["containers"][0])
    for target in ("candidate", "ranking", "rerank"):
        host = gateway_env[f"RECSYS_GATEWAY_{target.upper()}_ADDRESS"]["value"].partition(":")[0]
        assert host == deployments[target]["metadata"]["name"]


def test_tls_off_by_default(renders: dict[str, Render]) -> None:
    for render in renders.values():
        if merged_values(render.values_file)["tls"]["enabled"]:
            continue
        for stage, dep in stage_deployments(render.objects).items():
            pod = dep["spec"]["template"]["spec"]
            assert not [n for n in env_of(pod["containers"][0]) if n.startswith("RECSYS_TLS_")], stage
            assert not [v for v in pod["volumes"] if "secret" in v], stage


def test_tls_needs_a_secret(k8s_tools: Tools) -> None:
    proc = k8s_tools.run_helm("template", "rel", CHART_DIR, "--set", "tls.enabled=true", check=False)
    assert proc.returncode != 0 and "tls.existingSecret is required" in proc.stderr, proc.stderr


# ------------------------------------------------------------------------------------------ gateway token


def test_gateway_token_from_a_secret(k8s_tools: Tools, renders: dict[str, Render]) -> None:
    objects = render_with(
        k8s_tools, DEFAULT_VALUES, "gateway.auth.existingSecret=gw-token,gateway.auth.tokenKey=bearer"
    )
    validate_k8s(objects)
    for stage, dep in stage_deployments(objects).items():
        env = env_of(dep["spec"]["template"]["spec"]["containers"][0])
        if stage == "gateway":
            assert env["RECSYS_GATEWAY_AUTH_TOKEN"] == {
                "name": "RECSYS_GATEWAY_AUTH_TOKEN",
                "valueFrom": {"secretKeyRef": {"name": "gw-token", "key": "bearer"}},
            }
        else:
            assert "RECSYS_GATEWAY_AUTH_TOKEN" not in env
    default = stage_deployments(renders["default-values.yaml"].objects)["gateway"]
    assert "RECSYS_GATEWAY_AUTH_TOKEN" not in env_of(default["spec"]["template"]["spec"]["containers"][0])


# ---------------------------------------------------------------------------------------------- metrics


def test_metrics_endpoint_on_every_stage(renders: dict[str, Render]) -> None:
    for name, render in renders.items():
        values = merged_values(render.values_file)
        assert values["metrics"]["enabled"], name
        port = values["metrics"]["port"]
        for stage, dep in stage_deployments(render.objects).items():
            c = dep["spec"]["template"]["spec"]["containers"][0]
            env = env_of(c)
            assert {"name": "metrics", "containerPort": port, "protocol": "TCP"} in c["ports"]
            assert env["OTEL_METRICS_EXPORTER"]["value"] == "prometheus"
            assert env["RECSYS_METRICS_PORT"]["value"] == str(port)
            annotations = dep["spec"]["template"]["metadata"]["annotations"]
            assert annotations["prometheus.io/port"] == str(port)
            assert annotations["prometheus.io/path"] == "/metrics"
            # An explicit podAnnotations entry wins (production turns scraping off for candidate).
            expected = values[stage]["podAnnotations"].get("prometheus.io/scrape", "true")
            assert annotations["prometheus.io/scrape"] == expected, (name, stage)


def test_metrics_off(k8s_tools: Tools) -> None:
    objects = render_with(k8s_tools, PRODUCTION_VALUES, "metrics.enabled=false")
    validate_k8s(objects)
    for dep in stage_deployments(objects).values():
        c = dep["spec"]["template"]["spec"]["containers"][0]
        env = env_of(c)
        assert env["OTEL_METRICS_EXPORTER"]["value"] == "none" and "RECSYS_METRICS_PORT" not in env
        assert [p["name"] for p in c["ports"]] == ["grpc"]
        assert "prometheus.io/port" not in dep["spec"]["template"]["metadata"]["annotations"]
    for policy in (o for o in objects if o["kind"] == "NetworkPolicy" and component(o) in STAGES):
        assert all(r["ports"] != [{"port": "metrics", "protocol": "TCP"}] for r in policy["spec"]["ingress"])


def test_metrics_port_must_differ_from_grpc(k8s_tools: Tools) -> None:
    proc = k8s_tools.run_helm("template", "rel", CHART_DIR, "--set", "metrics.port=50052", check=False)
    assert proc.returncode != 0 and "metrics.port 50052 is the gRPC port of candidate" in proc.stderr, proc.stderr


# ------------------------------------------------------------------------------------------- rerank rules


def test_rerank_rules_configmap(renders: dict[str, Render]) -> None:
    render = renders["production-values.yaml"]
    values = merged_values(render.values_file)
    cm = render.get("ConfigMap", "rel-recsys-rerank-rules")
    rules = yaml.safe_load(cm["data"]["rules.yaml"])
    assert rules == values["rerank"]["rules"]
    BusinessRules.model_validate(rules)  # what the rerank stage does at start-up
    dep = render.get("Deployment", "rel-recsys-rerank")
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    path = Path(env_of(c)["RECSYS_RERANK_RULES_FILE"]["value"])
    mount = next(m for m in c["volumeMounts"] if m["mountPath"] == str(path.parent))
    assert mount["readOnly"] is True
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert volume["configMap"]["name"] == cm["metadata"]["name"] and path.name in cm["data"]
    assert "checksum/rerank-rules" in dep["spec"]["template"]["metadata"]["annotations"]
    # Only rerank gets them; without rules nothing is rendered.
    for other in ("gateway", "candidate", "ranking"):
        assert "RECSYS_RERANK_RULES_FILE" not in env_of(render.get("Deployment", f"rel-recsys-{other}")["spec"][
            "template"]["spec"]["containers"][0])  # fmt: skip
    default = renders["default-values.yaml"]
    assert not [o for o in default.of_kind("ConfigMap") if o["metadata"]["name"] == "rel-recsys-rerank-rules"]
    rerank = default.get("Deployment", "rel-recsys-rerank")["spec"]["template"]["spec"]["containers"][0]
    assert "RECSYS_RERANK_RULES_FILE" not in env_of(rerank)


def test_rerank_rules_schema_mirrors_the_service() -> None:
    """values.schema.json's rules schema has exactly the fields of services/rerank/rules.py's models."""
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())["definitions"]["rerankRules"]
    assert set(schema["properties"]) == set(BusinessRules.model_fields)
    for key, model in (("boosts", Boost), ("pins", Pin)):
        assert set(schema["properties"][key]["items"]["properties"]) == set(model.model_fields), key
    assert set(schema["properties"]["exploration"]["properties"]) == set(Exploration.model_fields)


@pytest.mark.parametrize(
    "override",
    [
        "rerank.rules.deny=1",
        "rerank.rules.boosts[0].factor=0",
        "rerank.rules.boosts[0].factor=2",  # names neither item nor genre
        "rerank.rules.pins[0].item=1",  # no position
        "rerank.rules.exploration.share=0.9",
    ],
)
def test_schema_rejects_bad_rules(k8s_tools: Tools, override: str) -> None:
    proc = k8s_tools.run_helm("template", "rel", CHART_DIR, "--set", override, check=False)
    assert proc.returncode != 0 and "schema" in proc.stderr, (override, proc.stderr)


# ------------------------------------------------------------------------------------------ KubeRay jobs


def test_train_rayjob_entrypoint(k8s_tools: Tools, renders: dict[str, Render]) -> None:
    def train_entrypoint(objects: list[dict[str, Any]]) -> str:
        job = next(o for o in objects if o["kind"] == "RayJob" and o["metadata"]["name"] == "rel-recsys-train")
        return job["spec"]["entrypoint"]

    default = train_entrypoint(renders["default-values.yaml"].objects)
    assert default == (
        "python -m training.pipeline --feature-repo /app/features --bundle-dir /var/lib/recsys/bundles --workers 1"
    )
    # --workers follows the worker group unless set.
    assert train_entrypoint(render_with(k8s_tools, DEFAULT_VALUES, "training.workers.replicas=3")).endswith(
        "--workers 3"
    )
    objects = helm_template(
        k8s_tools, "-f", DEFAULT_VALUES, "--set", "training.jobs.train.workers=6",
        "--set-string", "training.jobs.train.args={--epochs,30}",
    )  # fmt: skip
    assert train_entrypoint(objects).endswith("--workers 6 '--epochs' '30'")


def test_ray_pods_read_features_through_feast(renders: dict[str, Render]) -> None:
    """Heads and workers mount the cluster's feature_store.yaml and get the env it and definitions.py need."""
    for name, render in renders.items():
        values = merged_values(render.values_file)
        pods = ray_node_pods(render.objects)
        if not values["training"]["enabled"]:
            assert not pods
            continue
        assert pods, name
        feast_apply = render.get("Job", "rel-recsys-feast-apply") if values["feast"]["apply"]["enabled"] else None
        schema = values["gateway"]["eventLog"]["schema"]
        for where, spec in pods:
            c = spec["containers"][0]
            env = env_of(c)
            repo = env["RECSYS_FEATURE_REPO"]["value"]
            mount = next(m for m in c["volumeMounts"] if m["mountPath"] == f"{repo}/feature_store.yaml")
            assert mount["subPath"] == "feature_store.yaml" and mount["readOnly"] is True, where
            volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
            assert volume["configMap"]["name"] == "rel-recsys-feast", where
            assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"]["name"], where  # the SQL registry
            redis_secret = values["redis"]["auth"]["existingSecret"] if values["redis"]["enabled"] else (
                values["externalRedis"]["existingSecret"])  # fmt: skip
            if redis_secret:
                assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == redis_secret, where
            assert env["RECSYS_GATEWAY_EVENT_LOG_SCHEMA"]["value"] == schema, where
            # Ray Train's storage (/app/var/ray_results) is shared by head and workers: a folder of the data claim.
            results = next(m for m in c["volumeMounts"] if m["mountPath"] == "/app/var/ray_results")
            assert results["subPath"] == "ray_results", where
            data = next(v for v in spec["volumes"] if v["name"] == results["name"])
            assert "persistentVolumeClaim" in data, where
            init = spec["initContainers"][0]
            assert init["command"] == ["mkdir", "-p", "/app/var/data/ray_results"], where
        for job in render.of_kind("RayJob"):
            if job["metadata"]["labels"]["recsys/training-job"] in {"train", "batch"}:
                assert "--feature-repo /app/features" in job["spec"]["entrypoint"]
        # One event log schema for the gateway, the Feast jobs and training.
        gateway = render.get("Deployment", "rel-recsys-gateway")["spec"]["template"]["spec"]["containers"][0]
        if values["gateway"]["eventLog"]["enabled"]:
            assert env_of(gateway)["RECSYS_GATEWAY_EVENT_LOG_SCHEMA"]["value"] == schema
        if feast_apply:
            apply_env = env_of(feast_apply["spec"]["template"]["spec"]["containers"][0])
            assert apply_env["RECSYS_GATEWAY_EVENT_LOG_SCHEMA"]["value"] == schema


def test_ray_head_takes_no_tasks(renders: dict[str, Render]) -> None:
    """Ray Train workers and Ray Data tasks must land on the worker group, not on the head running the driver."""
    for job in renders["default-values.yaml"].of_kind("RayJob"):
        assert job["spec"]["rayClusterSpec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"


def test_batch_rayjob(k8s_tools: Tools, kuberay_schemas: dict[str, dict[str, Any]]) -> None:
    objects = render_with(
        k8s_tools, DEFAULT_VALUES, "training.jobs.prepare.enabled=false,training.jobs.train.enabled=false"
    )
    jobs = [o for o in objects if o["kind"] == "RayJob"]
    assert [j["metadata"]["name"] for j in jobs] == ["rel-recsys-batch"]
    job = jobs[0]
    errors = [e.message for e in jsonschema.Draft7Validator(kuberay_schemas["RayJob"]).iter_errors(job)]
    assert not errors, errors
    for _, tpl in pod_templates(job):
        pod_template = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "x"}, "template": tpl}
        kubernetes_validate.validate(pod_template, "1.30.0", strict=True)
    spec = job["spec"]
    assert spec["suspend"] is True and spec["shutdownAfterJobFinishes"] is True
    assert spec["entrypoint"] == (
        "python -m training.batch_recommend --bundle-dir /var/lib/recsys/bundles --feature-repo /app/features --k 200"
    )
    assert job["metadata"]["labels"]["recsys/training-job"] == "batch"
    # The online store (Redis) is what it writes: its password reaches the driver on the head.
    head = spec["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert env_of(head)["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "recsys-redis"
    bundles = next(m for m in head["volumeMounts"] if m["name"] == "bundles")
    assert bundles["mountPath"] == "/var/lib/recsys/bundles"


# ----------------------------------------------------------------------------------------- values schema


def test_schema_descriptions_match_values_comments() -> None:
    """values.schema.json describes each key with the same text as its `# --` comment in values.yaml."""
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    mismatched = []
    for path, comment in values_comments((CHART_DIR / "values.yaml").read_text()).items():
        node: dict[str, Any] = schema
        for key in path.split("."):
            node = node["properties"][key]
        if node.get("description") != comment:
            mismatched.append(f"{path}: schema {node.get('description')!r} != values.yaml {comment!r}")
    assert not mismatched, "\n".join(mismatched)
