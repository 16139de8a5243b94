"""Chart sources as the environments file writes them, and the host policy (config/charts.py): pure."""

from __future__ import annotations

from typing import Any

import pytest

from config.charts import ChartPolicy, chart_source
from config.environments import ConfigError, parse_config


def source(chart: str = "", version: str | None = None, repo: str | None = None, git: str | None = None,
           ref: str | None = None, path: str | None = None) -> Any:  # fmt: skip
    return chart_source(chart, version, repo, git, ref, path)


@pytest.mark.parametrize(
    ("fields", "kind", "described"),
    [
        ({"chart": "charts/web"}, "local", "charts/web"),
        ({"chart": "oci://harbor.example.com/charts/plate-web", "version": "1.4.2"}, "oci",
         "oci://harbor.example.com/charts/plate-web:1.4.2"),
        ({"chart": "plate-web", "repo": "https://charts.example.com/stable/", "version": "1.4.2"}, "repo",
         "plate-web 1.4.2 from https://charts.example.com/stable"),
        ({"git": "https://git.example.com/platform/charts.git", "ref": "v1.2.0", "path": "charts/web"}, "git",
         "https://git.example.com/platform/charts.git/charts/web @ v1.2.0"),
        ({"git": "https://git.example.com/c.git"}, "git", "https://git.example.com/c.git @ HEAD"),
    ],
    ids=["local", "oci", "repo", "git", "git-head"],
)  # fmt: skip
def test_sources(fields: dict[str, str], kind: str, described: str) -> None:
    got = source(**fields)
    assert (got.kind, got.describe()) == (kind, described)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"chart": "oci://harbor.example.com/charts/plate-web"}, "needs `version`"),
        ({"chart": "oci://harbor.example.com/Charts/Web", "version": "1.0.0"}, "is not oci://host/project/chart"),
        ({"chart": "plate-web", "repo": "https://charts.example.com"}, "needs `version`"),
        ({"chart": "plate-web", "repo": "ftp://charts.example.com", "version": "1.0.0"}, "not an https://"),
        ({"chart": "plate-web", "repo": "https://u:p@charts.example.com", "version": "1.0.0"}, "credentials"),
        ({"chart": "../x", "repo": "https://charts.example.com", "version": "1.0.0"}, "chart's name"),
        ({"chart": "https://charts.example.com/web.tgz"}, "use a directory, oci://"),
        ({"chart": "charts/web", "version": "1.0.0"}, "its Chart.yaml"),
        ({"chart": "oci://h.example.com/c/web", "version": "1.0.0; rm -rf"}, "not a chart version"),
        ({"git": "ssh://git@git.example.com/x.git"}, "not an https:// or file://"),
        ({"git": "https://token:x@git.example.com/x.git"}, "credentials"),
        ({"git": "https://git.example.com/x.git", "ref": "--upload-pack=sh"}, "not a branch, tag or commit"),
        ({"git": "https://git.example.com/x.git", "ref": "main..evil"}, "not a branch, tag or commit"),
        ({"git": "https://git.example.com/x.git", "path": "../../etc"}, "relative directory"),
        ({"git": "https://git.example.com/x.git", "path": "/etc"}, "relative directory"),
        ({"git": "https://git.example.com/x.git", "chart": "web"}, "not `chart`"),
        ({"chart": "web", "ref": "main"}, "go with `git:`"),
        ({}, "a chart is needed"),
    ],
    ids=lambda v: str(v)[:40] if isinstance(v, dict) else None,
)
def test_refused_sources(fields: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError) as caught:
        source(**fields)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("url", "git", "policy", "refusal"),
    [
        ("oci://harbor.example.com/charts/web", False, {}, None),  # the environment's Harbor host
        ("oci://other.example.com/charts/web", False, {}, "not in charts.allowed_hosts"),
        ("oci://other.example.com:5000/charts/web", False, {"allowed_hosts": ["other.example.com:5000"]}, None),
        ("https://charts.example.com/stable", False, {"allowed_hosts": ["charts.example.com"]}, None),
        ("http://charts.example.com/stable", False, {"allowed_hosts": ["charts.example.com"]}, "plain http"),
        ("http://charts.local:8080/x", False, {"allowed_hosts": ["charts.local:8080"],
                                               "plain_http_hosts": ["charts.local:8080"]}, None),
        ("file:///srv/charts.git", True, {}, "file:// chart sources are not allowed"),
        ("file:///srv/charts.git", True, {"allow_file_urls": True}, None),
        ("file:///srv/chart.tgz", False, {"allow_file_urls": True}, "file:// chart sources are not allowed"),
        ("https://10.1.2.3/x.git", True, {"allowed_hosts": ["10.1.2.3"]}, "a private address"),
        ("https://169.254.169.254/x.git", True, {"allowed_hosts": ["169.254.169.254"]}, "a private address"),
        ("https://10.1.2.3/x.git", True, {"allowed_hosts": ["10.1.2.3"], "allow_private_hosts": True}, None),
        ("ftp://charts.example.com/x", False, {"allowed_hosts": ["charts.example.com"]}, "only https://"),
    ],
    ids=lambda v: str(v)[:48] if isinstance(v, str) else None,
)  # fmt: skip
def test_policy(url: str, git: bool, policy: dict[str, Any], refusal: str | None) -> None:
    got = ChartPolicy(**policy).refusal(url, frozenset({"harbor.example.com"}), git=git)
    assert (got is None) if refusal is None else (got is not None and refusal in got), got


def _config(app: dict[str, Any], charts: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "charts": charts or {},
        "environments": {"prod": {"namespace": "plate-prod", "apps": {"web": app}}},
    }


def test_config_refuses_a_chart_host_not_allowed_at_start_up() -> None:
    app = {"chart": "oci://evil.example.net/charts/web", "version": "1.0.0"}
    with pytest.raises(ConfigError, match=r"environments\.prod: app web: evil\.example\.net: not in charts"):
        parse_config(_config(app))
    allowed = parse_config(_config(app, {"allowed_hosts": ["evil.example.net"]}))
    assert allowed.environments["prod"].for_app("web").chart_source.kind == "oci"
    harbor = {"chart": "oci://harbor.example.com/charts/web", "version": "1.0.0"}
    assert parse_config(_config(harbor)).environments["prod"].for_app().chart_source.host == "harbor.example.com"


def test_config_reports_a_bad_source_with_its_key() -> None:
    with pytest.raises(ConfigError, match=r"apps\.web: .*needs `version`"):
        parse_config(_config({"chart": "oci://harbor.example.com/charts/web"}))


def test_single_app_environment_takes_a_git_source() -> None:
    env = {"namespace": "plate-stg", "release": "web", "git": "https://git.example.com/c.git", "ref": "main"}
    config = parse_config({"charts": {"allowed_hosts": ["git.example.com"]}, "environments": {"stg": env}})
    view = config.environments["stg"].for_app()
    assert (view.chart_source.kind, view.chart_source.ref, view.release) == ("git", "main", "web")
