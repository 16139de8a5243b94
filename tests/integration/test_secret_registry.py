"""The Secret values every process knows before it posts: the Kubernetes adapter lists them for a job, the
watcher lists then watches them (a changed Secret replaces its values, a deleted one drops them), RBAC's
403 is logged once and redaction goes on with the patterns. Real `kubernetes` client, loopback API server."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from config.environments import parse_config
from core.redact import MASK, REDACTOR
from sandbox.kubeapi import FakeKubeAPI
from sandbox.slack import FakeSlack
from tests.conftest import plate_config
from tests.integration.test_watcher import Watchers
from tests.waiting import wait_until
from workers import kube as kube_module
from workers.kube import KubeGateway

NS = "plate-prod"


def secret(name: str, ns: str = NS, type_: str = "Opaque", **values: str) -> dict[str, Any]:
    data = {k: base64.b64encode(v.encode()).decode() for k, v in values.items()}
    return {"apiVersion": "v1", "kind": "Secret", "type": type_, "metadata": {"name": name, "namespace": ns},
            "data": data}  # fmt: skip


@pytest.fixture
def registry() -> Iterator[None]:
    """The process-wide registry, emptied of what these tests register."""
    yield
    for source in REDACTOR.sources():
        if isinstance(source, tuple) and source[:1] == ("secret",):
            REDACTOR.remove(source)


def known(value: str) -> bool:
    return REDACTOR.text(f"<{value}>") == f"<{MASK}>"


def test_a_job_learns_the_secrets_of_its_namespaces(
    plate_env: dict[str, Any], kube_api: FakeKubeAPI, registry: None, caplog: pytest.LogCaptureFixture
) -> None:
    kube_api.put(secret("app", OPENBAO_TOKEN="jobTok9Xq2Lm7Vw", username="robot$plate"))
    kube_api.put(
        secret("sh.helm.release.v1.plate-web.v1", type_="helm.sh/release.v1", release="H4sIrelAAAA-not-a-secret1")
    )
    kube_api.put(secret("default-token", type_="kubernetes.io/service-account-token", token="eyJsaTok3n.eyJx.sig-1",
                        namespace=NS))  # fmt: skip
    gateway = KubeGateway.connect("plate-prod", plate_env["KUBECONFIG"])
    kube_api.fail("GET", r"/namespaces/forbidden/secrets", 403, times=None, message='secrets is forbidden: User "x"')
    kube_module._warned.discard(("plate-prod", "forbidden"))
    with caplog.at_level(logging.WARNING, logger="plate.kube"):
        assert gateway.learn_secrets([NS, "forbidden", NS]) == [NS]
        assert gateway.learn_secrets(["forbidden"]) == []
    assert known("jobTok9Xq2Lm7Vw") and known(base64.b64encode(b"jobTok9Xq2Lm7Vw").decode())
    assert known("eyJsaTok3n.eyJx.sig-1")  # service-account tokens are secrets
    assert not known("H4sIrelAAAA-not-a-secret1")  # helm's release records are not listed at all
    assert not known("robot$plate") and not known(NS)  # user names and namespaces are not secrets
    list_calls = [r for r in kube_api.requests if r.method == "GET" and r.path.endswith(f"/namespaces/{NS}/secrets")]
    assert "type!=helm.sh/release.v1" in str(list_calls[-1].query)
    warnings = [r for r in caplog.records if "cannot list the Secrets of forbidden" in r.getMessage()]
    assert len(warnings) == 1 and "jobTok9" not in caplog.text  # once, and without values

    kube_api.delete("v1", "Secret", "app", NS)  # deleted: the next job's list drops its values
    gateway.learn_secrets([NS])
    assert not known("jobTok9Xq2Lm7Vw") and known("eyJsaTok3n.eyJx.sig-1")


@pytest.fixture
def watchers(plate_env: dict[str, Any], fake_slack: FakeSlack, helm_bin: Path) -> Iterator[Watchers]:
    config = parse_config(plate_config())
    w = Watchers(config, plate_env["REDIS_URL"], fake_slack, plate_env["KUBECONFIG"], helm_bin)
    yield w
    w.stop_all()


def test_the_watcher_knows_the_secrets_before_it_watches_and_follows_them(
    kube_api: FakeKubeAPI, watchers: Watchers, registry: None
) -> None:
    kube_api.put(secret("openbao-token", token="wTok1Ab9Cd8Ef7Gh"))
    kube_api.put(secret("db", "plate-stg", password="stgPw2Xy8Zq"))
    watcher = watchers.start("w1")
    wait_until(lambda: watcher.active)
    # Listed before any other stream started: known by the time the watcher is active.
    assert known("wTok1Ab9Cd8Ef7Gh") and known("stgPw2Xy8Zq")
    secret_streams = [s for s in watcher.streams if s.key.kind == "secrets"]
    assert {s.key.namespace for s in secret_streams} == {"plate-prod", "plate-stg"}
    assert watcher.streams[: len(secret_streams)] == secret_streams

    kube_api.put(secret("registry", password="newPw3Rs7Tu"))  # created
    wait_until(lambda: known("newPw3Rs7Tu"))
    kube_api.put(secret("openbao-token", token="rotTok4Vw6Xy"))  # rotated: the old value is forgotten
    wait_until(lambda: known("rotTok4Vw6Xy") and not known("wTok1Ab9Cd8Ef7Gh"))
    kube_api.delete("v1", "Secret", "registry", NS)  # deleted
    wait_until(lambda: not known("newPw3Rs7Tu"))
    # 410 Gone: the relist replaces the namespace; a Secret deleted meanwhile is dropped too.
    wait_until(lambda: all(s.watching for s in secret_streams))
    kube_api.delete("v1", "Secret", "db", "plate-stg")
    kube_api.expire_watches()
    wait_until(lambda: not known("stgPw2Xy8Zq"))
    # The Secrets never reach the classification (their stream feeds only the registry).
    assert all(kind != "secrets" for view in watcher.views.values() for kind, _ in view.objects)
    assert watcher.queue.qsize() == 0 or all(item.key.kind != "secrets" for item in list(watcher.queue.queue))


def test_the_watcher_starts_without_secrets_it_may_not_list(
    kube_api: FakeKubeAPI, watchers: Watchers, registry: None
) -> None:
    kube_api.fail("GET", r"/secrets", 403, times=None, message="secrets is forbidden")
    watcher = watchers.start("w1")
    wait_until(lambda: watcher.active, timeout=5)  # not the 10 s wait: a 403 answers the question
    assert any(s.key.kind == "pods" and s.is_alive() for s in watcher.streams)
