"""The chart's observability assets: the PrometheusRule's alerts and the Grafana dashboard.

promtool is not available here: every expression is parsed with promql-parser (Rust bindings of the
Prometheus expression grammar), and every metric it names must be exposed by a real scrape of serve,
worker and watch running as processes against the loopback fakes (Slack, Kubernetes API) and real Redis.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import helm_python as helm
import promql_parser
import pytest
import yaml

from tests.integration.procs import get, processes, serving_url, up
from tests.processes import free_port

CHART = Path(__file__).resolve().parents[1] / "helm-chart"
DASHBOARD = CHART / "dashboards" / "plate-bot.json"
RELEASE, NAMESPACE = "plate-bot", "plate-system"

# Grafana's variables, replaced by sample values before parsing: Prometheus never sees them.
GRAFANA_VARIABLES = {
    "$__rate_interval": "2m",
    "$__interval": "1m",
    "$__range": "6h",
    "$namespace": NAMESPACE,
}

ALERTS = {
    "PlateBotDeployFailed",
    "PlateBotJobLost",
    "PlateBotWatcherWithoutLeader",
    "PlateBotSlackRateLimited",
    "PlateBotQueueWaiting",
    "PlateBotNoWorkers",
    "PlateBotRedisStatsUnreadable",
}


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    with helm.Chart.load(CHART) as chart:
        files = chart.render(values, name=RELEASE, namespace=NAMESPACE)
    return [
        doc for path, text in sorted(files.items()) if path.endswith(".yaml") for doc in yaml.safe_load_all(text) if doc
    ]


def alert_rules(values: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    objects = render({"prometheusRule": {"enabled": True}, **(values or {})})
    (rule,) = [o for o in objects if o["kind"] == "PrometheusRule"]
    return {r["alert"]: r for group in rule["spec"]["groups"] for r in group["rules"]}


def dashboard_expressions() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    found = []
    for panel in board["panels"]:
        found += [t["expr"] for t in panel.get("targets", [])]
        for inner in panel.get("panels", []):  # collapsed rows keep their panels inside
            found += [t["expr"] for t in inner.get("targets", [])]
    return found


def grafana_free(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"a Grafana variable this test does not know: {expr}"
    return expr


def metric_names(expr: str) -> set[str]:
    """The metric names an expression reads (every selector must name one)."""
    names: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            assert node.name, f"a selector without a metric name in {expr}"
            names.add(node.name)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


def referenced() -> dict[str, set[str]]:
    """{metric name: where it is read}, over every alert and every dashboard target."""
    where: dict[str, set[str]] = {}
    for name, rule in alert_rules().items():
        for metric in metric_names(rule["expr"]):
            where.setdefault(metric, set()).add(f"alert {name}")
    for expr in dashboard_expressions():
        for metric in metric_names(grafana_free(expr)):
            where.setdefault(metric, set()).add("dashboard")
    return where


def exposed(page: str) -> set[str]:
    """The series names a /metrics page exposes: its samples, and the families it declares (a labelled
    counter shows its samples once an event happened; its TYPE line is there from the start)."""
    suffixes = {
        "counter": ("_total",),
        "histogram": ("_bucket", "_sum", "_count"),
        "summary": ("", "_sum", "_count"),
        "gauge": ("",),
        "untyped": ("",),
        "unknown": ("",),
        "info": ("_info",),
        "stateset": ("",),
    }
    names: set[str] = set()
    for line in page.splitlines():
        if line.startswith("# TYPE "):
            _, _, family, kind = line.split(maxsplit=3)
            base = family.removesuffix("_total") if kind == "counter" else family
            names |= {base + suffix for suffix in suffixes[kind]}
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names


# ------------------------------------------------------------------------------------------ the rules


def test_alert_expressions_parse_and_cover_what_operators_need():
    rules = alert_rules()
    assert set(rules) == ALERTS
    for name, rule in rules.items():
        promql_parser.parse(rule["expr"])  # raises on a syntax error
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name
        # This release's pods only: another plate-bot in the same Prometheus is not mixed in.
        assert f'namespace="{NAMESPACE}"' in rule["expr"], name
    # "prod deploy failed" can be routed: the alert carries env and app.
    failed = promql_parser.parse(rules["PlateBotDeployFailed"]["expr"])
    assert {"env", "app"} <= set(failed.lhs.modifier.labels)
    assert rules["PlateBotQueueWaiting"]["for"] == "10m"


def test_alert_thresholds_and_labels_come_from_values():
    rules = alert_rules(
        {
            "prometheusRule": {
                "enabled": True,
                "alertLabels": {"team": "platform"},
                "queueWaitingMinutes": 3,
                "deployFailedWindow": "1h",
                "severity": {"deployFailed": "page"},
            }
        }
    )
    assert rules["PlateBotQueueWaiting"]["for"] == "3m"
    assert "[1h]" in rules["PlateBotDeployFailed"]["expr"]
    assert rules["PlateBotDeployFailed"]["labels"] == {"severity": "page", "team": "platform"}
    assert all(r["labels"]["team"] == "platform" for r in rules.values())
    # Prometheus' own templates survive Helm's: {{ $labels.env }} reaches Alertmanager as written.
    assert "{{ $labels.env }}" in rules["PlateBotDeployFailed"]["annotations"]["description"]


def test_prometheus_rule_object_and_its_labels():
    objects = render({"prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}}})
    (rule,) = [o for o in objects if o["kind"] == "PrometheusRule"]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["namespace"] == NAMESPACE
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert not [o for o in render({}) if o["kind"] == "PrometheusRule"]  # off by default


# -------------------------------------------------------------------------------------- the dashboard


def test_dashboard_expressions_parse():
    expressions = dashboard_expressions()
    assert len(expressions) >= 20
    for expr in expressions:
        promql_parser.parse(grafana_free(expr))
        assert 'namespace="$namespace"' in expr, expr


def test_dashboard_is_shipped_as_a_grafana_configmap():
    board = json.loads(DASHBOARD.read_text())
    assert board["uid"] == "plate-bot"
    assert {v["name"] for v in board["templating"]["list"]} == {"datasource", "namespace"}
    objects = render({"grafanaDashboard": {"enabled": True, "annotations": {"grafana_folder": "plate-bot"}}})
    (configmap,) = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == f"{RELEASE}-dashboard"]
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["annotations"] == {"grafana_folder": "plate-bot"}
    assert json.loads(configmap["data"]["plate-bot.json"]) == board
    assert not [o for o in render({}) if o["metadata"]["name"] == f"{RELEASE}-dashboard"]  # off by default


# -------------------------------------------------------------------------------- against a real scrape


@pytest.mark.slow
def test_every_metric_named_exists_in_a_scrape_of_serve_worker_and_watch(plate_env: dict[str, Any], tmp_path: Path):
    """serve, worker and watch as real processes; the watcher exports the cluster-wide series at once
    (PLATE_CLUSTER_METRICS=always), as its leader does in a cluster."""
    env = {k: str(v) for k, v in plate_env.items() if k.isupper()}
    worker_port, watch_port = free_port(), free_port()
    pages: dict[str, str] = {}
    with processes({**env, "PLATE_CLUSTER_METRICS": "never"}, tmp_path) as procs:
        serve = procs.start("serve", "--host", "127.0.0.1", "--port", "0")
        worker = procs.start("worker", "--metrics-port", str(worker_port), "--metrics-host", "127.0.0.1")
        watch = procs.start("watch", "--metrics-port", str(watch_port), PLATE_CLUSTER_METRICS="always")
        urls = {
            "serve": serving_url(serve) + "/metrics",
            "worker": f"http://127.0.0.1:{worker_port}/metrics",
            "watch": f"http://127.0.0.1:{watch_port}/metrics",
        }
        up(urls["worker"], worker)
        up(urls["watch"], watch)
        for process, url in urls.items():
            status, body = get(url)
            assert status == 200, (process, body)
            pages[process] = body.decode()
    scraped = set().union(*(exposed(page) for page in pages.values()))
    missing = {name: sorted(where) for name, where in referenced().items() if name not in scraped}
    assert not missing, f"named by the rules or the dashboard, exposed by no process: {missing}"
    # The cluster-wide series come from the exporting watcher only.
    assert "plate_queue_depth" in exposed(pages["watch"])
    assert "plate_queue_depth" not in exposed(pages["worker"])
