"""helm's environment (workers.helm): an allow-list, never plate-bot's own secrets.

The worker holds the Slack tokens, the Redis URL and password (whoever writes to Redis runs code in the
worker) and the backup encryption key. helm, its plugins, post-renderers and the exec credential plugins
of a kubeconfig get none of them: the fake helm (sandbox/helm.py, a real executable on HELM_BIN) records
the names of the environment it was started with, and these tests read them back.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from config.settings import Settings
from sandbox.helm import recorded_calls
from workers.helm import Helm, helm_environment

REPO = Path(__file__).resolve().parent.parent
CHART = REPO / "examples" / "plate-web"

# What a worker pod holds besides what helm needs (values are fakes).
PLATE_SECRETS = {
    "SLACK_BOT_TOKEN": "xoxb-1111-2222-secretbot",
    "SLACK_SIGNING_SECRET": "signing-secret-value",
    "SLACK_APP_TOKEN": "xapp-1-secretapp",
    "SLACK_API_URL": "https://slack.example/api/",
    "REDIS_URL": "redis://:redis-pass@plate-bot-redis:6379/0",
    "REDIS_PASSWORD": "redis-pass",
    "REDISCLI_AUTH": "redis-pass",
    "PLATE_BACKUP_KEY": "x" * 43 + "=",
    "PLATE_BACKUPS": "encrypted",
    "PLATE_CONFIG": "/etc/plate/environments.yaml",
    "DATABASE_PASSWORD": "not-listed-so-not-passed",
}
# What helm, client-go and exec credential plugins read.
HELM_NEEDS = {
    "HOME": "/tmp",
    "TMPDIR": "/tmp",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "HELM_CACHE_HOME": "/tmp/helm/cache",
    "HELM_CONFIG_HOME": "/tmp/helm/config",
    "HELM_DATA_HOME": "/tmp/helm/data",
    "XDG_CACHE_HOME": "/tmp/.cache",
    "HTTPS_PROXY": "http://proxy.internal:3128",
    "NO_PROXY": "10.0.0.0/8,.svc",
    "https_proxy": "http://proxy.internal:3128",
    "KUBERNETES_SERVICE_HOST": "10.96.0.1",
    "KUBERNETES_SERVICE_PORT": "443",
    "AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/plate-bot",
    "AWS_WEB_IDENTITY_TOKEN_FILE": "/var/run/secrets/eks.amazonaws.com/serviceaccount/token",
    "GOOGLE_APPLICATION_CREDENTIALS": "/var/run/gcp/key.json",
    "CLOUDSDK_CORE_PROJECT": "plate",
    "AZURE_CLIENT_ID": "00000000-0000-0000-0000-000000000000",
    "AAD_LOGIN_METHOD": "workloadidentity",
    "SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt",
}


def _denied(name: str) -> bool:
    return name.upper().startswith(("SLACK_", "REDIS_", "PLATE_")) or name.upper() == "REDISCLI_AUTH"


@pytest.fixture
def worker_env(monkeypatch: pytest.MonkeyPatch, helm_bin: Path, tmp_path: Path) -> Path:
    """The worker's environment as the chart sets it, HELM_BIN pointing at the fake helm."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    for name, value in {**PLATE_SECRETS, **HELM_NEEDS}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("HELM_BIN", str(helm_bin))
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.delenv("PLATE_HELM_ENV_ALLOW", raising=False)
    return kubeconfig


def _helm(settings: Settings) -> Helm:
    # As workers.procedures.JobContext.helm and the watcher build it.
    return Helm(settings.helm_bin, namespace="plate-prod", kube_context="plate-prod", kubeconfig=settings.kubeconfig)


def test_helm_gets_no_plate_bot_secret_but_what_it_needs(worker_env: Path, helm_state: Path) -> None:
    settings = Settings()
    helm = _helm(settings)
    assert helm.status("plate-web") is None  # a real subprocess: the fake helm answers "not found"
    helm.upgrade(
        "plate-web", CHART, [CHART / "values-production.yaml"], image_tag="1.4.0", timeout=60, description="env test"
    )
    assert helm.status("plate-web")["info"]["status"] == "deployed"  # helm works with the trimmed environment

    calls = recorded_calls(helm_state)
    assert [c["argv"][0] for c in calls] == ["status", "upgrade", "status"]
    for call in calls:
        names = set(call["env_names"])
        leaked = sorted(n for n in names if _denied(n) or n in PLATE_SECRETS)
        assert leaked == [], f"helm {call['argv'][0]} saw {leaked}"
        assert set(HELM_NEEDS) <= names, sorted(set(HELM_NEEDS) - names)
        assert "PATH" in names
        assert call["env_kubeconfig"] == str(worker_env)
        assert call["argv"][-4:] == ["--kube-context", "plate-prod", "-n", "plate-prod"]


def test_operators_may_add_names_but_never_plate_bot_secrets(
    worker_env: Path, helm_state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PLATE_HELM_ENV_ALLOW adds names (or prefixes ending in *) for unusual exec plugins; the deny rules win."""
    monkeypatch.setenv("VAULT_ADDR", "https://vault.internal:8200")
    monkeypatch.setenv("OCI_CLI_PROFILE", "plate")
    monkeypatch.setenv("OCI_CLI_REGION", "eu-frankfurt-1")
    monkeypatch.setenv("PLATE_HELM_ENV_ALLOW", "VAULT_ADDR, OCI_CLI_*, SLACK_BOT_TOKEN, REDIS_*, PLATE_BACKUP_KEY, *")
    _helm(Settings()).status("plate-web")
    names = set(recorded_calls(helm_state)[-1]["env_names"])
    assert {"VAULT_ADDR", "OCI_CLI_PROFILE", "OCI_CLI_REGION"} <= names
    assert not [n for n in names if _denied(n)]
    assert "DATABASE_PASSWORD" not in names  # a lone "*" does not open the list


def test_helm_environment_is_an_allow_list() -> None:
    environ = {
        **PLATE_SECRETS,
        **HELM_NEEDS,
        "PATH": "/usr/bin",
        "slack_bot_token": "xoxb-lowercase",  # plate-bot's settings are read case-insensitively
        "Redis_Url": "redis://:p@h/0",
        "KUBECONFIG": "/home/me/.kube/config",
        "SOMETHING_ELSE": "x",
        "FAKE_HELM_STATE": "/tmp/state",
    }
    env = helm_environment(environ, kubeconfig="/etc/plate/kube/config")
    assert env["KUBECONFIG"] == "/etc/plate/kube/config"  # plate-bot's kubeconfig setting wins
    assert set(env) == {*HELM_NEEDS, "PATH", "KUBECONFIG", "FAKE_HELM_STATE"}
    assert all(env[name] == environ[name] for name in env if name != "KUBECONFIG")
    assert helm_environment({"PATH": "/bin"}) == {"PATH": "/bin"}
