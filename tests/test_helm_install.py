"""Installing plate-bot for real (issue 15), through the real Helm engine: the chart's schema is the app's
configuration (generated, checked for drift), a full production values file renders and validates and its
config is one the app loads, remote clusters get their credentials only in worker and watch and their
Roles only from a `mode: target` install in their own cluster.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from config import schema as config_schema
from config.durations import DURATION_PATTERN, parse_duration
from config.environments import PlateConfig, parse_config
from tests.test_helm_chart import (
    CHART,
    CRD_KINDS,
    DEFAULTS,
    KUBE_VERSION,
    NAMESPACE,
    RELEASE,
    grants_of,
    merged,
    of_kind,
    one,
    render,
)

ROOT = CHART.parent
PRODUCTION = yaml.safe_load((CHART / "examples" / "values-production.yaml").read_text())
MINIMAL_ENVIRONMENT = {
    "incident_channel": "C0INCIDENTS",
    "environments": {"stg": {"namespace": "plate-stg", "apps": {"plate-web": {"chart": "/charts/plate-web"}}}},
}


def validate_all(objects: list[dict]) -> None:
    assert objects
    for obj in objects:
        if (obj["apiVersion"], obj["kind"]) not in CRD_KINDS:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)


def rendered_config(objects: list[dict]) -> PlateConfig:
    configmap = one(objects, "ConfigMap", f"{RELEASE}-config")
    return parse_config(yaml.safe_load(configmap["data"]["environments.yaml"]), "environments.yaml")


def role_namespaces(objects: list[dict], component: str) -> set[str]:
    return {
        o["metadata"]["namespace"]
        for o in of_kind(objects, "Role")
        if o["metadata"]["name"] == f"{RELEASE}-{component}"
    }


@pytest.fixture(scope="module")
def production() -> list[dict]:
    return render(PRODUCTION)


# ------------------------------------------------------------------------------ one source of truth


def test_committed_schema_is_the_generated_one():
    assert config_schema.check() == []


def test_schema_check_detects_drift(tmp_path: Path):
    copy_ = tmp_path / "values.schema.json"
    shutil.copy(config_schema.SCHEMA_PATH, copy_)
    assert config_schema.check(copy_) == []
    schema = json.loads(copy_.read_text())
    env = schema["properties"]["config"]["properties"]["environments"]["patternProperties"]
    del next(iter(env.values()))["properties"]["freeze"]  # a key the app takes, gone from the chart
    copy_.write_text(config_schema.dump(schema))
    (problem,) = config_schema.check(copy_)
    assert "properties.config differs" in problem
    assert config_schema.main(["--check", "--path", str(copy_)]) == 1
    assert config_schema.write(copy_) is True
    assert config_schema.check(copy_) == []
    copy_.write_text(json.dumps(json.loads(copy_.read_text())))  # same content, not as written
    assert "not formatted" in config_schema.check(copy_)[0]


def test_log_levels_are_the_apps():
    schema = json.loads(config_schema.SCHEMA_PATH.read_text())
    assert schema["properties"]["logLevel"]["enum"] == ["DEBUG", "INFO", "WARNING", "ERROR"]


def test_one_duration_grammar_for_app_chart_and_schema():
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    assert f'regexMatch "{DURATION_PATTERN}"' in helpers
    schema_text = config_schema.SCHEMA_PATH.read_text()
    assert json.dumps(DURATION_PATTERN) in schema_text
    for good in ("90s", "15m", "1h30m", "1d", "2d12h", "600", 600):
        parse_duration(good)
        assert isinstance(good, int) or re.match(DURATION_PATTERN, good)
    for bad in ("1.5h", "10 m", "1w", "ten minutes", "-5s", "1h-"):
        with pytest.raises(ValueError):
            parse_duration(bad)
        assert not re.match(DURATION_PATTERN, bad)


@pytest.mark.parametrize(
    ("override", "accepted"),
    [
        ({"approvers": ["W0BOB"], "approvals_required": 1}, True),  # Enterprise Grid user ids
        ({"approval_ttl": "1d"}, True),
        ({"helm_timeout": 900}, True),
        ({"freeze": {"weekly": [{"days": ["sat"]}]}}, True),
        ({"requesters": ["S0DEVS"], "argocd_app": "web", "cluster_uid": "x", "rollout_timeout": "2m"}, True),
        ({"approval_ttl": "1w"}, False),
        ({"approvers": ["C0CHANNEL"]}, False),
        ({"typo_key": True}, False),
    ],
)
def test_schema_and_app_agree(override: dict[str, Any], accepted: bool):
    config = copy.deepcopy(MINIMAL_ENVIRONMENT)
    config["environments"]["stg"].update(override)
    values = merged(DEFAULTS, {"config": config})
    with helm.Chart.load(CHART) as chart:
        if accepted:
            chart.validate_schema(values)
            parse_config(config)
        else:
            with pytest.raises(helm.HelmValuesError, match="/config/environments/stg"):
                chart.validate_schema(values)


def test_no_incident_channel_default():
    assert "incident_channel" not in DEFAULTS["config"]


def test_default_values_with_a_minimal_environment_are_accepted_by_the_app():
    objects = render({"config": MINIMAL_ENVIRONMENT})
    validate_all(objects)
    config = rendered_config(objects)
    assert config.environments["stg"].apps["plate-web"].chart == "/charts/plate-web"


def schema_keys(node: dict, path: str = "") -> set[str]:
    """Every property path of the config schema, map keys written `*`."""
    keys = set()
    for option in node.get("anyOf", []):
        keys |= schema_keys(option, path)
    for name, sub in node.get("properties", {}).items():
        keys.add(f"{path}{name}")
        keys |= schema_keys(sub, f"{path}{name}.")
    for sub in node.get("patternProperties", {}).values():
        keys |= schema_keys(sub, f"{path}*.")
    if isinstance(node.get("items"), dict):
        keys |= schema_keys(node["items"], f"{path}*.")
    return keys


def value_keys(node: Any, path: str = "", maps: tuple[str, ...] = ("environments", "apps")) -> set[str]:
    keys = set()
    if isinstance(node, dict):
        for name, sub in node.items():
            if path.rstrip(".").rsplit(".", 1)[-1] in maps:
                keys |= value_keys(sub, f"{path}*.", maps)
            else:
                keys.add(f"{path}{name}")
                keys |= value_keys(sub, f"{path}{name}.", maps)
    elif isinstance(node, list):
        for item in node:
            keys |= value_keys(item, f"{path}*.", maps)
    return keys


def test_every_config_key_is_set_by_the_production_values():
    """The production example is the reference installation: it sets every key the app knows, so the
    tests below render each of them through the chart and back into the app."""
    schema = json.loads(config_schema.SCHEMA_PATH.read_text())["properties"]["config"]
    # Filled in from the map keys; and an environment's git/ref/path are an app's (set there, and the
    # old layout's repo chart shows the environment-level source fields).
    not_written = {"environments.*.name", "environments.*.apps.*.name"}
    not_written |= {f"environments.*.{k}" for k in ("git", "ref", "path")}
    missing = schema_keys(schema) - value_keys(PRODUCTION["config"]) - not_written
    assert missing == set()


def test_every_documented_key_is_in_the_schema():
    """docs/configuration.md's tables name keys; each is a property of the chart's config schema."""
    doc = (ROOT / "docs" / "configuration.md").read_text()
    documented = set()
    for line in doc.splitlines():
        if line.startswith("| `"):
            first = line.split("|")[1]
            documented |= set(re.findall(r"`([a-z_]+)`", first))
    names = {key.rsplit(".", 1)[-1] for key in schema_keys(json.loads(config_schema.SCHEMA_PATH.read_text()))}
    assert documented and documented - names == set()


# ------------------------------------------------------------------------------ production values


def test_production_values_satisfy_the_schema_and_lint():
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema(merged(DEFAULTS, PRODUCTION))
    result = helm.lint(CHART, PRODUCTION, namespace=NAMESPACE)
    assert result["errors"] == []
    assert [m for m in result["messages"] if m["severity"] > 1] == []


def test_production_objects_validate(production):
    validate_all(production)
    kinds = {o["kind"] for o in production}
    assert {"ScaledObject", "ServiceMonitor", "Ingress"} <= kinds
    assert not of_kind(production, "StatefulSet")  # external Redis


def test_production_config_is_accepted_by_the_app(production):
    config = rendered_config(production)
    assert config == parse_config(PRODUCTION["config"])
    prod = config.environments["prod"]
    assert prod.for_app("plate-web").chart_source.kind == "oci"
    assert prod.for_app("plate-api").chart_source.kind == "repo"
    assert prod.for_app("plate-cron").chart_source.kind == "git"
    assert config.environments["prod-canary"].for_app().chart_source.describe().startswith("plate-web 1.5.0-rc.1")
    assert prod.freeze is not None and prod.kubeconfig == Path("/etc/plate/clusters/prod-eu/config")


def test_production_kubeconfigs_reach_worker_and_watch_only(production):
    for component in ("serve", "worker", "watch"):
        spec = one(production, "Deployment", f"{RELEASE}-{component}")["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in spec["volumes"]}
        mounts = {m["mountPath"]: m for m in spec["containers"][0]["volumeMounts"]}
        secrets = {v["secret"]["secretName"] for v in volumes.values() if "secret" in v}
        if component == "serve":
            assert not secrets & {"plate-kubeconfig-nonprod", "plate-kubeconfig-prod-eu"}
            assert not any(path.startswith(("/etc/plate/clusters", "/etc/plate/kube")) for path in mounts)
            assert spec["automountServiceAccountToken"] is False
            continue
        for cluster, secret, key in (
            ("nonprod", "plate-kubeconfig-nonprod", "config"),
            ("prod-eu", "plate-kubeconfig-prod-eu", "kubeconfig"),
        ):
            mount = mounts[f"/etc/plate/clusters/{cluster}"]
            assert mount["readOnly"] is True
            volume = volumes[mount["name"]]["secret"]
            assert volume["secretName"] == secret and volume["items"] == [{"key": key, "path": "config"}]


def test_production_remote_environments_get_no_local_roles(production):
    """Every environment is remote: no Role in this cluster for their namespaces, Argo CD or ESO."""
    assert role_namespaces(production, "worker") == set() and role_namespaces(production, "watch") == set()
    assert {o["metadata"]["name"] for o in of_kind(production, "Role")} == set()
    assert grants_of(production, "watch") == {}


def test_production_grace_period_follows_the_longest_job(production):
    config = parse_config(PRODUCTION["config"])
    longest = max(env.for_app(app).job_timeout for env in config.environments.values() for app in env.apps)
    assert longest == 20 * 60 + 3600 + 300  # prod's plate-api: helm_timeout 20m, rollout_timeout 1h
    worker = one(production, "Deployment", f"{RELEASE}-worker")
    assert worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == longest + 120


# ------------------------------------------------------------------------------ target clusters

TARGET_KINDS = {"ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}


def render_target(environments: list[str], **target: Any) -> list[dict]:
    values = merged(PRODUCTION, {"mode": "target", "target": {"environments": environments, **target}})
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema(merged(DEFAULTS, values))
    return render(values)


def test_target_mode_renders_only_access_for_its_environments():
    objects = render_target(["prod", "prod-canary"])
    validate_all(objects)
    assert {o["kind"] for o in objects} == TARGET_KINDS
    accounts = {o["metadata"]["name"]: o for o in of_kind(objects, "ServiceAccount")}
    assert set(accounts) == {f"{RELEASE}-worker", f"{RELEASE}-watch"}  # no serve: nothing runs here
    assert all(a["automountServiceAccountToken"] is False for a in accounts.values())
    assert accounts[f"{RELEASE}-worker"]["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].endswith("worker")
    # The apps' namespaces of prod and prod-canary (plate-cron lives in plate-jobs), not stg's.
    assert role_namespaces(objects, "worker") == {"plate-prod", "plate-jobs", "plate-canary"}
    assert role_namespaces(objects, "watch") == {"plate-prod", "plate-jobs", "plate-canary"}
    argo = one([o for o in objects if o["metadata"].get("namespace") == "argocd"], "Role", f"{RELEASE}-worker-argo")
    assert argo["rules"][0]["resourceNames"] == ["plate-api-prod", "plate-web-canary", "plate-web-prod"]
    (ns_read,) = of_kind(objects, "ClusterRole")  # get namespaces by name: the cluster_uid pin, harbor checks
    assert ns_read["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["namespaces"],
            "resourceNames": sorted(
                {"kube-system", "plate-prod", "plate-jobs", "plate-canary", "external-secrets-system"}
            ),
            "verbs": ["get"],
        }
    ]


def test_target_mode_token_secrets():
    objects = render_target(["stg"], tokenSecret=True)
    validate_all(objects)
    assert {o["kind"] for o in objects} == TARGET_KINDS | {"Secret"}
    tokens = {s["metadata"]["name"]: s for s in of_kind(objects, "Secret")}
    assert set(tokens) == {f"{RELEASE}-worker-token", f"{RELEASE}-watch-token"}
    for component in ("worker", "watch"):
        secret = tokens[f"{RELEASE}-{component}-token"]
        assert secret["type"] == "kubernetes.io/service-account-token"
        assert secret["metadata"]["annotations"] == {"kubernetes.io/service-account.name": f"{RELEASE}-{component}"}
        assert "data" not in secret  # the token controller fills it in
    # stg: its apps' namespaces and the harbor chain's namespace, by name.
    assert role_namespaces(objects, "worker") == {"plate-stg", "plate-jobs-stg"}
    assert one(objects, "Role", f"{RELEASE}-worker-chain")["metadata"]["namespace"] == "harbor-auth"


def test_target_mode_with_every_environment_and_no_names():
    objects = render_target([])
    assert role_namespaces(objects, "worker") == {
        "plate-stg", "plate-jobs-stg", "plate-prod", "plate-jobs", "plate-canary",
    }  # fmt: skip


def test_unknown_environment_names_are_refused():
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmError, match="nope is not an environment"):
        chart.render(
            merged(PRODUCTION, {"mode": "target", "target": {"environments": ["nope"]}}),
            name=RELEASE,
            namespace=NAMESPACE,
        )
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmValuesError, match="/mode"):
        chart.validate_schema(merged(DEFAULTS, {"mode": "remote"}))


# ------------------------------------------------------------------------------ local vs remote


def test_local_environments_get_roles_remote_ones_do_not():
    config = copy.deepcopy(MINIMAL_ENVIRONMENT)
    config["environments"]["far"] = {"namespace": "plate-far", "kube_context": "far", "release": "w", "chart": "/c"}
    config["environments"]["near"] = {"namespace": "plate-near", "kube_context": "here", "release": "w", "chart": "/c"}
    values = {"config": config, "kubeconfig": {"existingSecret": "kc"}, "rbac": {"localEnvironments": ["near"]}}
    objects = render(values)
    validate_all(objects)
    assert role_namespaces(objects, "worker") == {"plate-stg", "plate-near"}
    assert role_namespaces(objects, "watch") == {"plate-stg", "plate-near"}


def test_serve_never_mounts_a_kubeconfig():
    objects = render(
        merged(PRODUCTION, {"kubeconfig": {"existingSecret": "plate-kubeconfig"}, "config": MINIMAL_ENVIRONMENT})
    )
    serve = one(objects, "Deployment", f"{RELEASE}-serve")["spec"]["template"]["spec"]
    assert not [v for v in serve["volumes"] if "secret" in v and "kube" in v["secret"]["secretName"]]
    assert "KUBECONFIG" not in {e["name"] for e in serve["containers"][0]["env"]}
    for component in ("worker", "watch"):
        spec = one(objects, "Deployment", f"{RELEASE}-{component}")["spec"]["template"]["spec"]
        env = {e["name"]: e for e in spec["containers"][0]["env"]}
        assert env["KUBECONFIG"]["value"] == "/etc/plate/kube/config"
        assert {"/etc/plate/kube", "/etc/plate/clusters/nonprod"} <= {
            m["mountPath"] for m in spec["containers"][0]["volumeMounts"]
        }


@pytest.mark.parametrize(
    ("kubeconfig", "message"),
    [
        ("/etc/plate/clusters/prod-us/config", "mount it with clusters.prod-us"),
        ("/etc/plate/clusters/prod-eu/other", "mount it with clusters.prod-eu"),
        ("/etc/plate/kube/config", "needs kubeconfig.existingSecret"),
    ],
)
def test_environment_kubeconfig_must_be_mounted(kubeconfig: str, message: str):
    values = copy.deepcopy(PRODUCTION)
    values["config"]["environments"]["prod"]["kubeconfig"] = kubeconfig
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmError, match=message):
        chart.render(values, name=RELEASE, namespace=NAMESPACE)


def test_the_watcher_may_get_its_own_read_only_kubeconfig():
    values = merged(PRODUCTION, {"clusters": {"prod-eu": {"watchSecret": "plate-kubeconfig-prod-eu-watch"}}})
    objects = render(values)
    validate_all(objects)

    def secret_at(component: str, cluster: str) -> str:
        spec = one(objects, "Deployment", f"{RELEASE}-{component}")["spec"]["template"]["spec"]
        (mount,) = [
            m for m in spec["containers"][0]["volumeMounts"] if m["mountPath"] == f"/etc/plate/clusters/{cluster}"
        ]
        (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
        return volume["secret"]["secretName"]

    assert secret_at("worker", "prod-eu") == "plate-kubeconfig-prod-eu"
    assert secret_at("watch", "prod-eu") == "plate-kubeconfig-prod-eu-watch"
    assert secret_at("watch", "nonprod") == secret_at("worker", "nonprod") == "plate-kubeconfig-nonprod"


def test_workload_identity_subjects_are_bound_in_a_target_cluster():
    """A cloud identity (here a GKE Google service account) is known to the target cluster as a user:
    rbac.extraSubjects binds it to the same Roles as the ServiceAccount, the watcher's to read-only."""
    gsa = {"kind": "User", "name": "plate-worker@acme.iam.gserviceaccount.com", "apiGroup": "rbac.authorization.k8s.io"}
    group = {"kind": "Group", "name": "plate-bot-watchers", "apiGroup": "rbac.authorization.k8s.io"}
    objects = render(
        merged(PRODUCTION, {"mode": "target", "rbac": {"extraSubjects": {"worker": [gsa], "watch": [group]}}})
    )
    validate_all(objects)
    for binding in of_kind(objects, "RoleBinding") + of_kind(objects, "ClusterRoleBinding"):
        component = binding["metadata"]["labels"]["app.kubernetes.io/component"]
        account = {"kind": "ServiceAccount", "name": f"{RELEASE}-{component}", "namespace": NAMESPACE}
        assert binding["subjects"] == [account, gsa if component == "worker" else group]
