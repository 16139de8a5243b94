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
from tests.faults.conftest import thread_text
from tests.processes import free_port

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


def test_a_transient_api_error_during_rollout_verification_is_retried(
    service: Service, cluster, kube_api: FakeKubeAPI, helm_state
) -> None:
    """One 500 and one 503 (an API server restarting, an etcd leader change) while the worker verifies
    the rollout: the reads are tried again and the deploy succeeds instead of failing after helm did."""
    kube_api.fail("GET", r"/apis/apps/v1/namespaces/plate-stg/deployments", 500, times=1)
    kube_api.fail("GET", r"/api/v1/namespaces/plate-stg/pods", 503, times=1)
    text = _deploy_stg(service)
    assert " *deploy stg* — succeeded" in text, text
    assert ":white_check_mark: Rollout verification" in text, text
    assert service.runtime.store.lock_holder("stg") is None
    assert kube_api.failures_left() == 0  # both errors were served (to reads the worker then repeated)


def test_writes_are_never_repeated_on_an_error_status(tmp_path: Path, kube_api: FakeKubeAPI) -> None:
    """A 500 to a create may come after the server acted: the adapter reports it and does not send the
    write again (only GETs are retried on a status)."""
    from workers.errors import KubeError
    from workers.kube import KubeGateway

    kubeconfig = kube_api.write_kubeconfig(str(tmp_path / "kubeconfig"), {"plate-stg": "stg-cluster"})
    gateway = KubeGateway.connect("plate-stg", kubeconfig)
    kube_api.fail("POST", r"/api/v1/namespaces/plate-stg/pods$", 500, times=1)
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe"}, "spec": {"containers": []}}
    with pytest.raises(KubeError) as raised:
        gateway.create_pod("plate-stg", pod)
    assert raised.value.status == 500
    assert [r.method for r in kube_api.requests if r.path.endswith("/pods")] == ["POST"]
    kube_api.fail("GET", r"/api/v1/namespaces/plate-stg/pods$", 500, times=2)
    assert gateway.pods("plate-stg") == []  # two 500s, then the answer: GETs are retried
    assert [r.method for r in kube_api.requests if r.path.endswith("/pods")] == ["POST", "GET", "GET", "GET"]
