"""Static checks of the Helm chart in deploy/k8s/charts/recsys, as strict as possible without a cluster.

Every values file under the chart's ci/ folder is linted (`helm lint --strict`), rendered (`helm template
--api-versions ray.io/v1`) and each object is validated against the Kubernetes OpenAPI schemas of two minor
versions (kubernetes-validate, strict: unknown fields are errors) or, for RayJob/RayCluster, against the
KubeRay CRD schemas. Then the render is checked for consistency: selectors, probe ports, security contexts,
resources, labels, NetworkPolicy reachability and the environment contract of the services.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from .helpers import (
    BAD_VALUES,
    CHART_DIR,
    DOCKER_DIR,
    REPO_ROOT,
    Render,
    Tools,
    helm_template,
    pod_templates,
    values_comments,
)

RAY_KINDS = {"RayJob", "RayCluster"}
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", *RAY_KINDS}
STAGES = {"gateway": 50051, "candidate": 50052, "ranking": 50053, "rerank": 50054}
STANDARD_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/managed-by",
    "helm.sh/chart",
)
EXPECTED_CI_FILES = {"default-values.yaml", "production-values.yaml", "minimal-values.yaml"}


# ----------------------------------------------------------------------------------------------- helpers


def all_pods(render: Render) -> Iterator[tuple[str, dict[str, Any]]]:
    for obj in render.objects:
        for where, tpl in pod_templates(obj):
            yield f"{obj['kind']}/{obj['metadata']['name']}[{where}]", tpl


def containers(pod_spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod_spec.get("initContainers", []), *pod_spec.get("containers", [])]


def all_containers(render: Render) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    for where, tpl in all_pods(render):
        for c in containers(tpl["spec"]):
            yield f"{where}/{c['name']}", c, tpl["spec"]


def selector_matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A metav1.LabelSelector (matchLabels + matchExpressions) against a label set."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def pods_selected(render: Render, selector: dict[str, Any], kinds: set[str] = WORKLOAD_KINDS) -> list[str]:
    return [
        where
        for obj in render.objects
        if obj["kind"] in kinds
        for where, tpl in pod_templates(obj)
        if selector_matches(selector, tpl["metadata"].get("labels", {}))
    ]


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def component(obj: dict[str, Any]) -> str:
    return obj["metadata"]["labels"]["app.kubernetes.io/component"]


def values_default() -> dict[str, Any]:
    return yaml.safe_load((CHART_DIR / "values.yaml").read_text())


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def merged_values(values_file: Path) -> dict[str, Any]:
    return deep_merge(values_default(), yaml.safe_load(values_file.read_text()) or {})


# ------------------------------------------------------------------------------------- lint and render


def test_ci_values_files_present() -> None:
    present = {p.name for p in (CHART_DIR / "ci").glob("*.yaml")}
    assert present >= EXPECTED_CI_FILES


def test_helm_lint_strict(k8s_tools: Tools, values_name: str) -> None:
    proc = k8s_tools.run_helm("lint", "--strict", CHART_DIR, "-f", CHART_DIR / "ci" / values_name)
    assert "0 chart(s) failed" in proc.stdout
    assert "[WARNING]" not in proc.stdout and "[ERROR]" not in proc.stdout


def test_render_objects_validate_against_kubernetes(render: Render, kube_version: str) -> None:
    errors = []
    for obj in render.objects:
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        try:
            kubernetes_validate.validate(obj, kube_version, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            # kubernetes-validate only warns about unknown kinds; only the KubeRay kinds may be unknown here.
            if not (obj["kind"] in RAY_KINDS and obj["apiVersion"] == "ray.io/v1"):
                errors.append(f"{name}: {obj['apiVersion']} {obj['kind']} is not a Kubernetes {kube_version} kind")
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{name}: {exc.message} at {'/'.join(map(str, exc.path))}")
    assert not errors, "\n".join(errors)


def test_kuberay_objects_validate_against_crds(
    render: Render, kuberay_schemas: dict[str, dict[str, Any]], kube_version: str
) -> None:
    ray_objects = [o for o in render.objects if o["kind"] in RAY_KINDS]
    values = merged_values(render.values_file)
    if values["training"]["enabled"]:
        assert ray_objects, "training is enabled but no RayJob/RayCluster was rendered"
    errors = []
    for obj in ray_objects:
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        assert obj["apiVersion"] == "ray.io/v1"
        for err in jsonschema.Draft7Validator(kuberay_schemas[obj["kind"]]).iter_errors(obj):
            errors.append(f"{name}: {err.message} at {'/'.join(map(str, err.absolute_path))}")
        # The CRD leaves metadata and the pod templates' metadata loose: check them with Kubernetes' own
        # schemas (ObjectMeta via a ConfigMap, pod templates as PodTemplate objects).
        probe = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": obj["metadata"]}
        try:
            kubernetes_validate.validate(probe, kube_version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{name} metadata: {exc.message}")
        for where, tpl in pod_templates(obj):
            pod_template = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "x"}, "template": tpl}
            try:
                kubernetes_validate.validate(pod_template, kube_version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                errors.append(f"{name}[{where}]: {exc.message} at {'/'.join(map(str, exc.path))}")
    assert not errors, "\n".join(errors)


def test_kuberay_jobs_and_versions(renders: dict[str, Render]) -> None:
    render = renders["production-values.yaml"]
    values = merged_values(render.values_file)
    jobs = {o["metadata"]["labels"]["recsys/training-job"]: o for o in render.of_kind("RayJob")}
    assert set(jobs) == {"prepare", "train", "batch"}
    assert jobs["prepare"]["spec"]["entrypoint"].startswith("python -m training.prepare ")
    train = jobs["train"]["spec"]["entrypoint"]
    assert train.startswith("python -m training.pipeline --feature-repo /app/features ")
    assert "--bundle-dir /var/lib/recsys/bundles" in train
    assert "--workers 4" in train and train.endswith(" '--ranker' 'wide_deep'")
    batch = jobs["batch"]["spec"]["entrypoint"]
    assert batch.startswith("python -m training.batch_recommend --bundle-dir /var/lib/recsys/bundles ")
    assert "--feature-repo /app/features" in batch and "--k 300" in batch
    assert all(job["spec"]["suspend"] is True for job in jobs.values())
    assert len(render.of_kind("RayCluster")) == 1
    # The Ray version of the clusters = the training image's base = ray in requirements.lock.
    ray_version = values["training"]["rayVersion"]
    base = re.search(r"^ARG RAY_IMAGE=rayproject/ray:(\S+)$", (DOCKER_DIR / "training.Dockerfile").read_text(), re.M)
    assert base and base.group(1).startswith(f"{ray_version}-py311"), "training image and rayVersion differ"
    lock = REPO_ROOT / "requirements.lock"
    if lock.exists():
        pinned = re.search(r"^ray==(\S+)$", lock.read_text(), re.M)
        assert pinned and pinned.group(1) == ray_version, "requirements.lock pins another ray version"
    for obj in [*render.of_kind("RayJob"), *render.of_kind("RayCluster")]:
        cluster = obj["spec"]["rayClusterSpec"] if obj["kind"] == "RayJob" else obj["spec"]
        assert cluster["rayVersion"] == ray_version
        assert cluster["headGroupSpec"]["rayStartParams"]["dashboard-host"] == "0.0.0.0"
        head = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]
        assert {"name": "dashboard", "containerPort": 8265, "protocol": "TCP"} in head["ports"]


def test_kuberay_templates_need_the_api(k8s_tools: Tools) -> None:
    """Without ray.io/v1 (no KubeRay in the cluster) the chart still installs, minus the RayJobs."""
    proc = k8s_tools.run_helm("template", "rel", CHART_DIR, "-f", CHART_DIR / "ci" / "production-values.yaml")
    kinds = {d["kind"] for d in yaml.safe_load_all(proc.stdout) if d}
    assert not kinds & RAY_KINDS
    assert "Deployment" in kinds


# ------------------------------------------------------------------------------------------ consistency


def test_selectors_match_pod_templates(render: Render) -> None:
    errors = []
    deployments = {o["metadata"]["name"]: o for o in render.of_kind("Deployment")}
    for obj in render.objects:
        kind, name = obj["kind"], obj["metadata"]["name"]
        spec = obj.get("spec", {})
        if kind in {"Deployment", "StatefulSet"}:
            if not selector_matches(spec["selector"], spec["template"]["metadata"]["labels"]):
                errors.append(f"{kind}/{name}: selector does not match its own pod template")
        elif kind == "Service":
            if not pods_selected(render, {"matchLabels": spec["selector"]}, {"Deployment", "StatefulSet"}):
                errors.append(f"Service/{name}: selector matches no Deployment/StatefulSet pods")
        elif kind == "PodDisruptionBudget":
            if not pods_selected(render, spec["selector"], {"Deployment", "StatefulSet"}):
                errors.append(f"PodDisruptionBudget/{name}: selector matches no pods")
        elif kind == "HorizontalPodAutoscaler":
            target = spec["scaleTargetRef"]
            if target["kind"] != "Deployment" or target["name"] not in deployments:
                errors.append(f"HorizontalPodAutoscaler/{name}: target {target} is not rendered")
            elif "replicas" in deployments[target["name"]]["spec"]:
                errors.append(f"Deployment/{target['name']}: sets replicas although an HPA scales it")
            else:
                dep = deployments[target["name"]]["spec"]
                if not selector_matches(dep["selector"], dep["template"]["metadata"]["labels"]):
                    errors.append(f"HorizontalPodAutoscaler/{name}: target selector matches no pods")
        elif kind == "NetworkPolicy":
            if not pods_selected(render, spec["podSelector"]):
                errors.append(f"NetworkPolicy/{name}: podSelector matches no pods")
            rules = [*spec.get("ingress", []), *spec.get("egress", [])]
            for peer in [p for r in rules for p in r.get("from", []) + r.get("to", [])]:
                same_namespace = "podSelector" in peer and "namespaceSelector" not in peer
                if same_namespace and not pods_selected(render, peer["podSelector"]):
                    errors.append(f"NetworkPolicy/{name}: peer {peer['podSelector']} matches no pods")
    assert not errors, "\n".join(errors)


def test_service_ports_target_container_ports(render: Render) -> None:
    errors = []
    for svc in render.of_kind("Service"):
        pods = [
            tpl
            for obj in render.objects
            if obj["kind"] in {"Deployment", "StatefulSet"}
            for _, tpl in pod_templates(obj)
            if selector_matches({"matchLabels": svc["spec"]["selector"]}, tpl["metadata"]["labels"])
        ]
        for port in svc["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            for tpl in pods:
                declared = [p for c in tpl["spec"]["containers"] for p in c.get("ports", [])]
                if not any(target in (p["containerPort"], p.get("name")) for p in declared):
                    errors.append(f"Service/{svc['metadata']['name']}: targetPort {target} is not declared")
    assert not errors, "\n".join(errors)


def test_probe_ports_are_declared(render: Render) -> None:
    errors = []
    probes_seen = 0
    for where, c, _ in all_containers(render):
        declared = {p["containerPort"] for p in c.get("ports", [])} | {
            p["name"] for p in c.get("ports", []) if "name" in p
        }
        for probe_name in ("startupProbe", "readinessProbe", "livenessProbe"):
            probe = c.get(probe_name)
            if not probe:
                continue
            probes_seen += 1
            for handler in ("grpc", "httpGet", "tcpSocket"):
                if handler in probe and probe[handler]["port"] not in declared:
                    errors.append(f"{where}.{probe_name}: port {probe[handler]['port']} is not a containerPort")
    assert probes_seen, "no probes rendered"
    assert not errors, "\n".join(errors)


def test_stages_use_native_grpc_probes(render: Render) -> None:
    """Native gRPC probes without TLS; with TLS (which they cannot speak) the exec health check and TCP."""
    tls = merged_values(render.values_file)["tls"]["enabled"]
    for dep in render.of_kind("Deployment"):
        if component(dep) not in STAGES:
            continue
        c = dep["spec"]["template"]["spec"]["containers"][0]
        port = next(p["containerPort"] for p in c["ports"] if p["name"] == "grpc")
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            where = f"{dep['metadata']['name']}.{probe}"
            if not tls:
                # service "" (the server's overall health) is the default when `service` is absent.
                assert c[probe]["grpc"] == {"port": port}, where
            elif probe == "livenessProbe":
                assert c[probe]["tcpSocket"] == {"port": "grpc"}, where
            else:
                assert_tls_health_exec(c[probe], port, dep["metadata"]["name"])


def assert_tls_health_exec(probe: dict[str, Any], port: int, server_name: str) -> None:
    """The exec probe runs the grpc.health.v1 check over TLS with the pod's certificate."""
    command = probe["exec"]["command"]
    assert command[:2] == ["python", "-c"] and "grpc" not in probe and "tcpSocket" not in probe
    script = command[2]
    compile(script, "<probe>", "exec")  # valid Python
    assert f'"127.0.0.1:{port}"' in script and f'"{server_name}"' in script
    assert all(name in script for name in ("RECSYS_TLS_CA_FILE", "RECSYS_TLS_KEY_FILE", "RECSYS_TLS_CERT_FILE"))
    assert "HealthCheckResponse.SERVING" in script
    assert probe["timeoutSeconds"] >= 5


def test_containers_are_hardened_and_sized(render: Render) -> None:
    errors = []
    for where, c, pod in all_containers(render):
        pod_sc, sc = pod.get("securityContext", {}), c.get("securityContext", {})

        def effective(key: str, sc: dict[str, Any] = sc, pod_sc: dict[str, Any] = pod_sc) -> Any:
            return sc.get(key, pod_sc.get(key))

        if effective("runAsNonRoot") is not True:
            errors.append(f"{where}: runAsNonRoot is not true")
        if effective("runAsUser") in (0, None):
            errors.append(f"{where}: no non-root runAsUser")
        if sc.get("allowPrivilegeEscalation") is not False:
            errors.append(f"{where}: allowPrivilegeEscalation is not false")
        if sc.get("readOnlyRootFilesystem") is not True:
            errors.append(f"{where}: readOnlyRootFilesystem is not true")
        if sc.get("privileged", False):
            errors.append(f"{where}: privileged")
        if "ALL" not in (sc.get("capabilities") or {}).get("drop", []) or (sc.get("capabilities") or {}).get("add"):
            errors.append(f"{where}: capabilities do not drop ALL (or add some)")
        if (effective("seccompProfile") or {}).get("type") != "RuntimeDefault":
            errors.append(f"{where}: seccompProfile is not RuntimeDefault")
        resources = c.get("resources") or {}
        if not {"cpu", "memory"} <= set(resources.get("requests", {})):
            errors.append(f"{where}: cpu/memory requests missing")
        if "memory" not in resources.get("limits", {}):
            errors.append(f"{where}: memory limit missing")
        emptydirs = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
        if not any(m["mountPath"] == "/tmp" and m["name"] in emptydirs for m in c.get("volumeMounts", [])):
            errors.append(f"{where}: no emptyDir mounted at /tmp")
        if pod.get("automountServiceAccountToken") is not False:
            errors.append(f"{where}: the pod mounts a service account token")
    assert not errors, "\n".join(errors)


def test_images_are_pinned(render: Render) -> None:
    for where, c, _ in all_containers(render):
        image = c["image"]
        assert "@sha256:" in image or re.search(r":[\w.-]+$", image.rsplit("/", 1)[-1]), f"{where}: {image}"
        assert not image.endswith(":latest"), f"{where}: {image}"


def test_standard_labels(render: Render) -> None:
    for obj in render.objects:
        labels = obj["metadata"].get("labels", {})
        missing = [k for k in STANDARD_LABELS if not labels.get(k)]
        assert not missing, f"{obj['kind']}/{obj['metadata']['name']} lacks {missing}"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["app.kubernetes.io/part-of"] == "recsys"
    for where, tpl in all_pods(render):
        labels = tpl["metadata"].get("labels", {})
        missing = [k for k in STANDARD_LABELS if not labels.get(k)]
        assert not missing, f"{where} pod template lacks {missing}"


def test_no_plaintext_secrets(render: Render) -> None:
    assert not render.of_kind("Secret"), "the chart must reference existing Secrets, never create them"
    sensitive = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY|AUTH", re.I)
    for where, c, _ in all_containers(render):
        for env in c.get("env", []):
            if sensitive.search(env["name"]):
                assert "secretKeyRef" in env.get("valueFrom", {}), f"{where}: {env['name']} is not from a Secret"
            if "value" in env:
                assert not re.search(r"://[^/@\s]+:[^/@\s]+@", env["value"]), f"{where}: credentials in a URL"
    for cm in render.of_kind("ConfigMap"):
        for text in cm.get("data", {}).values():
            for match in re.finditer(r"(?i)password\s*[:=]\s*([^,\s\"]+)", text):
                assert match.group(1).startswith("${"), f"ConfigMap/{cm['metadata']['name']}: plaintext password"


def test_network_policies(render: Render) -> None:
    """Only the gateway is reachable from outside the release; stages only from the gateway."""
    values = merged_values(render.values_file)
    policies = render.of_kind("NetworkPolicy")
    if not values["networkPolicy"]["enabled"]:
        assert not policies
        return
    by_component = {component(p): p for p in policies}
    gateway_pods = {"matchLabels": render.get("Deployment", "rel-recsys-gateway")["spec"]["selector"]["matchLabels"]}
    for stage in ("gateway", "candidate", "ranking", "rerank"):
        assert stage in by_component, f"no NetworkPolicy for {stage}"
    for comp, policy in by_component.items():
        spec = policy["spec"]
        assert "Ingress" in spec["policyTypes"], f"{comp}: ingress is not restricted"
        for rule in spec.get("ingress", []):
            peers = rule.get("from")
            if comp == "gateway":
                continue
            assert peers, f"{comp}: an ingress rule admits every source"
            ports = {p["port"] for p in rule.get("ports", [])}
            for peer in peers:
                if comp in {"triton", *STAGES} and ports == {"metrics"}:
                    continue  # scrapers from networkPolicy.metricsFrom
                assert set(peer) == {"podSelector"}, f"{comp}: ingress from outside the namespace: {peer}"
                labels = peer["podSelector"].get("matchLabels", {})
                assert labels.get("app.kubernetes.io/instance") == "rel", f"{comp}: peer outside the release"
        if comp in STAGES:
            # The metrics port admits networkPolicy.metricsFrom only, and only when metrics are on.
            scrape = {"from": values["networkPolicy"]["metricsFrom"], "ports": [{"port": "metrics", "protocol": "TCP"}]}
            metrics_rules = [r for r in spec["ingress"] if r.get("ports") == scrape["ports"]]
            if values["metrics"]["enabled"] and values["networkPolicy"]["metricsFrom"]:
                assert metrics_rules == [scrape], f"{comp}: {metrics_rules}"
            else:
                assert not metrics_rules, f"{comp}: metrics port open without networkPolicy.metricsFrom"
        if comp in {"candidate", "ranking", "rerank"}:
            grpc_rules = [r for r in spec["ingress"] if r.get("ports") != [{"port": "metrics", "protocol": "TCP"}]]
            assert grpc_rules == [
                {"from": [{"podSelector": gateway_pods}], "ports": [{"port": "grpc", "protocol": "TCP"}]}
            ]
            assert "Egress" in spec["policyTypes"]
    # Egress of the stages: DNS, the databases, the collector, the other stages and Triton only.
    allowed = {53, 4317, 5432, 6379, 8001, *STAGES.values()}
    allowed |= {values["externalPostgresql"]["port"], values["externalRedis"]["port"]}
    for stage in STAGES:
        for rule in by_component[stage]["spec"]["egress"]:
            ports = {p["port"] for p in rule["ports"]}
            assert ports and ports <= allowed, f"{stage}: unexpected egress ports {ports}"


def test_service_environment_contract(render: Render) -> None:
    values = merged_values(render.values_file)
    services = {s["metadata"]["name"]: s for s in render.of_kind("Service")}
    for dep in render.of_kind("Deployment"):
        stage = component(dep)
        if stage not in STAGES:
            continue
        pod = dep["spec"]["template"]["spec"]
        c = pod["containers"][0]
        env = env_of(c)
        prefix = f"RECSYS_{stage.upper()}_"
        port = c["ports"][0]["containerPort"]
        assert c["command"] == ["python", "-m", f"services.{stage}"]
        assert env[prefix + "HOST"]["value"] == "0.0.0.0"
        assert env[prefix + "PORT"]["value"] == str(port) == str(values[stage]["port"])
        assert float(env[prefix + "GRACE_SECONDS"]["value"]) < pod["terminationGracePeriodSeconds"]
        assert env["RECSYS_LOG_JSON"]["value"] == "true"
        # Bundles: the shared claim, read-only, where RECSYS_BUNDLE_DIR points.
        mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
        bundle_mount = mounts[env["RECSYS_BUNDLE_DIR"]["value"]]
        assert bundle_mount["readOnly"] is True
        volume = next(v for v in pod["volumes"] if v["name"] == bundle_mount["name"])
        assert volume["persistentVolumeClaim"]["readOnly"] is True
        # feature_store.yaml from the ConfigMap over the image's copy.
        fs = mounts[env["RECSYS_FEATURE_REPO"]["value"] + "/feature_store.yaml"]
        assert fs["subPath"] == "feature_store.yaml"
        assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"]["name"]
        otel = env["OTEL_TRACES_EXPORTER"]["value"]
        if values["otelCollector"]["enabled"]:
            assert otel == "otlp"
            host, _, otlp_port = env["OTEL_EXPORTER_OTLP_ENDPOINT"]["value"].removeprefix("http://").partition(":")
            assert otlp_port == "4317" and any(p["port"] == 4317 for p in services[host]["spec"]["ports"])
            assert env["OTEL_SERVICE_NAME"]["value"] == f"recsys-{stage}"
        if stage == "gateway":
            for target in ("candidate", "ranking", "rerank"):
                host, _, target_port = env[f"RECSYS_GATEWAY_{target.upper()}_ADDRESS"]["value"].partition(":")
                assert any(p["port"] == int(target_port) for p in services[host]["spec"]["ports"]), target
            if values["gateway"]["eventLog"]["enabled"]:
                dsn = env["RECSYS_GATEWAY_EVENT_LOG_DSN"]["value"]
                assert re.match(r"^postgresql://[^:@/]+@[^/]+/\w+\?sslmode=[\w-]+$", dsn), dsn
        if stage == "ranking":
            assert env["RECSYS_RANKING_BACKEND"]["value"] == values["ranking"]["backend"]
            if values["ranking"]["backend"] == "triton" and values["triton"]["enabled"]:
                host, _, triton_port = env["RECSYS_RANKING_TRITON_URL"]["value"].partition(":")
                assert triton_port == "8001" and any(p["port"] == 8001 for p in services[host]["spec"]["ports"])


def test_triton_on_gpu_nodes(renders: dict[str, Render]) -> None:
    render = renders["production-values.yaml"]
    dep = render.get("Deployment", "rel-recsys-triton")
    pod = dep["spec"]["template"]["spec"]
    triton = pod["containers"][0]
    assert triton["image"] == "nvcr.io/nvidia/tritonserver:24.10-py3"
    assert triton["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["nodeSelector"] and any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
    ports = {p["name"]: p["containerPort"] for p in triton["ports"]}
    assert ports == {"http": 8000, "grpc": 8001, "metrics": 8002}
    assert triton["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert triton["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert "--model-repository=/models" in triton["args"]
    sync = pod["initContainers"][0]
    assert sync["image"].startswith("amazon/aws-cli:")
    assert env_of(sync)["MODEL_REPOSITORY_URI"]["value"].startswith("s3://")


def test_triton_s3_credentials_come_from_a_secret(k8s_tools: Tools) -> None:
    objects = helm_template(
        k8s_tools,
        "-f", CHART_DIR / "ci" / "default-values.yaml",
        "--set", "triton.enabled=true,ranking.backend=triton,triton.modelRepository.source=s3",
        "--set", "triton.modelRepository.s3.uri=s3://bucket/triton",
        "--set", "triton.modelRepository.s3.endpointUrl=https://minio.storage:9000",
        "--set", "triton.modelRepository.s3.existingSecret=minio-credentials",
    )  # fmt: skip
    dep = next(o for o in objects if o["kind"] == "Deployment" and component(o) == "triton")
    env = env_of(dep["spec"]["template"]["spec"]["initContainers"][0])
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] == "minio-credentials"
    assert env["AWS_ENDPOINT_URL_S3"]["value"] == "https://minio.storage:9000"


def test_triton_models_from_the_bundles_claim_by_default(k8s_tools: Tools) -> None:
    objects = helm_template(k8s_tools, "-f", CHART_DIR / "ci" / "default-values.yaml", "--set", "triton.enabled=true")
    dep = next(o for o in objects if o["kind"] == "Deployment" and component(o) == "triton")
    pod = dep["spec"]["template"]["spec"]
    models = next(v for v in pod["volumes"] if v["name"] == "models")
    assert models["persistentVolumeClaim"] == {"claimName": "rel-recsys-bundles", "readOnly": True}
    assert "initContainers" not in pod


def test_bundles_claim_shared_by_training_and_services(renders: dict[str, Render]) -> None:
    render = renders["default-values.yaml"]
    claim = render.get("PersistentVolumeClaim", "rel-recsys-bundles")
    assert "ReadWriteMany" in claim["spec"]["accessModes"]
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    for job in render.of_kind("RayJob"):
        for where, tpl in pod_templates(job):
            if where == "submitter":
                continue
            spec = tpl["spec"]
            vol = next(v for v in spec["volumes"] if v["name"] == "bundles")
            assert vol["persistentVolumeClaim"]["claimName"] == "rel-recsys-bundles"
            mount = next(m for m in spec["containers"][0]["volumeMounts"] if m["name"] == "bundles")
            assert mount["mountPath"] == "/var/lib/recsys/bundles" and not mount.get("readOnly")


def test_feast_objects(renders: dict[str, Render]) -> None:
    render = renders["default-values.yaml"]
    config = yaml.safe_load(render.get("ConfigMap", "rel-recsys-feast")["data"]["feature_store.yaml"])
    assert config["registry"]["registry_type"] == "sql"
    assert config["registry"]["path"].startswith("postgresql+psycopg://recsys@rel-recsys-postgresql:5432/")
    assert config["online_store"]["type"] == "redis"
    assert config["online_store"]["connection_string"] == "rel-recsys-redis:6379,password=${REDIS_PASSWORD}"
    apply = render.get("Job", "rel-recsys-feast-apply")
    assert apply["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    assert apply["spec"]["template"]["spec"]["containers"][0]["command"] == ["feast", "apply"]
    cron = render.get("CronJob", "rel-recsys-feast-materialize")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    command = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert "feast materialize-incremental" in command[-1]


def test_feast_postgres_offline_store(k8s_tools: Tools) -> None:
    objects = helm_template(
        k8s_tools, "-f", CHART_DIR / "ci" / "production-values.yaml", "--set", "feast.offlineStore=postgres"
    )
    cm = next(o for o in objects if o["kind"] == "ConfigMap" and component(o) == "feast")
    config = yaml.safe_load(cm["data"]["feature_store.yaml"])
    assert config["offline_store"]["type"] == "postgres"
    assert config["offline_store"]["password"] == "${PGPASSWORD}"
    assert config["offline_store"]["sslmode"] == "verify-full"


# ------------------------------------------------------------------------------------- values and schema


#: Schema nodes that are free-form on purpose: the settings of an OpenTelemetry exporter belong to the
#: collector (hundreds of exporters, each with its own keys); the collector validates them at start-up.
FREE_FORM_SCHEMA_NODES = {"/properties/otelCollector/properties/exporters/additionalProperties"}


def test_values_schema_rejects_unknown_keys_everywhere() -> None:
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    loose = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            types = node.get("type")
            is_object = types == "object" or (isinstance(types, list) and "object" in types)
            if is_object and "additionalProperties" not in node and "$ref" not in node:
                loose.append(path or "/")
            if node.get("additionalProperties") is True:
                loose.append(path or "/")
            for key, value in node.items():
                walk(value, f"{path}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{path}/{i}")

    walk(schema, "")
    loose = [path for path in loose if path not in FREE_FORM_SCHEMA_NODES]
    assert not loose, f"objects accepting unknown keys: {loose}"
    assert schema["additionalProperties"] is False


def test_values_files_validate_against_schema() -> None:
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    validator = jsonschema.Draft7Validator(schema)
    for values_file in [CHART_DIR / "values.yaml", *sorted((CHART_DIR / "ci").glob("*.yaml"))]:
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(
            merged_values(values_file))]  # fmt: skip
        assert not errors, f"{values_file.name}: {errors}"


def test_values_documented_key_by_key() -> None:
    """Every leaf key of values.yaml has a helm-docs `# --` comment right above it."""
    documented = set(values_comments((CHART_DIR / "values.yaml").read_text()))
    values = values_default()

    def leaves(node: dict[str, Any], prefix: str) -> Iterator[str]:
        for key, value in node.items():
            path = f"{prefix}{key}"
            if isinstance(value, dict) and value and path not in documented:
                yield from leaves(value, path + ".")
            else:
                yield path

    undocumented = [p for p in leaves(values, "") if p not in documented]
    assert not undocumented, f"values without a `# --` comment: {undocumented}"


def test_components_share_one_shape() -> None:
    values = values_default()
    shape = {
        "enabled",
        "image",
        "replicas",
        "podSecurity",
        "resources",
        "nodeSelector",
        "tolerations",
        "affinity",
        "podAnnotations",
        "env",
        "autoscaling",
        "pdb",
    }
    components = ["gateway", "candidate", "ranking", "rerank", "triton", "otelCollector"]
    for name in components:
        assert shape <= set(values[name]), f"{name} lacks {shape - set(values[name])}"
        for sub in ("image", "autoscaling", "pdb", "podSecurity"):
            assert set(values[name][sub]) == set(values["gateway"][sub]), f"{name}.{sub}"
    for name in ("postgresql", "redis", "feast"):
        common = shape - {"replicas", "autoscaling", "pdb", "enabled"}
        assert common <= set(values[name]), f"{name} lacks {common - set(values[name])}"


def test_bad_values_file_is_rejected(k8s_tools: Tools) -> None:
    bad = yaml.safe_load(BAD_VALUES.read_text())
    assert "gatway" in bad and bad["gateway"]["replicas"] == "three"
    for command in (["lint", "--strict", CHART_DIR], ["template", "rel", CHART_DIR]):
        proc = k8s_tools.run_helm(*command, "-f", BAD_VALUES, check=False)
        output = proc.stdout + proc.stderr
        assert proc.returncode != 0, f"helm {command[0]} accepted {BAD_VALUES.name}"
        assert "values don't meet the specifications of the schema" in output, output
        assert "gatway" in output and "replicas" in output, output


@pytest.mark.parametrize(
    "override",
    [
        "gateway.image.tag=latest",
        "ranking.backend=gpu",
        "gateway.resources.limit.cpu=1",
        "triton.tolerations[0].keyy=nvidia.com/gpu",
        "postgresql.auth.password=hunter2",
        "redis.auth.existingSecret=Not_A_Name",
        "gateway.autoscaling.minReplicas=0",
        "networkPolicy.gatewayFrom[0].podSelector.matchLabelz.app=x",
    ],
)
def test_schema_rejects_bad_overrides(k8s_tools: Tools, override: str) -> None:
    proc = k8s_tools.run_helm("template", "rel", CHART_DIR, "--set", override, check=False)
    assert proc.returncode != 0, f"--set {override} was accepted"
    assert "schema" in proc.stderr, proc.stderr


def test_template_guards(k8s_tools: Tools) -> None:
    """Combinations the schema cannot express fail at render time with a clear message."""
    cases = {
        "ranking.backend=triton": "ranking.backend=triton needs triton.enabled=true",
        "postgresql.enabled=false": "externalPostgresql.host is required",
        "gateway.autoscaling.enabled=true,gateway.autoscaling.minReplicas=5,gateway.autoscaling.maxReplicas=2": (
            "maxReplicas must be >= minReplicas"
        ),
    }
    for override, message in cases.items():
        proc = k8s_tools.run_helm("template", "rel", CHART_DIR, "--set", override, check=False)
        assert proc.returncode != 0 and message in proc.stderr, (override, proc.stderr)


def test_tools_versions(k8s_tools: Tools) -> None:
    assert k8s_tools.run_helm("version", "--short").stdout.startswith("v3.19.")
    kubectl = subprocess.run(
        [str(k8s_tools.kubectl), "version", "--client", "-o", "json"], capture_output=True, text=True, check=True
    )
    assert json.loads(kubectl.stdout)["clientVersion"]["minor"] == "34"


def test_kube_version_constraint(k8s_tools: Tools) -> None:
    """Chart.yaml requires Kubernetes >= 1.30 (native gRPC probes, the preStop sleep action)."""
    proc = k8s_tools.run_helm("template", "rel", CHART_DIR, "--kube-version", "1.29.0", check=False)
    assert proc.returncode != 0 and "kubeVersion" in proc.stderr, proc.stderr
    k8s_tools.run_helm("template", "rel", CHART_DIR, "--kube-version", "1.30.0")


def test_feast_apply_as_plain_job(k8s_tools: Tools) -> None:
    objects = helm_template(
        k8s_tools, "-f", CHART_DIR / "ci" / "default-values.yaml", "--set", "feast.apply.helmHook=false"
    )
    job = next(o for o in objects if o["kind"] == "Job")
    assert job["metadata"]["name"] == "rel-recsys-feast-apply-r1"
    assert "helm.sh/hook" not in job["metadata"].get("annotations", {})
