"""The fake helm CLI (sandbox/helm.py) and the example charts it deploys (examples/plate-web, examples/plate-api).

The fake runs as a real executable through install_wrapper, exactly as plate-bot's workers will run it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate
import pytest
import yaml

from sandbox.helm import install_wrapper, read_releases, recorded_argv, recorded_calls, set_behaviour
from tests.waiting import wait_until

REPO = Path(__file__).resolve().parent.parent
CHART = REPO / "examples" / "plate-web"
PROD = ["-n", "plate-prod", "-f", str(CHART / "values-production.yaml")]
# Issue 14: an environment holds several apps; the examples are two charts, one release each.
API_CHART = REPO / "examples" / "plate-api"
API_PROD = ["-n", "plate-prod", "-f", str(API_CHART / "values-production.yaml")]
EXAMPLE_CHARTS = ["plate-web", "plate-api"]
VALUES_FILES = [None, "values-staging.yaml", "values-production.yaml"]
KUBE_VERSION = "1.30"


@dataclass
class FakeHelm:
    bin: Path
    state: Path
    tmp: Path

    def run(self, *args: str, timeout: float = 20, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        full_env = {**os.environ, **(env or {})}
        full_env.pop("FAKE_HELM_STATE", None)  # the wrapper's default must be what points at the state
        return subprocess.run(
            [str(self.bin), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=full_env,
            cwd=self.tmp,
        )

    def ok(self, *args: str, **kw: Any) -> subprocess.CompletedProcess:
        proc = self.run(*args, **kw)
        assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
        return proc

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "-o", "json").stdout)

    def install(self, *extra: str, **kw: Any) -> subprocess.CompletedProcess:
        return self.run("upgrade", "--install", "plate-web", str(CHART), *PROD, *extra, **kw)


@pytest.fixture
def helm(tmp_path: Path) -> FakeHelm:
    state = tmp_path / "state"
    return FakeHelm(install_wrapper(tmp_path / "bin", state), state, tmp_path)


def docs_of(stream: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(stream) if d]


def by_kind(docs: list[dict], kind: str) -> dict:
    return next(d for d in docs if d["kind"] == kind)


# --- the example chart ----------------------------------------------------------------------------------


def render_example(name: str, values_file: str | None, release: str, namespace: str = "plate-prod") -> list[dict]:
    chart = REPO / "examples" / name
    values = yaml.safe_load((chart / values_file).read_text()) if values_file else {}
    with helm_python.Chart.load(str(chart)) as loaded:
        out = loaded.render(values, name=release, namespace=namespace)
    return docs_of("\n---\n".join(v for k, v in out.items() if not k.endswith("NOTES.txt")))


@pytest.mark.parametrize("chart_name", EXAMPLE_CHARTS)
@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_chart_lints_clean(chart_name: str, values_file: str | None) -> None:
    chart = REPO / "examples" / chart_name
    values = yaml.safe_load((chart / values_file).read_text()) if values_file else None
    result = helm_python.lint(str(chart), values=values, strict=True)
    assert result["errors"] == [], result
    assert [m for m in result["messages"] if m["severity"] > 1] == []


@pytest.mark.parametrize("chart_name", EXAMPLE_CHARTS)
@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_example_chart_objects_validate_against_kubernetes_schemas(chart_name: str, values_file: str | None) -> None:
    docs = render_example(chart_name, values_file, chart_name)
    assert {"Deployment", "Service"} <= {d["kind"] for d in docs}
    for obj in docs:
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        # The conventions plate-bot's status, diagnose and the simulated cluster rely on.
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == chart_name and labels["app.kubernetes.io/name"] == chart_name
        assert labels["app.kubernetes.io/part-of"] == "plate" and labels["helm.sh/chart"].startswith(chart_name)


def test_chart_renders_staging_and_production_shapes() -> None:
    def render(values_file: str) -> list[dict]:
        values = yaml.safe_load((CHART / values_file).read_text())
        with helm_python.Chart.load(str(CHART)) as chart:
            out = chart.render(values, name="plate-web", namespace="plate-prod")
        return docs_of("\n---\n".join(v for k, v in out.items() if not k.endswith("NOTES.txt")))

    prod, stg = render("values-production.yaml"), render("values-staging.yaml")
    deploy = by_kind(prod, "Deployment")
    pod = deploy["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "harbor-docker-secret"}]
    container = pod["containers"][0]
    assert container["image"] == "harbor.example.com/plate/plate-web:1.4.0"  # tag defaults to appVersion
    assert container["readinessProbe"]["httpGet"]["port"] == "http"
    assert container["livenessProbe"] and container["resources"]["limits"]
    labels = deploy["metadata"]["labels"]
    assert labels["app.kubernetes.io/instance"] == "plate-web"
    assert labels["helm.sh/chart"] == "plate-web-1.4.0"
    assert "replicas" not in deploy["spec"]  # the HPA owns the scale in production
    hpa = by_kind(prod, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 10)
    assert by_kind(prod, "Ingress")["spec"]["rules"][0]["host"] == "plate.example.com"
    assert {d["kind"] for d in prod} == {
        "ServiceAccount",
        "Service",
        "Deployment",
        "HorizontalPodAutoscaler",
        "Ingress",
    }

    assert by_kind(stg, "Deployment")["spec"]["replicas"] == 1
    assert not [d for d in stg if d["kind"] == "HorizontalPodAutoscaler"]
    assert by_kind(stg, "Ingress")["spec"]["rules"][0]["host"] == "plate-stg.example.com"


def test_api_chart_renders_staging_and_production_shapes() -> None:
    prod, stg = (render_example("plate-api", f, "plate-api") for f in ("values-production.yaml", "values-staging.yaml"))
    assert [d["kind"] for d in prod] == ["Deployment", "Service"]  # internal API: no ingress, no HPA
    deploy = by_kind(prod, "Deployment")
    assert deploy["metadata"]["name"] == "plate-api" and deploy["spec"]["replicas"] == 2
    pod = deploy["spec"]["template"]["spec"]
    assert (
        pod["imagePullSecrets"] == [{"name": "harbor-docker-secret"}] and pod["automountServiceAccountToken"] is False
    )
    container = pod["containers"][0]
    assert container["image"] == "harbor.example.com/plate/plate-api:2.1.0"  # tag defaults to appVersion
    assert container["ports"] == [{"name": "http", "containerPort": 9090, "protocol": "TCP"}]
    assert container["readinessProbe"]["httpGet"] == {"path": "/api/ready", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/api/live", "port": "http"}
    assert container["resources"]["limits"] == {"cpu": "1", "memory": "384Mi"}
    assert {e["name"]: e["value"] for e in container["env"]}["PLATE_ENV"] == "production"
    service = by_kind(prod, "Service")
    assert service["spec"]["ports"][0]["port"] == 8080 and service["spec"]["ports"][0]["targetPort"] == "http"
    assert service["spec"]["selector"] == {
        "app.kubernetes.io/name": "plate-api",
        "app.kubernetes.io/instance": "plate-api",
    }
    assert deploy["metadata"]["labels"]["app.kubernetes.io/component"] == "api"

    stg_deploy = by_kind(stg, "Deployment")
    assert stg_deploy["spec"]["replicas"] == 1
    assert stg_deploy["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] == "128Mi"
    # Another release name keeps its own objects: two copies never collide in one namespace.
    other = by_kind(render_example("plate-api", None, "canary"), "Deployment")
    assert other["metadata"]["name"] == "canary-plate-api"
    assert other["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"] == "canary"


# --- version, lint, template ----------------------------------------------------------------------------


def test_version(helm: FakeHelm) -> None:
    assert helm.ok("version", "--short").stdout == "v3.16.2+g13654a5\n"
    assert helm.ok("version").stdout.startswith('version.BuildInfo{Version:"v3.16.2", GitCommit:"13654a5')
    assert helm.ok("version", "--template", "{{.Version}}").stdout == "v3.16.2"


def test_lint_ok_fail_and_missing_chart_yaml(helm: FakeHelm, tmp_path: Path) -> None:
    ok = helm.ok("lint", str(CHART), "-f", str(CHART / "values-production.yaml"))
    assert ok.stdout == f"==> Linting {CHART}\n\n1 chart(s) linted, 0 chart(s) failed\n"

    # A genuinely broken template fails through the real engine, printed like helm.
    bad = tmp_path / "bad"
    shutil.copytree(CHART, bad)
    (bad / "templates" / "service.yaml").write_text("x: {{ .Values.nope.deeper }}\n")
    broken = helm.run("lint", str(bad))
    assert broken.returncode == 1
    assert "[ERROR] templates/: " in broken.stdout and "nil pointer evaluating" in broken.stdout
    assert broken.stderr == "Error: 1 chart(s) linted, 1 chart(s) failed\n"

    set_behaviour(helm.state, lint="fail", lint_error="templates/deployment.yaml: bad things")
    injected = helm.run("lint", str(CHART))
    assert injected.returncode == 1
    assert "[ERROR] templates/: templates/deployment.yaml: bad things" in injected.stdout
    set_behaviour(helm.state, lint=None)

    (tmp_path / "empty").mkdir()
    missing = helm.run("lint", "empty")
    assert missing.returncode == 1
    assert missing.stdout == (
        "==> Linting empty\nError unable to check Chart.yaml file in chart: "
        "stat empty/Chart.yaml: no such file or directory\n\n"
    )
    assert missing.stderr == "Error: 1 chart(s) linted, 1 chart(s) failed\n"


def test_template_renders_for_real_in_install_order(helm: FakeHelm, tmp_path: Path) -> None:
    override = tmp_path / "override.yaml"
    override.write_text("ingress:\n  host: canary.example.com\nenv:\n  EXTRA: '1'\n")
    out = helm.ok(
        "template", "plate-web", str(CHART), *PROD, "-f", str(override),
        "--set", "image.tag=1.4.1,replicaCount=5", "--set-string", "env.BUILD=0042",
    ).stdout  # fmt: skip
    docs = docs_of(out)
    assert [d["kind"] for d in docs] == [
        "ServiceAccount",
        "Service",
        "Deployment",
        "HorizontalPodAutoscaler",
        "Ingress",
    ]
    assert out.startswith("---\n# Source: plate-web/templates/serviceaccount.yaml\n")
    container = by_kind(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "harbor.example.com/plate/plate-web:1.4.1"
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env == {"PLATE_ENV": "production", "EXTRA": "1", "BUILD": "0042"}  # deep merge + --set-string
    assert by_kind(docs, "Ingress")["spec"]["rules"][0]["host"] == "canary.example.com"  # later -f wins

    # Byte-for-byte what the real Helm engine stores as a release manifest.
    values = {**yaml.safe_load((CHART / "values-production.yaml").read_text())}
    with helm_python.Chart.load(str(CHART)) as chart:
        real = helm_python.Config(namespace="plate-prod", storage_driver="memory").install(
            chart, "plate-web", values, dry_run="client"
        )
    assert helm.ok("template", "plate-web", str(CHART), *PROD).stdout == real["manifest"].strip() + "\n"

    only = helm.ok("template", "plate-web", str(CHART), *PROD, "-s", "templates/hpa.yaml").stdout
    assert [d["kind"] for d in docs_of(only)] == ["HorizontalPodAutoscaler"]


# --- upgrade / status / history / get / rollback --------------------------------------------------------


def test_upgrade_install_then_upgrade_and_read_back(helm: FakeHelm) -> None:
    first = helm.install("--atomic", "--wait", "--timeout", "5m0s")
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert lines[0] == 'Release "plate-web" does not exist. Installing it now.'
    assert lines[1:3] == ["NAME: plate-web", lines[2]] and lines[2].startswith("LAST DEPLOYED: ")
    assert lines[3:8] == [
        "NAMESPACE: plate-prod",
        "STATUS: deployed",
        "REVISION: 1",
        "TEST SUITE: None",
        "NOTES:",
    ]

    second = helm.install("--set", "image.tag=1.4.1", "--atomic", "--wait", "--timeout", "5m0s")
    assert second.returncode == 0, second.stderr
    assert second.stdout.startswith('Release "plate-web" has been upgraded. Happy Helming!\nNAME: plate-web\n')
    assert "REVISION: 2\n" in second.stdout and "plate-web:1.4.1 is upgraded" in second.stdout

    status = helm.json("status", "plate-web", "-n", "plate-prod")
    assert list(status) == ["name", "info", "chart", "config", "manifest", "version", "namespace"]
    assert (status["name"], status["version"], status["namespace"]) == ("plate-web", 2, "plate-prod")
    assert set(status["info"]) == {
        "first_deployed",
        "last_deployed",
        "deleted",
        "description",
        "status",
        "notes",
    }
    assert (status["info"]["status"], status["info"]["description"]) == ("deployed", "Upgrade complete")
    assert status["chart"]["metadata"]["appVersion"] == "1.4.0"
    assert status["chart"]["metadata"]["apiVersion"] == "v2"
    assert status["config"]["image"] == {"tag": "1.4.1"} and status["config"]["replicaCount"] == 3
    assert "plate-web:1.4.1" in status["manifest"]

    history = helm.json("history", "plate-web", "-n", "plate-prod")
    assert [(h["revision"], h["status"], h["description"]) for h in history] == [
        (1, "superseded", "Install complete"),
        (2, "deployed", "Upgrade complete"),
    ]
    assert set(history[0]) == {"revision", "updated", "status", "chart", "app_version", "description"}
    assert history[0]["chart"] == "plate-web-1.4.0" and history[0]["app_version"] == "1.4.0"
    assert [h["revision"] for h in helm.json("history", "plate-web", "-n", "plate-prod", "--max", "1")] == [2]
    table = helm.ok("history", "plate-web", "-n", "plate-prod").stdout.splitlines()
    assert table[0].split() == ["REVISION", "UPDATED", "STATUS", "CHART", "APP", "VERSION", "DESCRIPTION"]

    plain = helm.ok("get", "values", "plate-web", "-n", "plate-prod").stdout
    assert plain.startswith("USER-SUPPLIED VALUES:\n") and "tag: 1.4.1" in plain
    assert yaml.safe_load(helm.ok("get", "values", "plate-web", "-n", "plate-prod", "-o", "yaml").stdout)["image"] == {
        "tag": "1.4.1"
    }
    every = helm.json("get", "values", "plate-web", "-n", "plate-prod", "--all")
    assert every["image"]["repository"] == "harbor.example.com/plate/plate-web"
    assert "image" not in helm.json("get", "values", "plate-web", "-n", "plate-prod", "--revision", "1")
    manifest = helm.ok("get", "manifest", "plate-web", "-n", "plate-prod", "--revision", "1").stdout
    assert manifest == read_releases(helm.state, "plate-web", "plate-prod")[0]["manifest"] + "\n"
    assert "plate-web:1.4.0" in manifest and manifest.startswith("---\n# Source: plate-web/templates/")

    text = helm.ok("status", "plate-web", "-n", "plate-prod").stdout
    assert text.startswith("NAME: plate-web\nLAST DEPLOYED: ") and "STATUS: deployed\nREVISION: 2\n" in text


def test_upgrade_reuses_last_values_and_dry_run_stores_nothing(helm: FakeHelm) -> None:
    assert helm.install("--set", "image.tag=9.9.9").returncode == 0
    again = helm.ok("upgrade", "plate-web", str(CHART), "-n", "plate-prod")  # no values: helm reuses the last ones
    assert "plate-web:9.9.9 is upgraded" in again.stdout
    dry = helm.ok("upgrade", "plate-web", str(CHART), "-n", "plate-prod", "--set", "image.tag=x", "--dry-run")
    assert (
        "STATUS: pending-upgrade\nREVISION: 3\n" in dry.stdout and "\nHOOKS:\nMANIFEST:\n---\n# Source:" in dry.stdout
    )
    assert len(read_releases(helm.state, "plate-web", "plate-prod")) == 2


def test_rollback_default_explicit_and_missing(helm: FakeHelm) -> None:
    for tag in ("1.0.0", "2.0.0", "3.0.0"):
        assert helm.install("--set", f"image.tag={tag}").returncode == 0
    assert helm.ok("rollback", "plate-web", "-n", "plate-prod", "--wait").stdout == (
        "Rollback was a success! Happy Helming!\n"
    )
    helm.ok("rollback", "plate-web", "1", "-n", "plate-prod", "--wait", "--timeout", "5m0s")
    history = helm.json("history", "plate-web", "-n", "plate-prod")
    assert [(h["status"], h["description"]) for h in history[3:]] == [
        ("superseded", "Rollback to 2"),
        ("deployed", "Rollback to 1"),
    ]
    assert "plate-web:1.0.0" in helm.json("status", "plate-web", "-n", "plate-prod")["manifest"]
    missing = helm.run("rollback", "plate-web", "42", "-n", "plate-prod")
    assert (missing.returncode, missing.stderr) == (1, "Error: release has no 42 version\n")


def test_two_releases_in_one_namespace_are_independent(helm: FakeHelm) -> None:
    """Issue 14: plate-web and plate-api, two releases of one environment, in the same namespace."""
    assert helm.install().returncode == 0
    api = helm.ok("upgrade", "--install", "plate-api", str(API_CHART), *API_PROD, "--atomic", "--wait")
    assert api.stdout.startswith('Release "plate-api" does not exist. Installing it now.\nNAME: plate-api\n')
    assert "plate-api harbor.example.com/plate/plate-api:2.1.0 is installed as release plate-api" in api.stdout
    for tag in ("2.1.1", "2.2.0"):
        helm.ok("upgrade", "plate-api", str(API_CHART), *API_PROD, "--set-string", f"image.tag={tag}")

    web, api_status = (helm.json("status", r, "-n", "plate-prod") for r in ("plate-web", "plate-api"))
    assert (web["name"], web["version"], web["chart"]["metadata"]["name"]) == ("plate-web", 1, "plate-web")
    assert (api_status["name"], api_status["version"], api_status["chart"]["metadata"]["name"]) == (
        "plate-api", 3, "plate-api",
    )  # fmt: skip
    assert "plate-api" not in web["manifest"] and "plate-web" not in api_status["manifest"]
    assert "plate/plate-api:2.2.0" in api_status["manifest"]
    web_history = helm.json("history", "plate-web", "-n", "plate-prod")
    assert [h["status"] for h in web_history] == ["deployed"]
    api_history = helm.json("history", "plate-api", "-n", "plate-prod")
    assert [(h["revision"], h["status"], h["chart"]) for h in api_history] == [
        (1, "superseded", "plate-api-2.1.0"),
        (2, "superseded", "plate-api-2.1.0"),
        (3, "deployed", "plate-api-2.1.0"),
    ]
    assert helm.json("get", "values", "plate-api", "-n", "plate-prod")["image"] == {"tag": "2.2.0"}
    assert "image" not in helm.json("get", "values", "plate-web", "-n", "plate-prod")
    listed = {r["name"]: (r["revision"], r["chart"]) for r in helm.json("list", "-n", "plate-prod")}
    assert listed == {"plate-web": ("1", "plate-web-1.4.0"), "plate-api": ("3", "plate-api-2.1.0")}

    # A failed, atomically rolled back plate-api upgrade names plate-api and leaves plate-web alone.
    set_behaviour(helm.state, upgrade="fail")
    failed = helm.run("upgrade", "plate-api", str(API_CHART), *API_PROD, "--set-string", "image.tag=9.9.9", "--atomic")
    assert failed.stderr.startswith(
        "Error: UPGRADE FAILED: release plate-api failed, and has been rolled back due to atomic being set: "
        'cannot patch "plate-api" with kind Deployment: Deployment.apps "plate-api" is invalid: '
    )
    set_behaviour(helm.state, upgrade=None)
    assert [h["status"] for h in helm.json("history", "plate-api", "-n", "plate-prod")][-2:] == ["failed", "deployed"]
    helm.ok("rollback", "plate-api", "1", "-n", "plate-prod")
    assert helm.json("status", "plate-api", "-n", "plate-prod")["version"] == 6
    assert helm.json("history", "plate-web", "-n", "plate-prod") == web_history
    # The same release name in another namespace is another release.
    assert helm.run("status", "plate-api", "-n", "plate-stg").stderr == "Error: release: not found\n"
    helm.ok("uninstall", "plate-api", "-n", "plate-prod")
    assert [r["name"] for r in helm.json("list", "-n", "plate-prod")] == ["plate-web"]


def test_unknown_release_errors(helm: FakeHelm) -> None:
    for args in (
        ["status", "ghost"],
        ["history", "ghost"],
        ["get", "values", "ghost"],
        ["rollback", "ghost"],
    ):
        proc = helm.run(*args, "-n", "plate-prod")
        assert (proc.returncode, proc.stderr) == (1, "Error: release: not found\n"), args
    no_install = helm.run("upgrade", "plate-web", str(CHART), "-n", "plate-prod")
    assert no_install.stderr == 'Error: UPGRADE FAILED: "plate-web" has no deployed releases\n'


# --- injected failures ----------------------------------------------------------------------------------


def test_upgrade_fail_keeps_previous_deployed_and_stderr_extra(helm: FakeHelm) -> None:
    assert helm.install().returncode == 0
    set_behaviour(helm.state, upgrade="fail", fail_message="boom", stderr_extra="password=hunter2")
    proc = helm.install("--set", "image.tag=bad")
    assert proc.returncode == 1
    assert proc.stderr == "Error: UPGRADE FAILED: boom\npassword=hunter2\n"
    history = helm.json("history", "plate-web", "-n", "plate-prod")
    assert [(h["status"], h["description"]) for h in history] == [
        ("deployed", "Install complete"),
        ("failed", 'Upgrade "plate-web" failed: boom'),
    ]


def test_atomic_rollback(helm: FakeHelm) -> None:
    assert helm.install("--set", "image.tag=1.4.0").returncode == 0
    set_behaviour(helm.state, upgrade="atomic-rollback")
    proc = helm.install("--set", "image.tag=1.4.1", "--atomic", "--wait", "--timeout", "5m0s")
    assert proc.returncode == 1
    assert proc.stderr == (
        "Error: UPGRADE FAILED: release plate-web failed, and has been rolled back due to atomic being set: "
        "context deadline exceeded\n"
    )
    revs = read_releases(helm.state, "plate-web", "plate-prod")
    assert [(r["version"], r["info"]["status"], r["info"]["description"]) for r in revs] == [
        (1, "superseded", "Install complete"),
        (2, "failed", 'Upgrade "plate-web" failed: context deadline exceeded'),
        (3, "deployed", "Rollback to 1"),
    ]
    assert revs[2]["manifest"] == revs[0]["manifest"] != revs[1]["manifest"]
    assert helm.json("get", "values", "plate-web", "-n", "plate-prod")["image"] == {"tag": "1.4.0"}


def test_timeout_waits_for_the_timeout_flag(helm: FakeHelm) -> None:
    assert helm.install().returncode == 0
    set_behaviour(helm.state, upgrade="timeout")
    started = time.monotonic()
    proc = helm.install("--wait", "--timeout", "400ms")
    assert time.monotonic() - started >= 0.4
    assert (proc.returncode, proc.stderr) == (1, "Error: UPGRADE FAILED: context deadline exceeded\n")
    assert helm.json("status", "plate-web", "-n", "plate-prod")["info"]["status"] == "failed"


def test_hang_is_killed_and_leaves_a_pending_release(helm: FakeHelm) -> None:
    assert helm.install().returncode == 0
    set_behaviour(helm.state, upgrade="hang")
    with pytest.raises(subprocess.TimeoutExpired):
        helm.install(timeout=1.5)  # subprocess.run SIGKILLs the child on timeout
    assert helm.json("status", "plate-web", "-n", "plate-prod")["info"]["status"] == "pending-upgrade"
    set_behaviour(helm.state, upgrade="ok")
    blocked = helm.install()
    assert blocked.stderr == "Error: UPGRADE FAILED: another operation (install/upgrade/rollback) is in progress\n"
    helm.ok("rollback", "plate-web", "1", "-n", "plate-prod")  # the operator's way out, as with real helm
    assert helm.install().returncode == 0


def test_sigterm_marks_the_release_failed(helm: FakeHelm) -> None:
    assert helm.install().returncode == 0
    set_behaviour(helm.state, upgrade="hang")
    env = {k: v for k, v in os.environ.items() if k != "FAKE_HELM_STATE"}
    proc = subprocess.Popen(
        [str(helm.bin), "upgrade", "plate-web", str(CHART), *PROD],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    wait_until(
        lambda: read_releases(helm.state, "plate-web", "plate-prod")[-1]["info"]["status"] == "pending-upgrade",
        10,
        "the pending-upgrade revision",
    )
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=10)
    assert (proc.returncode, err) == (1, "Error: UPGRADE FAILED: context canceled\n")
    assert read_releases(helm.state, "plate-web", "plate-prod")[-1]["info"]["status"] == "failed"


def test_behaviour_queue_and_delay(helm: FakeHelm) -> None:
    set_behaviour(helm.state, upgrade=["fail", "ok"], delay=0.2)
    started = time.monotonic()
    assert helm.install().returncode == 1
    assert time.monotonic() - started >= 0.2
    assert helm.install().returncode == 0
    assert helm.install().returncode == 0  # the last item sticks


# --- argv handling and recording ------------------------------------------------------------------------


def test_flag_errors(helm: FakeHelm) -> None:
    cases = {
        ("upgrade", "--install", "plate-web", str(CHART), "--bogus"): "Error: unknown flag: --bogus\n",
        ("status", "plate-web", "-x"): "Error: unknown shorthand flag: 'x' in -x\n",
        ("status", "plate-web", "-n"): "Error: flag needs an argument: 'n' in -n\n",
        ("upgrade", "a", str(CHART), "--timeout", "300"): (
            'Error: invalid argument "300" for "--timeout" flag: time: missing unit in duration "300"\n'
        ),
        ("frobnicate",): 'Error: unknown command "frobnicate" for "helm"\nRun \'helm --help\' for usage.\n',
    }
    for args, stderr in cases.items():
        proc = helm.run(*args)
        assert (proc.returncode, proc.stderr) == (1, stderr), args


def test_global_flags_anywhere_and_argv_recording(helm: FakeHelm) -> None:
    argv = ["--kube-context", "prod-ctx", "upgrade", "--install", "plate-web", str(CHART),
            "--namespace=plate-prod", "--debug", "--kubeconfig", "/dev/null", "--atomic=true"]  # fmt: skip
    helm.ok(*argv, env={"HELM_KUBECONTEXT": "from-env"})
    helm.ok("-n", "plate-prod", "history", "plate-web")
    assert recorded_argv(helm.state) == [argv, ["-n", "plate-prod", "history", "plate-web"]]
    calls = recorded_calls(helm.state)
    assert calls[0]["env_kube_context"] == "from-env" and calls[1]["env_kube_context"] is None
    assert calls[0]["at"] <= calls[1]["at"]


def test_concurrent_upgrades_keep_state_consistent(helm: FakeHelm) -> None:
    env = {k: v for k, v in os.environ.items() if k != "FAKE_HELM_STATE"}
    procs = [
        subprocess.Popen(
            [str(helm.bin), "upgrade", "-i", f"r{i}", str(CHART), "-n", "plate-stg"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
        )
        for i in range(6)
    ]
    assert [p.wait(timeout=20) for p in procs] == [0] * 6
    listed = helm.json("list", "-n", "plate-stg")
    assert sorted(r["name"] for r in listed) == [f"r{i}" for i in range(6)]
    assert len(recorded_argv(helm.state)) == 7


def test_uninstall_and_list(helm: FakeHelm) -> None:
    assert helm.install().returncode == 0
    assert helm.json("list", "-n", "plate-prod")[0]["revision"] == "1"
    assert helm.ok("uninstall", "plate-web", "-n", "plate-prod").stdout == 'release "plate-web" uninstalled\n'
    assert helm.json("list", "-n", "plate-prod") == []


# --- optional link to a fake Kubernetes API -------------------------------------------------------------


class _TinyAPI(BaseHTTPRequestHandler):
    """Just enough apiserver: GET/POST/PUT on a dict, every request logged."""

    store: dict[str, dict] = {}
    log: list[tuple[str, str]] = []

    def _reply(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> dict:
        return json.loads(self.rfile.read(int(self.headers["Content-Length"])))

    def do_GET(self) -> None:
        self.log.append(("GET", self.path))
        obj = self.store.get(self.path)
        self._reply(200 if obj else 404, obj or {"kind": "Status", "code": 404})

    def do_POST(self) -> None:
        self.log.append(("POST", self.path))
        obj = self._body()
        self.store[f"{self.path}/{obj['metadata']['name']}"] = obj
        self._reply(201, obj)

    def do_PUT(self) -> None:
        self.log.append(("PUT", self.path))
        self.store[self.path] = self._body()
        self._reply(200, self.store[self.path])

    def log_message(self, *args: object) -> None:
        pass


def test_kube_link_creates_then_replaces_objects(helm: FakeHelm) -> None:
    _TinyAPI.store, _TinyAPI.log = {}, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _TinyAPI)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {"FAKE_HELM_KUBE_URL": f"http://127.0.0.1:{server.server_port}"}
    try:
        assert helm.run("upgrade", "--install", "plate-web", str(CHART), *PROD, env=env).returncode == 0
        assert helm.run("upgrade", "plate-web", str(CHART), *PROD, "--set", "image.tag=2", env=env).returncode == 0
    finally:
        server.shutdown()
    deploy = _TinyAPI.store["/apis/apps/v1/namespaces/plate-prod/deployments/plate-web"]
    assert deploy["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":2")
    assert deploy["metadata"]["annotations"]["meta.helm.sh/release-name"] == "plate-web"
    assert deploy["metadata"]["generation"] == 2
    assert "/api/v1/namespaces/plate-prod/serviceaccounts/plate-web" in _TinyAPI.store
    assert "/apis/autoscaling/v2/namespaces/plate-prod/horizontalpodautoscalers/plate-web" in _TinyAPI.store
    assert ("POST", "/apis/networking.k8s.io/v1/namespaces/plate-prod/ingresses") in _TinyAPI.log
    assert ("PUT", "/apis/apps/v1/namespaces/plate-prod/deployments/plate-web") in _TinyAPI.log


def test_wrapper_needs_no_env_and_main_needs_state(tmp_path: Path) -> None:
    script = install_wrapper(tmp_path / "bin", tmp_path / "s")
    assert script.read_text().startswith(f"#!{sys.executable}\n") and os.access(script, os.X_OK)
    env = {k: v for k, v in os.environ.items() if k != "FAKE_HELM_STATE"}
    proc = subprocess.run([sys.executable, "-m", "sandbox.helm", "version"], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=20)  # fmt: skip
    assert proc.returncode == 1 and "FAKE_HELM_STATE" in proc.stderr


def test_fixed_now_and_unreachable_cluster(helm: FakeHelm) -> None:
    set_behaviour(helm.state, now="2026-11-27T10:00:00.123456+00:00")
    out = helm.install().stdout
    assert "\nLAST DEPLOYED: Fri Nov 27 10:00:00 2026\n" in out
    assert helm.json("history", "plate-web", "-n", "plate-prod")[0]["updated"] == "2026-11-27T10:00:00.123456Z"
    set_behaviour(helm.state, unreachable=True)
    down = helm.run("status", "plate-web", "-n", "plate-prod")
    assert down.returncode == 1 and down.stderr.startswith("Error: Kubernetes cluster unreachable: ")
    assert helm.run("template", "plate-web", str(CHART)).returncode == 0  # offline commands still work
