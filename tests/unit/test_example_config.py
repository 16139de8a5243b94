"""config/plate.example.yaml: the seed's two environments, each with two apps (issue 14)."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.environments import load_config

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "plate.example.yaml"


@pytest.mark.parametrize(("env", "values"), [("stg", "values-staging.yaml"), ("prod", "values-production.yaml")])
def test_every_environment_has_both_apps_with_existing_charts(env: str, values: str) -> None:
    environment = load_config(EXAMPLE).environments[env]
    assert environment.app_names() == ["plate-web", "plate-api"]
    assert environment.default_app == "plate-web" and environment.for_app().release == "plate-web"
    for app in environment.app_names():
        view = environment.for_app(app)
        chart = ROOT / "examples" / app
        assert (view.release, view.namespace, view.chart) == (app, environment.namespace, str(chart))
        assert view.values == [chart / values] and (chart / "Chart.yaml").is_file() and view.values[0].is_file()
        assert view.key == f"{env}/{environment.namespace}/{app}" and view.label == f"{env}/{app}"


def test_per_app_overrides() -> None:
    config = load_config(EXAMPLE)
    stg, prod = config.environments["stg"], config.environments["prod"]
    assert stg.harbor.manifests_dir == ROOT / "examples" / "harbor-auth"
    assert [stg.for_app(a).approvals_required for a in stg.app_names()] == [0, 0] and not stg.is_production
    web, api = prod.for_app("plate-web"), prod.for_app("plate-api")
    assert (web.approvals_required, api.approvals_required) == (1, 2) and prod.is_production
    assert web.approvers == api.approvers == ["U0ALICE", "S0SRE"]
    assert (web.argocd_app, api.argocd_app) == ("plate-web-prod", None)
    assert web.channels == api.channels == ["C0DEPLOYS"] and web.helm_timeout == api.helm_timeout == 600
