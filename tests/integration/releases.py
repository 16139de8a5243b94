"""Helpers for the rollback, history and audit tests: revisions made with the fake helm (applied to the
loopback API, where a simulated cluster rolls them out), and the service driven like people in Slack."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client import ApiClient

from config.environments import load_config
from core.requests import Request, Status
from sandbox.cluster import SimulatedCluster
from sandbox.harbor import pull_secret
from sandbox.kubeapi import FakeKubeAPI
from tests.conftest import ROOT, Service, plate_config
from workers import jobs as _jobs  # noqa: F401
from workers.kube import KubeGateway

# Import the job code and the kubernetes client's API modules (loaded lazily, ~1 s) once in this process:
# every work-horse the tests fork then starts warm.
KubeGateway(ApiClient())

CHART = ROOT / "examples" / "plate-web"
CONTEXTS = {
    "prod": ("plate-prod", "plate-prod", "values-production.yaml"),
    "stg": ("plate-stg", "plate-stg", "values-staging.yaml"),
}


@pytest.fixture(name="sim")
def sim_fixture(kube_api: FakeKubeAPI, monkeypatch: pytest.MonkeyPatch) -> Iterator[SimulatedCluster]:
    """A cluster that rolls pods out; the fake helm applies what it renders to it."""
    monkeypatch.setenv("FAKE_HELM_KUBE_URL", kube_api.url)
    for ns in ("plate-stg", "plate-prod", "kube-system", "argocd"):
        kube_api.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "uid": f"uid-{ns}"}})
    with SimulatedCluster(kube_api, ready_after=0.1) as cluster:
        yield cluster


def by_hand(helm_bin: Path, env: str, tag: str, *extra: str) -> None:
    """A revision made outside plate-bot: someone ran helm themselves."""
    context, namespace, values = CONTEXTS[env]
    argv = [str(helm_bin), "upgrade", "--install", "plate-web", str(CHART), "-f", str(CHART / values)]
    argv += ["--set-string", f"image.tag={tag}", *extra, "--kube-context", context, "-n", namespace]
    subprocess.run(argv, check=True, capture_output=True, text=True)


def configure(plate_env: dict[str, Any], top: dict[str, Any] | None = None, **envs: dict[str, Any]) -> None:
    """Rewrite the environments file before the service starts (list this fixture's user first)."""
    config = plate_config(**envs)
    config.update(top or {})
    Path(plate_env["config_path"]).write_text(yaml.safe_dump(config))


def reload(service: Service, plate_env: dict[str, Any]) -> None:
    service.runtime.listeners.services.config = load_config(plate_env["config_path"])


def prod_images_from(
    service: Service, plate_env: dict[str, Any], api: FakeKubeAPI, *, host: str, url: str, repository: str,
    tmp_path: Path, creds: tuple[str, str], **prod: Any,
) -> None:  # fmt: skip
    """prod's chart names its image `host/repository` and prod's Harbor is the registry at `url`, with
    `creds` in its pull secret; `prod` adds environment keys (image_policy, …). The service re-reads it."""
    values = tmp_path / "values-registry.yaml"
    values.write_text(yaml.safe_dump({"image": {"repository": f"{host}/{repository}"}}))
    env = plate_config()["environments"]["prod"]
    harbor = {"registry": host, "registry_url": url, "test_image": f"{host}/{repository}:1.4.0"}
    configure(plate_env, prod={"values": [*env["values"], str(values)], "harbor": harbor, **prod})
    reload(service, plate_env)
    api.put(pull_secret("plate-prod", host, *creds))


def newest_request(service: Service) -> Request:
    requests = [service.runtime.store.get(i) for i in service.request_ids()]
    return max((r for r in requests if r is not None), key=lambda r: r.created_at)


def command_and_check(service: Service, text: str, *, user: str = "U0BOB") -> Request:
    """/plate <text>, then the pre-approval job (a rollback's target check) drained by a real worker."""
    before = set(service.request_ids())
    status, body = service.command(text, user=user)
    assert status == 200 and body == b"", body
    service.wait(lambda: set(service.request_ids()) - before)
    request = service.wait(lambda: (r := newest_request(service)).message_ts and r)
    service.wait(lambda: service.runtime.queue.count >= 1)
    service.run_worker()
    return service.runtime.store.get(request.id)


def approve_and_run(service: Service, request: Request, *, approver: str = "U0CAROL", action: str = "plate_approve"):
    assert request.status is Status.PENDING and request.planned, service.slack.dump()
    assert service.click(action, request.id, user=approver) == 200
    service.wait(lambda: service.runtime.store.get(request.id).status is Status.APPROVED)
    service.wait(lambda: service.runtime.queue.count == 1)
    service.run_worker()
    return service.runtime.store.get(request.id)


def card(service: Service, request: Request) -> str:
    message = next(m for m in service.slack.messages("C0DEPLOYS") if m.ts == request.message_ts)
    return json.dumps(message.blocks, ensure_ascii=False)


def thread(service: Service, request: Request) -> str:
    return service.slack.render_thread("C0DEPLOYS", request.message_ts)


def ephemeral_texts(service: Service, user: str) -> list[str]:
    return [e["text"] if isinstance(e, dict) else e.text for e in service.slack.ephemerals(user)]
