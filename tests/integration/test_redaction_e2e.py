"""Secrets never reach Slack or the logs, end to end.

A corpus of realistic leaks is planted where jobs pick up text: helm's stderr echoing values, the
SecretStore and ExternalSecret status messages (one holding the exact, shapeless OpenBao token read from
Secret `openbao-token`), the test pod's events (a basic-auth URL, the docker config), and the docker
Secret itself. The real service runs `harbor-verify` and a failing `deploy`; then every call the fake
Slack received and every line of the JSON log stream are searched for every secret.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox.helm import set_behaviour
from sandbox.kubeapi import FakeKubeAPI
from sandbox.slack import FakeSlack
from tests.integration.harbor_fixtures import (
    PASSWORD,
    USER,
    docker_config_json,
    external_secret,
    fake_registry,
    secret,
    secret_store,
    seed_chain,
)
from tests.integration.k8s_fixtures import ago
from tests.integration.test_harbor import (  # noqa: F401 - _warm_kubernetes_client is an autouse fixture
    NS,
    _warm_kubernetes_client,
    harbor_service,
    registry_settings,
    run_command,
    summary_line,
)

SHAPELESS_TOKEN = "obtok7Hq2Lx9Vw3RzK"  # no tell-tale shape: only exact-value redaction can catch it
VAULT_TOKEN = "hvs.CAESIJzL9kQ2xY7pWm4nVb8rTe1uGh5oKd3sFa6"
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJyb2JvdCRwbGF0ZSJ9.c2lnbmF0dXJlLWZvci10ZXN0cy1vbmx5"
DB_PASSWORD = "Zq8-db-pw-hunter2"
SLACK_TOKEN = "xoxb-1234567890-0987654321-AbCdEfGhIjKlMnOp"


def corpus(registry: str) -> dict[str, str]:
    """name -> secret value that must appear nowhere."""
    config = docker_config_json(registry)
    return {
        "openbao token (shapeless)": SHAPELESS_TOKEN,
        "openbao token (hvs.)": VAULT_TOKEN,
        "bearer token": JWT,
        "harbor password": PASSWORD,
        "docker auth": base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode(),
        "dockerconfigjson (base64)": base64.b64encode(config.encode()).decode(),
        "database password": DB_PASSWORD,
        "slack token": SLACK_TOKEN,
    }


def leaky_kubelet(api: FakeKubeAPI, registry: str, stop: threading.Event) -> None:
    """A kubelet whose pull errors echo credentials, as misconfigured registries and CRI shims have done."""
    seen: set[str] = set()
    config_b64 = base64.b64encode(docker_config_json(registry).encode()).decode()
    messages = [
        f'Failed to pull image "{registry}/plate/plate-web:1.4.0": rpc error: code = Unknown desc = Get '
        f'"https://{USER}:{PASSWORD}@{registry}/v2/plate/plate-web/manifests/1.4.0": 401 Unauthorized',
        f"Failed to pull image: error parsing pull secret: .dockerconfigjson={config_b64}: unauthorized",
        f"Failed to pull image: registry said: Authorization: Bearer {JWT} rejected: unauthorized",
    ]
    while not stop.wait(0.02):
        for pod in api.list("v1", "Pod", NS):
            name = pod["metadata"]["name"]
            if name in seen or not name.startswith("plate-harbor-verify-"):
                continue
            seen.add(name)
            waiting = {"reason": "ImagePullBackOff", "message": f'Back-off pulling image "{registry}/plate/plate-web"'}
            api.patch_status(
                "v1",
                "Pod",
                name,
                {"phase": "Pending", "containerStatuses": [{"name": "pull-test", "state": {"waiting": waiting}}]},
                NS,
            )
            for i, message in enumerate(messages):
                involved = {"kind": "Pod", "name": name, "namespace": NS}
                api.put({"apiVersion": "v1", "kind": "Event", "metadata": {"name": f"{name}.{i}", "namespace": NS},
                         "involvedObject": involved, "reason": "Failed", "type": "Warning", "message": message,
                         "count": 3, "firstTimestamp": ago(20), "lastTimestamp": ago(1)})  # fmt: skip


@pytest.fixture
def log_file(tmp_path: Path) -> Iterator[Path]:
    """Every JSON log record of this process and of the forked work-horses (they inherit the handler)."""
    from core import logs

    path = tmp_path / "plate.jsonl"
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    with open(path, "a", encoding="utf-8") as stream:
        logs.configure("DEBUG", stream=stream)
        try:
            yield path
        finally:
            root.handlers[:], _ = saved
            root.setLevel(saved[1])


def everything_slack_got(fake_slack: FakeSlack) -> str:
    calls = [json.dumps({"method": c.method, "params": c.params}, default=str) for c in fake_slack.calls]
    hooks = [json.dumps(body, default=str) for _name, body in fake_slack.hooks]
    return "\n".join(calls + hooks)


def test_no_secret_reaches_slack_or_the_logs(
    plate_env: dict[str, Any],
    fake_slack: FakeSlack,
    kube_api: FakeKubeAPI,
    helm_state: Path,
    log_file: Path,
) -> None:
    with fake_registry() as registry:
        seed_chain(kube_api, NS, registry.host, token=SHAPELESS_TOKEN)
        kube_api.put(
            secret_store(
                NS,
                ready=False,
                message=f"invalid vault credentials: token {SHAPELESS_TOKEN} was rejected: Code: 403. "
                "* permission denied",
            )
        )
        kube_api.put(
            external_secret(
                NS,
                ready=False,
                message="could not get secret data from provider: GET https://openbao:8200/v1/secret/data/harbor "
                f"X-Vault-Token: {VAULT_TOKEN} Authorization: Bearer {JWT}: Code: 403 permission denied",
            )
        )
        kube_api.put(
            secret(
                "harbor-docker-secret",
                NS,
                {".dockerconfigjson": docker_config_json(registry.host)},
                "kubernetes.io/dockerconfigjson",
            )
        )
        set_behaviour(
            helm_state,
            upgrade="fail",
            stderr_extra=(
                f"Error: UPGRADE FAILED: values: --set db.password={DB_PASSWORD} harbor.password={PASSWORD}\n"
                f"env: OPENBAO_TOKEN={VAULT_TOKEN} SLACK_BOT_TOKEN={SLACK_TOKEN}\n"
                f"registry auth: {docker_config_json(registry.host)}\n"
                f"Authorization: Basic {base64.b64encode(f'{USER}:{PASSWORD}'.encode()).decode()}"
            ),
        )
        stop = threading.Event()
        kubelet = threading.Thread(target=leaky_kubelet, args=(kube_api, registry.host, stop), daemon=True)
        kubelet.start()
        try:
            with harbor_service(plate_env, fake_slack, **registry_settings(registry)) as service:
                status, replies = run_command(service, "harbor-verify stg")
                deploy_status, deploy_replies = run_deploy(service)
        finally:
            stop.set()
            kubelet.join(2)
        leaks = corpus(registry.host)

    # The leak sites were exercised: their surroundings arrived, with the secrets cut out.
    slack = everything_slack_got(fake_slack)
    assert "token [REDACTED] was rejected" in slack
    assert "X-Vault-Token: [REDACTED]" in status or "X-Vault-Token: [REDACTED]" in slack
    assert "https://[REDACTED]@" in slack and "*Events of the test pod*" in "\n".join(replies)
    walk = replies[0]
    assert "Secret harbor-docker-secret — `kubernetes.io/dockerconfigjson` with credentials" in walk  # not over-cut
    assert "SecretStore `openbao-harbor` not Ready: OpenBao rejected the token" in summary_line(status)
    assert "helm upgrade failed" in deploy_status.lower() or "helm upgrade failed" in "\n".join(deploy_replies).lower()
    assert "db.password=[REDACTED]" in slack
    logged = log_file.read_text()
    assert '"request_id"' in logged and "job ended" in logged  # the stream did capture the jobs' records

    for name, value in leaks.items():
        assert value not in slack, f"{name} reached Slack"
        assert value not in logged, f"{name} reached the logs"
    # Nor did a recognisable part of a secret survive a cut (an ellipsis in a shortened line).
    for value in (SHAPELESS_TOKEN, PASSWORD, VAULT_TOKEN[:20], JWT[:30]):
        assert value[: max(10, len(value) // 2)] not in slack


def run_deploy(service: Any) -> tuple[str, list[str]]:
    """A staging deploy whose helm upgrade fails with the leaky stderr; its thread's status and replies."""
    from tests.integration.test_harbor import rendered

    before = {m.ts for m in service.slack.messages("C0DEPLOYS") if not m.thread_ts or m.thread_ts == m.ts}
    status, _ = service.command("deploy stg 1.4.1")
    assert status == 200
    service.wait(lambda: service.runtime.queue.count == 1)
    service.run_worker()
    cards = [
        m
        for m in service.slack.messages("C0DEPLOYS")
        if (not m.thread_ts or m.thread_ts == m.ts) and m.ts not in before
    ]
    thread = service.slack.thread("C0DEPLOYS", cards[0].ts)
    return rendered(thread[1].blocks), [m.text for m in thread[2:]]
