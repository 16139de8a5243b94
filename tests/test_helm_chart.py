"""The chart that installs plate-bot itself (helm-chart/), rendered and linted by a real Helm v4 engine.

No cluster: helm_python renders offline, kubernetes_validate checks every object against the
Kubernetes 1.30 OpenAPI schemas (strict: unknown fields are errors).
"""

from __future__ import annotations

import copy
import hashlib
import re
from pathlib import Path

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

CHART = Path(__file__).resolve().parents[1] / "helm-chart"
RELEASE = "plate-bot"
NAMESPACE = "plate-system"
KUBE_VERSION = "1.30"

SLACK_ENV = ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN")
WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection", "escalate", "bind", "impersonate"}
CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("keda.sh/v1alpha1", "ScaledObject")}

TWO_ENVIRONMENTS = {
    "incident_channel": "C0INCIDENTS",
    "environments": {
        "stg": {
            "aliases": ["staging"],
            "namespace": "plate-stg",
            "release": "plate-web",
            "chart": "/charts/plate-web",
            "values": ["/charts/plate-web/values-staging.yaml"],
            "approvals_required": 0,
        },
        "prod": {
            "aliases": ["production"],
            "kube_context": "plate-prod",
            "namespace": "plate-prod",
            "release": "plate-web",
            "chart": "/charts/plate-web",
            "values": ["/charts/plate-web/values-production.yaml"],
            "approvals_required": 1,
            "approvers": ["U0ALICE", "S0SRE"],
            "channels": ["C0DEPLOYS"],
            "approval_ttl": "15m",
            # Longer than the 960 s floor: the grace period must follow it.
            "helm_timeout": "25m",
        },
    },
}

FULL_VALUES = {
    "image": {"repository": "harbor.example.com/platform/plate-bot", "tag": "0.1.0", "pullPolicy": "Always"},
    "imagePullSecrets": [{"name": "harbor-pull"}],
    "slack": {"existingSecret": "plate-bot-slack-tokens"},
    "config": TWO_ENVIRONMENTS,
    "externalRedis": {"url": "rediss://:s3cret@redis.example.internal:6380/0"},
    "redis": {"enabled": False},
    "ingress": {
        "enabled": True,
        "className": "nginx",
        "annotations": {"cert-manager.io/cluster-issuer": "letsencrypt"},
        "hosts": [{"host": "plate-bot.example.com", "paths": [{"path": "/slack", "pathType": "Prefix"}]}],
        "tls": [{"secretName": "plate-bot-tls", "hosts": ["plate-bot.example.com"]}],
    },
    "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
    "keda": {
        "enabled": True,
        "minReplicaCount": 2,
        "maxReplicaCount": 8,
        "redisAddress": "redis.example.internal:6380",
        "enableTLS": True,
        "authenticationRef": "plate-redis-auth",
    },
    "networkPolicy": {
        "enabled": True,
        "serveFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}],
        "metricsFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
        "externalRedis": {"cidrs": ["10.20.0.0/16"], "port": 6380},
    },
    "kubeconfig": {"existingSecret": "plate-kubeconfig"},
    "podAnnotations": {"example.com/team": "platform"},
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ops", "effect": "NoSchedule"}],
    "affinity": {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "podAffinityTerm": {
                        "topologyKey": "kubernetes.io/hostname",
                        "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "plate-bot"}},
                    },
                }
            ]
        }
    },
}


# --------------------------------------------------------------------------------------------- helpers


def render(values: dict) -> list[dict]:
    with helm.Chart.load(CHART) as chart:
        files = chart.render(values, name=RELEASE, namespace=NAMESPACE)
    objects = []
    for path, text in sorted(files.items()):
        if not path.endswith((".yaml", ".yml")):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objects


def of_kind(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[dict], kind: str, name: str) -> dict:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def pod_specs(objects: list[dict]) -> list[tuple[str, dict]]:
    return [
        (o["metadata"]["name"], o["spec"]["template"]["spec"])
        for o in objects
        if o["kind"] in ("Deployment", "StatefulSet")
    ]


def duration_seconds(text: str) -> int:
    units = {"h": 3600, "m": 60, "s": 1}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([hms])", text))


def merged(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


DEFAULTS = yaml.safe_load((CHART / "values.yaml").read_text())


@pytest.fixture(scope="module")
def default_objects() -> list[dict]:
    return render({})


@pytest.fixture(scope="module")
def full_objects() -> list[dict]:
    return render(FULL_VALUES)


@pytest.fixture(scope="module", params=["default", "full"])
def rendered(request, default_objects, full_objects) -> tuple[str, list[dict], dict]:
    if request.param == "default":
        return request.param, default_objects, DEFAULTS
    return request.param, full_objects, merged(DEFAULTS, FULL_VALUES)


# ----------------------------------------------------------------------------------------- lint/schema


def test_chart_metadata():
    meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert meta["apiVersion"] == "v2"
    assert meta["name"] == "plate-bot"
    assert meta["version"] == "0.1.0"
    assert meta["appVersion"] == "0.1.0"


@pytest.mark.parametrize("values", [None, FULL_VALUES], ids=["default", "full"])
def test_lint_has_no_errors_or_warnings(values):
    result = helm.lint(CHART, values, namespace=NAMESPACE)
    assert result["errors"] == []
    # severity 1 = INFO (e.g. "icon is recommended"); 2 = WARNING, 3+ = ERROR.
    assert [m for m in result["messages"] if m["severity"] > 1] == []


def test_default_values_satisfy_schema():
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema(DEFAULTS)
        chart.validate_schema(merged(DEFAULTS, FULL_VALUES))


@pytest.mark.parametrize(
    ("override", "where"),
    [
        ({"serve": {"replicas": "two"}}, "/serve/replicas"),
        ({"worker": {"replicas": -1}}, "/worker/replicas"),
        ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
        ({"logLevel": "LOUD"}, "/logLevel"),
        (
            {
                "config": {
                    "environments": {
                        "prod": {
                            "namespace": "plate-prod",
                            "release": "plate-web",
                            "chart": "/c",
                            "helm_timeout": "ten minutes",
                        }
                    }
                }
            },
            "/config/environments/prod/helm_timeout",
        ),
        ({"config": {"environments": {"prod": {"release": "plate-web", "chart": "/c"}}}}, "/config/environments/prod"),
        ({"redis": {"image": {"tag": "latest"}}}, "/redis/image/tag"),
        ({"serviceMonitor": {"enabled": "yes"}}, "/serviceMonitor/enabled"),
        ({"replicaCount": 3}, "replicaCount"),
    ],
)
def test_schema_rejects_bad_values(override, where):
    values = merged(DEFAULTS, override)
    if "config" in override:
        values["config"] = override["config"]
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmValuesError) as err:
        chart.validate_schema(values)
    assert where in str(err.value)


def test_render_refuses_values_outside_the_schema():
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmValuesError, match="/serve/replicas"):
        chart.render({"serve": {"replicas": "two"}}, name=RELEASE, namespace=NAMESPACE)


# ---------------------------------------------------------------------------------------- kube schemas


def test_every_object_validates_against_kubernetes_schemas(rendered):
    _, objects, _ = rendered
    assert objects
    for obj in objects:
        if (obj["apiVersion"], obj["kind"]) in CRD_KINDS:
            continue
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)


def test_object_identities_are_unique(rendered):
    _, objects, _ = rendered
    keys = [(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in objects]
    assert len(keys) == len(set(keys))
    for obj in objects:
        assert len(obj["metadata"]["name"]) <= 63


def test_default_render_contents(default_objects):
    kinds = sorted({o["kind"] for o in default_objects})
    assert kinds == sorted(
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "ConfigMap",
            "Deployment",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "Role",
            "RoleBinding",
            "Secret",
            "Service",
            "ServiceAccount",
            "StatefulSet",
        ]
    )
    # Optional pieces are off by default.
    assert not of_kind(default_objects, "Ingress")
    assert not of_kind(default_objects, "ServiceMonitor")
    assert not of_kind(default_objects, "ScaledObject")
    deployments = {o["metadata"]["name"]: o for o in of_kind(default_objects, "Deployment")}
    assert set(deployments) == {f"{RELEASE}-serve", f"{RELEASE}-worker", f"{RELEASE}-watch"}
    for deployment in deployments.values():
        assert deployment["spec"]["replicas"] == 2


# ---------------------------------------------------------------------------------------- pod security


def test_every_container_is_locked_down(rendered):
    _, objects, _ = rendered
    specs = pod_specs(objects)
    assert specs
    for name, spec in specs:
        pod_sc = spec.get("securityContext", {})
        assert pod_sc.get("runAsNonRoot") is True, name
        assert pod_sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", name
        assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC"), name
        for container in spec["containers"] + spec.get("initContainers", []):
            sc = container["securityContext"]
            where = f"{name}/{container['name']}"
            assert sc["runAsNonRoot"] is True, where
            assert isinstance(sc["runAsUser"], int) and sc["runAsUser"] > 0, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc.get("privileged", False) is False, where
            assert sc["capabilities"]["drop"] == ["ALL"], where
            assert "add" not in sc["capabilities"], where
            assert sc["seccompProfile"]["type"] == "RuntimeDefault", where
            assert container["resources"]["requests"], where
            assert container["resources"]["limits"]["memory"], where
            assert ":" in container["image"] and not container["image"].endswith(":latest"), where


def test_plate_bot_pods_run_as_10001_with_tmp_and_config(rendered):
    _, objects, values = rendered
    for component in ("serve", "worker", "watch"):
        deployment = one(objects, "Deployment", f"{RELEASE}-{component}")
        spec = deployment["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        assert container["securityContext"]["runAsUser"] == 10001
        assert container["args"][0] == component
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
        config_mount = mounts["/etc/plate/environments.yaml"]
        assert volumes[config_mount["name"]]["configMap"]["name"] == f"{RELEASE}-config"
        env = {e["name"]: e for e in container["env"]}
        assert env["PLATE_CONFIG"]["value"] == "/etc/plate/environments.yaml"
        assert env["HELM_BIN"]["value"] == "/usr/local/bin/helm"
        assert env["LOG_LEVEL"]["value"] == values["logLevel"]
        assert "REDIS_URL" in env
        assert spec["serviceAccountName"] == RELEASE
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert re.fullmatch(r"[0-9a-f]{64}", annotations["checksum/config"])


def test_config_checksum_tracks_the_configmap():
    def checksum(values: dict) -> str:
        objects = render(values)
        return one(objects, "Deployment", f"{RELEASE}-worker")["spec"]["template"]["metadata"]["annotations"][
            "checksum/config"
        ]

    assert checksum({}) == checksum({})
    assert checksum({}) != checksum({"config": TWO_ENVIRONMENTS})


def test_configmap_holds_the_environments_file(full_objects):
    configmap = one(full_objects, "ConfigMap", f"{RELEASE}-config")
    assert yaml.safe_load(configmap["data"]["environments.yaml"]) == TWO_ENVIRONMENTS
    digest = hashlib.sha256(configmap["data"]["environments.yaml"].encode()).hexdigest()
    assert digest  # the file is plain YAML, not a template string
    assert "{{" not in configmap["data"]["environments.yaml"]


def test_probes_and_ports(rendered):
    _, objects, _ = rendered
    serve = one(objects, "Deployment", f"{RELEASE}-serve")["spec"]["template"]["spec"]["containers"][0]
    assert serve["args"] == ["serve", "--host", "0.0.0.0", "--port", "3000"]
    assert serve["ports"] == [{"name": "http", "containerPort": 3000, "protocol": "TCP"}]
    assert serve["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert serve["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    for component, port in (("worker", 9102), ("watch", 9103)):
        container = one(objects, "Deployment", f"{RELEASE}-{component}")["spec"]["template"]["spec"]["containers"][0]
        assert container["args"] == [component, "--metrics-port", str(port)]
        assert container["ports"] == [{"name": "metrics", "containerPort": port, "protocol": "TCP"}]
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    service = one(objects, "Service", f"{RELEASE}-serve")
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert ports["http"]["port"] == 80 and ports["http"]["targetPort"] == "http"
    assert ports["metrics"]["targetPort"] == "http"


def test_socket_mode_flag():
    objects = render({"serve": {"socketMode": True}})
    serve = one(objects, "Deployment", f"{RELEASE}-serve")["spec"]["template"]["spec"]["containers"][0]
    assert serve["args"][-1] == "--socket-mode"


def test_worker_grace_period_outlasts_the_longest_helm_timeout(rendered):
    _, objects, values = rendered
    timeouts = [duration_seconds(env.get("helm_timeout", "5m")) for env in values["config"]["environments"].values()]
    worker = one(objects, "Deployment", f"{RELEASE}-worker")
    grace = worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > max(timeouts, default=0)
    assert grace >= values["worker"]["terminationGracePeriodSeconds"]
    assert grace >= max(timeouts, default=0) + values["worker"]["terminationGracePeriodMarginSeconds"]


def test_grace_period_parses_compound_durations():
    config = copy.deepcopy(TWO_ENVIRONMENTS)
    config["environments"]["prod"]["helm_timeout"] = "1h2m3s"
    worker = one(render({"config": config}), "Deployment", f"{RELEASE}-worker")
    assert worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 3723 + 120


# --------------------------------------------------------------------------------------------- secrets


def test_slack_tokens_only_via_secret_key_ref(rendered):
    _, objects, values = rendered
    secret_name = values["slack"]["existingSecret"] or f"{RELEASE}-slack"
    for pod, spec in pod_specs(objects):
        for container in spec["containers"]:
            assert "envFrom" not in container
            env = {e["name"]: e for e in container.get("env", [])}
            if container["name"] == "redis":
                assert not set(SLACK_ENV) & set(env)
                continue
            for var in SLACK_ENV:
                assert "value" not in env[var], f"{pod}: {var} is a literal"
                ref = env[var]["valueFrom"]["secretKeyRef"]
                assert ref["name"] == secret_name
            assert env["SLACK_BOT_TOKEN"]["valueFrom"]["secretKeyRef"]["key"] == "slack-bot-token"
            assert env["SLACK_SIGNING_SECRET"]["valueFrom"]["secretKeyRef"]["key"] == "slack-signing-secret"
            assert env["SLACK_APP_TOKEN"]["valueFrom"]["secretKeyRef"]["key"] == "slack-app-token"
    # No token material in any ConfigMap.
    for configmap in of_kind(objects, "ConfigMap"):
        assert "xox" not in yaml.safe_dump(configmap)
    slack_secrets = [s for s in of_kind(objects, "Secret") if s["metadata"]["name"] == f"{RELEASE}-slack"]
    assert len(slack_secrets) == (0 if values["slack"]["existingSecret"] else 1)


def test_chart_created_slack_secret():
    objects = render({"slack": {"botToken": "xoxb-1", "signingSecret": "sig", "appToken": "xapp-1"}})
    secret = one(objects, "Secret", f"{RELEASE}-slack")
    assert set(secret["data"]) == {"slack-bot-token", "slack-signing-secret", "slack-app-token"}
    assert "xoxb-1" not in yaml.safe_dump(objects)  # base64 only


def test_external_redis_url_comes_from_a_secret(full_objects):
    assert not of_kind(full_objects, "StatefulSet")
    secret = one(full_objects, "Secret", f"{RELEASE}-redis-url")
    assert set(secret["data"]) == {"redis-url"}
    for _, spec in pod_specs(full_objects):
        env = {e["name"]: e for e in spec["containers"][0]["env"]}
        assert env["REDIS_URL"]["valueFrom"]["secretKeyRef"] == {"name": f"{RELEASE}-redis-url", "key": "redis-url"}
        assert env["KUBECONFIG"]["value"] == "/etc/plate/kube/config"


def test_external_redis_existing_secret():
    objects = render({"externalRedis": {"existingSecret": "redis-creds", "existingSecretKey": "url"}})
    assert not of_kind(objects, "StatefulSet")
    assert not [s for s in of_kind(objects, "Secret") if "redis" in s["metadata"]["name"]]
    for _, spec in pod_specs(objects):
        env = {e["name"]: e for e in spec["containers"][0]["env"]}
        assert env["REDIS_URL"]["valueFrom"]["secretKeyRef"] == {"name": "redis-creds", "key": "url"}
    for obj in objects:
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)


# ----------------------------------------------------------------------------------------------- redis


def test_bundled_redis(default_objects):
    redis = one(default_objects, "StatefulSet", f"{RELEASE}-redis")
    spec = redis["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert re.fullmatch(r"redis:7\.2\.\d+", container["image"])
    args = container["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--dir") + 1] == "/data"
    assert container["securityContext"]["runAsUser"] == 999
    assert spec["securityContext"]["fsGroup"] == 999
    assert "redis-cli" in container["livenessProbe"]["exec"]["command"]
    assert "ping" in container["livenessProbe"]["exec"]["command"]
    assert "redis-cli" in " ".join(container["readinessProbe"]["exec"]["command"])
    (claim,) = redis["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"]["resources"]["requests"]["storage"] == "2Gi"
    assert {"name": "data", "mountPath": "/data"} in container["volumeMounts"]
    assert redis["spec"]["serviceName"] == f"{RELEASE}-redis-headless"
    one(default_objects, "Service", f"{RELEASE}-redis")
    worker_env = {
        e["name"]: e
        for e in one(default_objects, "Deployment", f"{RELEASE}-worker")["spec"]["template"]["spec"]["containers"][0][
            "env"
        ]
    }
    assert worker_env["REDIS_URL"]["value"] == f"redis://{RELEASE}-redis:6379/0"


def test_redis_without_persistence_uses_empty_dir():
    redis = one(render({"redis": {"persistence": {"enabled": False}}}), "StatefulSet", f"{RELEASE}-redis")
    assert "volumeClaimTemplates" not in redis["spec"]
    volumes = {v["name"]: v for v in redis["spec"]["template"]["spec"]["volumes"]}
    assert "emptyDir" in volumes["data"]


# ------------------------------------------------------------------------------------------------ RBAC


def rbac_rules(objects: list[dict]) -> list[tuple[dict, dict]]:
    return [(o, rule) for o in objects if o["kind"] in ("Role", "ClusterRole") for rule in o["rules"]]


def test_roles_per_environment_namespace(rendered):
    name, objects, values = rendered
    namespaces = {env["namespace"] for env in values["config"]["environments"].values()}
    roles = {o["metadata"]["namespace"]: o for o in of_kind(objects, "Role") if o["metadata"]["name"] == RELEASE}
    assert set(roles) == namespaces
    assert len(namespaces) == (0 if name == "default" else 2)
    bindings = {
        o["metadata"]["namespace"]: o for o in of_kind(objects, "RoleBinding") if o["metadata"]["name"] == RELEASE
    }
    assert set(bindings) == namespaces
    for binding in bindings.values():
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": RELEASE}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": RELEASE, "namespace": NAMESPACE}]
    for role in roles.values():
        granted = {
            (group, resource): set(rule["verbs"])
            for rule in role["rules"]
            for group in rule["apiGroups"]
            for resource in rule["resources"]
        }
        # helm release storage + app chart objects (deploy/rollback).
        for resource in ("secrets", "configmaps", "services", "serviceaccounts"):
            assert {"get", "list", "create", "update", "patch", "delete"} <= granted[("", resource)]
        for key in (
            ("apps", "deployments"),
            ("networking.k8s.io", "ingresses"),
            ("autoscaling", "horizontalpodautoscalers"),
        ):
            assert {"get", "list", "create", "patch", "delete"} <= granted[key]
        # diagnose / status / harbor-verify
        assert granted[("", "pods/log")] == {"get"}
        assert {"create", "delete", "list"} <= granted[("", "pods")]
        assert granted[("apps", "replicasets")] == {"get", "list", "watch"}
        assert granted[("external-secrets.io", "secretstores")] == {"get", "list", "watch"}
        assert not granted[("", "events")] & WRITE_VERBS


def test_roles_for_eso_and_argocd_namespaces(rendered):
    _, objects, _ = rendered
    eso = one(objects, "Role", f"{RELEASE}-eso-read")
    assert eso["metadata"]["namespace"] == "external-secrets-system"
    assert eso["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]
    argocd = one(objects, "Role", f"{RELEASE}-argocd")
    assert argocd["metadata"]["namespace"] == "argocd"
    assert argocd["rules"] == [
        {
            "apiGroups": ["argoproj.io"],
            "resources": ["applications"],
            "verbs": ["get", "list", "watch", "create", "patch"],
        }
    ]


def test_cluster_roles_are_read_only_and_never_touch_secrets(rendered):
    _, objects, _ = rendered
    cluster_roles = of_kind(objects, "ClusterRole")
    assert [c["metadata"]["name"] for c in cluster_roles] == [f"{RELEASE}-read"]
    for role in cluster_roles:
        for rule in role["rules"]:
            assert not set(rule["verbs"]) & WRITE_VERBS, rule
            assert "secrets" not in rule["resources"], rule
            assert rule["resources"] == ["namespaces"]


def test_namespace_create_is_opt_in():
    objects = render({"rbac": {"allowNamespaceCreate": True}})
    writers = [
        c for c in of_kind(objects, "ClusterRole") if any(set(rule["verbs"]) & WRITE_VERBS for rule in c["rules"])
    ]
    assert len(writers) == 1
    assert writers[0]["rules"] == [{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["create"]}]
    binding = one(objects, "ClusterRoleBinding", writers[0]["metadata"]["name"])
    assert binding["subjects"][0]["name"] == RELEASE


def test_no_wildcards_anywhere(rendered):
    _, objects, _ = rendered
    rules = rbac_rules(objects)
    assert rules
    for obj, rule in rules:
        for field in ("verbs", "resources", "apiGroups"):
            assert "*" not in rule[field], (obj["metadata"]["name"], rule)
            assert not any("*" in item for item in rule[field])


def test_rbac_can_be_disabled():
    objects = render({"rbac": {"create": False}})
    for kind in ("Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"):
        assert not of_kind(objects, kind)


def test_shared_namespace_gets_one_role():
    config = copy.deepcopy(TWO_ENVIRONMENTS)
    config["environments"]["canary"] = {**config["environments"]["prod"], "release": "plate-web-canary"}
    roles = [o for o in of_kind(render({"config": config}), "Role") if o["metadata"]["name"] == RELEASE]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["plate-prod", "plate-stg"]


# ---------------------------------------------------------------------------------------- availability


def test_pod_disruption_budgets(rendered):
    _, objects, _ = rendered
    pdbs = {o["metadata"]["name"]: o for o in of_kind(objects, "PodDisruptionBudget")}
    assert set(pdbs) == {f"{RELEASE}-serve", f"{RELEASE}-worker", f"{RELEASE}-watch"}
    for component in ("serve", "worker", "watch"):
        pdb = pdbs[f"{RELEASE}-{component}"]
        assert pdb["spec"]["minAvailable"] == 1
        deployment = one(objects, "Deployment", f"{RELEASE}-{component}")
        assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]


def test_no_pdb_for_a_single_replica():
    objects = render({"serve": {"replicas": 1}, "worker": {"replicas": 1}, "watch": {"replicas": 1}})
    assert not of_kind(objects, "PodDisruptionBudget")


def test_network_policies(rendered):
    _, objects, values = rendered
    policies = {o["metadata"]["name"]: o for o in of_kind(objects, "NetworkPolicy")}
    serve = policies[f"{RELEASE}-serve"]
    assert serve["spec"]["ingress"][0]["ports"] == [{"port": 3000, "protocol": "TCP"}]
    # With both peer lists set, Prometheus gets its own rule on serve's port.
    assert len(serve["spec"]["ingress"]) == (2 if values["networkPolicy"]["metricsFrom"] else 1)
    assert serve["spec"]["ingress"][0].get("from", []) == values["networkPolicy"]["serveFrom"]
    metrics = policies[f"{RELEASE}-metrics"]
    assert {p["port"] for p in metrics["spec"]["ingress"][0]["ports"]} == {9102, 9103}
    egress = policies[f"{RELEASE}-egress"]["spec"]["egress"]
    ports = {(p["port"], p["protocol"]) for rule in egress for p in rule["ports"]}
    assert {(53, "UDP"), (53, "TCP"), (443, "TCP"), (6443, "TCP")} <= ports
    if values["externalRedis"]["url"]:
        assert (values["networkPolicy"]["externalRedis"]["port"], "TCP") in ports
        assert f"{RELEASE}-redis" not in policies
    else:
        assert (values["redis"]["port"], "TCP") in ports
        redis = policies[f"{RELEASE}-redis"]["spec"]
        assert redis["policyTypes"] == ["Ingress", "Egress"] and redis["egress"] == []
        assert redis["ingress"][0]["ports"] == [{"port": 6379, "protocol": "TCP"}]


def test_network_policy_can_be_disabled():
    assert not of_kind(render({"networkPolicy": {"enabled": False}}), "NetworkPolicy")


# -------------------------------------------------------------------------------------- optional parts


def test_ingress_routes_only_slack_to_serve(full_objects):
    ingress = one(full_objects, "Ingress", RELEASE)
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"] == [{"secretName": "plate-bot-tls", "hosts": ["plate-bot.example.com"]}]
    (rule,) = ingress["spec"]["rules"]
    (path,) = rule["http"]["paths"]
    assert path["path"] == "/slack"
    backend = path["backend"]["service"]
    service = one(full_objects, "Service", backend["name"])
    assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}


def test_service_monitor(full_objects):
    monitor = one(full_objects, "ServiceMonitor", RELEASE)
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["namespace"] == NAMESPACE
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    selector = monitor["spec"]["selector"]["matchLabels"]
    endpoints = monitor["spec"]["endpoints"]
    assert endpoints and all(e["path"] == "/metrics" for e in endpoints)
    scraped = [s for s in of_kind(full_objects, "Service") if selector.items() <= s["metadata"]["labels"].items()]
    assert {s["metadata"]["labels"]["app.kubernetes.io/component"] for s in scraped} == {"serve", "worker", "watch"}
    for service in scraped:
        assert endpoints[0]["port"] in {p["name"] for p in service["spec"]["ports"]}


def test_keda_scaled_object(full_objects):
    scaled = one(full_objects, "ScaledObject", f"{RELEASE}-worker")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    spec = scaled["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": f"{RELEASE}-worker"}
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (2, 8)
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "redis"
    assert trigger["metadata"]["listName"] == "rq:queue:plate"
    assert trigger["metadata"]["address"] == "redis.example.internal:6380"
    assert trigger["metadata"]["enableTLS"] == "true"
    assert all(isinstance(v, str) for v in trigger["metadata"].values())
    assert trigger["authenticationRef"] == {"name": "plate-redis-auth"}
    # KEDA owns the replica count.
    worker = one(full_objects, "Deployment", f"{RELEASE}-worker")
    assert "replicas" not in worker["spec"]


def test_keda_with_bundled_redis_targets_its_service():
    objects = render({"keda": {"enabled": True}})
    trigger = one(objects, "ScaledObject", f"{RELEASE}-worker")["spec"]["triggers"][0]
    assert trigger["metadata"]["address"] == f"{RELEASE}-redis.{NAMESPACE}.svc:6379"
    redis_policy = one(objects, "NetworkPolicy", f"{RELEASE}-redis")
    assert len(redis_policy["spec"]["ingress"][0]["from"]) == 2  # plate-bot pods + KEDA operator


def test_keda_with_external_redis_needs_an_address():
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmError, match=r"keda\.redisAddress"):
        chart.render(
            {"keda": {"enabled": True}, "externalRedis": {"url": "redis://r:6379/0"}}, name=RELEASE, namespace=NAMESPACE
        )


def test_scheduling_and_pull_secrets(full_objects):
    for component in ("serve", "worker", "watch"):
        template = one(full_objects, "Deployment", f"{RELEASE}-{component}")["spec"]["template"]
        spec = template["spec"]
        assert spec["imagePullSecrets"] == [{"name": "harbor-pull"}]
        assert spec["nodeSelector"] == {"kubernetes.io/os": "linux"}
        assert spec["tolerations"][0]["key"] == "dedicated"
        assert "podAntiAffinity" in spec["affinity"]
        assert template["metadata"]["annotations"]["example.com/team"] == "platform"
        assert spec["containers"][0]["image"] == "harbor.example.com/platform/plate-bot:0.1.0"
        assert spec["containers"][0]["imagePullPolicy"] == "Always"


def test_example_values_file_renders_and_validates():
    values = yaml.safe_load((CHART / "examples" / "values-plate.yaml").read_text())
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema(merged(DEFAULTS, values))
    objects = render(values)
    for obj in objects:
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
    roles = {o["metadata"]["namespace"] for o in of_kind(objects, "Role") if o["metadata"]["name"] == RELEASE}
    assert roles == {"plate-stg", "plate-prod"}
    worker = one(objects, "Deployment", f"{RELEASE}-worker")
    assert worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 960  # 10m + 120 < 960
