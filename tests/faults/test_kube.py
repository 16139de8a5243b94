"""The Kubernetes API failing mid-deploy (after helm changed the release, while the worker verifies the
rollout): refused connections, 500s, 403s. The thread must say plainly what failed, the environment lock
must be released, and no client internals (tracebacks, HTTP headers) may reach Slack."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sandbox.helm import read_releases
from sandbox.kubeapi import FakeKubeAPI
from tests.conftest import Service
from tests.faults.conftest import free_port, thread_text

pytestmark = pytest.mark.faults


def _deploy_stg(service: Service) -> str:
    service.command("deploy stg 1.5.0")
    service.wait(lambda: service.runtime.queue.count == 1, timeout=10)
    service.run_worker()
    return thread_text(service)


def _assert_clean_failure(service: Service, text: str, expected: str) -> None:
    assert " *deploy stg* — failed" in text, text
    assert ":white_check_mark: helm upgrade --install --atomic --wait" in text
    assert ":x: Rollout verification" in text and expected in text, text
    assert service.runtime.store.lock_holder("stg") is None
    dump = service.slack.dump()
    for leak in ("Traceback", "HTTPHeaderDict", "ApiException", "urllib3"):
        assert leak not in dump


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (500, "Kubernetes could not list deployments in plate-stg (500)"),
        (403, "Kubernetes refused to list deployments in plate-stg (403 Forbidden)"),
    ],
)
def test_api_errors_during_rollout_verification(
    service: Service, cluster, kube_api: FakeKubeAPI, helm_state, status: int, expected: str
) -> None:
    """helm succeeds, then every read of the Deployments answers 500 (or 403): the deploy fails at
    "Rollout verification" with the API's answer in one line, and stg is free again."""
    kube_api.fail("GET", r"/apis/apps/v1/namespaces/plate-stg/deployments", status, times=None)
    text = _deploy_stg(service)
    _assert_clean_failure(service, text, expected)
    assert read_releases(helm_state, "plate-web", "plate-stg")[-1]["info"]["status"] == "deployed"


def test_api_unreachable_during_rollout_verification(service: Service, cluster, plate_env, kube_api) -> None:
    """The worker's route to the API server is gone (connection refused) while helm could still apply:
    the thread says the API could not be reached, and stg is free again."""
    config = json.loads(Path(plate_env["KUBECONFIG"]).read_text())
    for entry in config["clusters"]:
        entry["cluster"]["server"] = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    Path(plate_env["KUBECONFIG"]).write_text(json.dumps(config))
    text = _deploy_stg(service)
    _assert_clean_failure(service, text, "cannot reach the Kubernetes API to list deployments in plate-stg")
