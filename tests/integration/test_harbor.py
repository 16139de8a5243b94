"""`/plate harbor-verify` and `/plate harbor-bootstrap` end to end: signed command -> queue -> real RQ
worker -> the loopback Kubernetes API serving the Harbor pull-secret chain, a registry on loopback, the
simulated kubelet for the test pod -> the thread in the fake Slack.

The chain is served healthy, then broken at each link in turn; every case must end with the right first
broken link named. The registry check also runs against the real CNCF Distribution registry (Debian's
`docker-registry`), Basic and Bearer flows.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox.cluster import SimulatedCluster
from sandbox.kubeapi import FakeKubeAPI
from sandbox.signing import home_opened_body, post, sign
from sandbox.slack import FakeSlack
from tests.conftest import ROOT, SIGNING_SECRET, Service, write_config
from tests.integration import distribution
from tests.integration.harbor_fixtures import (
    ESO_NS,
    PASSWORD,
    REPO,
    TAG,
    USER,
    FakeRegistry,
    argo_controller,
    docker_config_json,
    eso_pod,
    external_secret,
    fake_registry,
    secret,
    secret_store,
    seed_chain,
    verify_pods,
)

NS = "plate-stg"


@contextlib.contextmanager
def harbor_service(
    plate_env: dict[str, Any], fake_slack: FakeSlack, env: str = "stg", **harbor: Any
) -> Iterator[Service]:
    """The production runtime with `harbor:` settings for `env` (the config is written before it loads)."""
    from bot.runtime import build_runtime
    from config.environments import load_config
    from config.settings import Settings

    write_config(plate_env, **{env: {"harbor": harbor}})
    settings = Settings()
    runtime = build_runtime(settings, load_config(settings.plate_config))
    server = runtime.http_server("127.0.0.1", 0)
    threading.Thread(target=runtime.run_http, args=(server,), daemon=True).start()
    try:
        yield Service(runtime, server, fake_slack)
    finally:
        runtime.shutdown(server)


def registry_settings(reg: Any, **more: Any) -> dict[str, Any]:
    return {
        "registry": reg.host,
        "test_image": f"{reg.host}/{REPO}:{TAG}",
        "registry_url": reg.url,
        "pod_timeout": "10s",
        **more,
    }


@pytest.fixture(scope="module", autouse=True)
def _warm_kubernetes_client() -> None:
    """The client imports its API classes lazily (about a second); every forked work-horse would pay it
    again. Importing them here once lets the horses inherit them."""
    from kubernetes import client

    for api in ("CoreV1Api", "AppsV1Api", "NetworkingV1Api", "AutoscalingV2Api", "CustomObjectsApi"):
        getattr(client, api)


@pytest.fixture
def registry() -> Iterator[FakeRegistry]:
    with fake_registry() as reg:
        yield reg


@pytest.fixture
def cluster(kube_api: FakeKubeAPI) -> Iterator[SimulatedCluster]:
    with SimulatedCluster(kube_api, ready_after=0.02, tick=0.02) as sim:
        yield sim


def run_command(service: Service, text: str, user: str = "U0BOB") -> tuple[str, list[str]]:
    """(the status message as text, the replies after it) of the command's job."""
    status, _ = service.command(text, user=user)
    assert status == 200
    service.wait(lambda: service.runtime.queue.count == 1)
    service.run_worker()
    return job_thread(service)


def job_thread(service: Service) -> tuple[str, list[str]]:
    card = service.slack.messages("C0DEPLOYS")[0]
    thread = service.slack.thread("C0DEPLOYS", card.ts)
    assert len(thread) >= 2, service.slack.render_thread("C0DEPLOYS", card.ts)
    return rendered(thread[1].blocks), [m.text for m in thread[2:]]


SUMMARY = "» "


def rendered(blocks: list[dict[str, Any]]) -> str:
    """A status message's blocks as text: sections as they are, the context (the summary) after `» `."""
    lines = []
    for block in blocks:
        if block.get("type") == "section":
            lines.append(block["text"]["text"])
        elif block.get("type") == "context":
            lines.append(SUMMARY + " ".join(e.get("text", "") for e in block["elements"]))
    return "\n".join(lines)


def summary_line(status_text: str) -> str:
    """The job's one-line outcome on its status message."""
    found = [line[len(SUMMARY) :] for line in status_text.splitlines() if line.startswith(SUMMARY)]
    assert len(found) == 1, status_text
    return found[0]


def deleted_test_pods(kube_api: FakeKubeAPI) -> list[str]:
    return [
        r.path.rsplit("/", 1)[-1]
        for r in kube_api.requests
        if r.method == "DELETE" and "/pods/plate-harbor-verify-" in r.path
    ]


def created_test_pods(kube_api: FakeKubeAPI) -> list[Any]:
    return [r for r in kube_api.requests if r.method == "POST" and r.path.endswith(f"/namespaces/{NS}/pods")]


def assert_pod_cleaned_up(kube_api: FakeKubeAPI) -> None:
    created = [r.body["metadata"]["name"] for r in created_test_pods(kube_api)]
    assert len(created) == 1
    assert deleted_test_pods(kube_api) == created
    assert verify_pods(kube_api, NS) == []


def test_healthy_chain_passes_every_check(
    plate_env: dict, fake_slack: FakeSlack, kube_api: FakeKubeAPI, registry: FakeRegistry, cluster: SimulatedCluster
) -> None:
    seed_chain(kube_api, NS, registry.host)
    with harbor_service(plate_env, fake_slack, **registry_settings(registry)) as service:
        status, replies = run_command(service, "harbor-verify stg")
    assert "*harbor-verify stg* — succeeded" in status
    assert status.count(":white_check_mark:") == 9 and ":x:" not in status
    assert "1/1 pods running in `external-secrets-system`" in status
    assert "Ready (v1): store validated" in status
    assert "synced · last sync 2m ago" in status and "refreshInterval 1h" in status
    assert f"`kubernetes.io/dockerconfigjson` with credentials for {registry.host}" in status
    assert "readable (bearer auth" in status and "digest `sha256:" in status
    assert "Running: " in status and "pulled with `harbor-docker-secret`" in status
    assert summary_line(status) == f"chain healthy: 9 checks passed, `{registry.host}/{REPO}:{TAG}` pulls"
    assert replies == []
    # The registry was asked the way a runtime asks: challenge, token for the pull scope, manifest.
    paths = [path.split("?")[0] for path, _auth in registry.requests]
    assert paths == ["/v2/", "/service/token", f"/v2/{REPO}/manifests/{TAG}"]
    assert "scope=repository%3Aplate%2Fplate-web%3Apull" in registry.requests[1][0]
    assert registry.requests[1][1].startswith("Basic ") and registry.requests[2][1].startswith("Bearer ")
    # The test pod: labelled, pulling with the docker secret, always pulling, and deleted afterwards.
    (create,) = created_test_pods(kube_api)
    spec = create.body["spec"]
    assert create.body["metadata"]["labels"]["plate-bot/harbor-verify"] == "true"
    assert spec["imagePullSecrets"] == [{"name": "harbor-docker-secret"}]
    assert spec["containers"][0]["image"] == f"{registry.host}/{REPO}:{TAG}"
    assert spec["containers"][0]["imagePullPolicy"] == "Always" and spec["restartPolicy"] == "Never"
    assert_pod_cleaned_up(kube_api)
    assert PASSWORD not in fake_slack.dump()


def _break_eso(api: FakeKubeAPI, _reg: FakeRegistry, _cluster: SimulatedCluster) -> None:
    api.put(eso_pod(running=False))


def _no_eso(api: FakeKubeAPI, _reg: FakeRegistry, _cluster: SimulatedCluster) -> None:
    api.delete("v1", "Pod", "external-secrets-6b8f7c9d5-x2kq4", ESO_NS)


def _no_token(api: FakeKubeAPI, _reg: FakeRegistry, _cluster: SimulatedCluster) -> None:
    api.delete("v1", "Secret", "openbao-token", NS)


def _placeholder_token(api: FakeKubeAPI, _reg: FakeRegistry, _cluster: SimulatedCluster) -> None:
    api.put(secret("openbao-token", NS, {"token": "REPLACE_WITH_OPENBAO_TOKEN"}))


def _no_sa(api: FakeKubeAPI, _reg: FakeRegistry, _cluster: SimulatedCluster) -> None:
    api.delete("v1", "ServiceAccount", "harbor-secret-reader", NS)


def _store_rejects_token(api: FakeKubeAPI, _reg: FakeRegistry, _cluster: SimulatedCluster) -> None:
    message = (
        "unable to validate store: invalid vault credentials: Error making API request. URL: GET "
        "https://openbao.example.com:8200/v1/auth/token/lookup-self Code: 403. Errors: * permission denied"
    )
    api.put(secret_store(NS, ready=False, message=message))


def _store_unreachable(api: FakeKubeAPI, _reg: FakeRegistry, _cluster: SimulatedCluster) -> None:
    message = (
        'unable to create client: Get "https://openbao.example.com:8200/v1/sys/health": '
        "dial tcp: lookup openbao.example.com on 10.96.0.10:53: no such host"
    )
    api.put(secret_store(NS, ready=False, message=message))


def _remote_key_missing(api: FakeKubeAPI, _reg: FakeRegistry, _cluster: SimulatedCluster) -> None:
    api.put(
        external_secret(NS, ready=False, message="could not get secret data from provider: key harbor/robot not found")
    )


def _opaque_docker_secret(api: FakeKubeAPI, reg: FakeRegistry, _cluster: SimulatedCluster) -> None:
    api.put(secret("harbor-docker-secret", NS, {".dockerconfigjson": docker_config_json(reg.host)}))


def _other_registry(api: FakeKubeAPI, _reg: FakeRegistry, _cluster: SimulatedCluster) -> None:
    data = {".dockerconfigjson": docker_config_json("registry.other.example.com")}
    api.put(secret("harbor-docker-secret", NS, data, "kubernetes.io/dockerconfigjson"))


def _wrong_password(api: FakeKubeAPI, reg: FakeRegistry, cluster: SimulatedCluster) -> None:
    data = {".dockerconfigjson": docker_config_json(reg.host, password="Stale-robot-pw-0000")}
    api.put(secret("harbor-docker-secret", NS, data, "kubernetes.io/dockerconfigjson"))
    cluster.fail_images(re.escape(TAG) + "$", "Unauthorized")


def _no_pull_permission(_api: FakeKubeAPI, reg: FakeRegistry, cluster: SimulatedCluster) -> None:
    reg.refuse.add(USER)
    cluster.fail_images(re.escape(TAG) + "$", "Unauthorized")


def _image_missing(_api: FakeKubeAPI, reg: FakeRegistry, cluster: SimulatedCluster) -> None:
    reg.images.clear()
    cluster.fail_images(re.escape(TAG) + "$", "NotFound")


def _kubelet_unauthorized(_api: FakeKubeAPI, _reg: FakeRegistry, cluster: SimulatedCluster) -> None:
    cluster.fail_images(re.escape(TAG) + "$", "Unauthorized")


def _kubelet_cannot_connect(_api: FakeKubeAPI, _reg: FakeRegistry, cluster: SimulatedCluster) -> None:
    cluster.fail_images(re.escape(TAG) + "$", "ImagePullBackOff")


BROKEN = [
    # (case, break the chain, the step marked failed, the verdict line must contain)
    ("eso-crashing", _break_eso, "External Secrets Operator running", "External Secrets Operator is not running"),
    ("eso-absent", _no_eso, "External Secrets Operator running", "External Secrets Operator has no pods"),
    ("token-missing", _no_token, "OpenBao token Secret", "Secret `openbao-token` is missing"),
    ("token-placeholder", _placeholder_token, "OpenBao token Secret", "still holds the `REPLACE` placeholder"),
    ("sa-missing", _no_sa, "ServiceAccount of the secret reader", "ServiceAccount `harbor-secret-reader` is missing"),
    (
        "store-token-rejected",
        _store_rejects_token,
        "SecretStore Ready",
        "SecretStore `openbao-harbor` not Ready: OpenBao rejected the token; check Secret `openbao-token`",
    ),
    ("store-unreachable", _store_unreachable, "SecretStore Ready", "not Ready: OpenBao is unreachable"),
    ("remote-key-missing", _remote_key_missing, "ExternalSecret synced", "not at its remoteRef in OpenBao"),
    ("docker-secret-opaque", _opaque_docker_secret, "Harbor docker Secret", "is not a usable pull secret"),
    ("docker-secret-other-host", _other_registry, "Harbor docker Secret", "does not name the registry 127.0.0.1:"),
    ("registry-401", _wrong_password, "Registry pull check (v2 API)", "Harbor rejected the credentials in"),
    ("registry-403", _no_pull_permission, "Registry pull check (v2 API)", "may not pull `127.0.0.1:"),
    ("registry-404", _image_missing, "Registry pull check (v2 API)", "does not exist in the registry (404)"),
    ("kubelet-unauthorized", _kubelet_unauthorized, "Test pod pulls the image", "The kubelet's pull was unauthorized"),
    ("kubelet-unreachable", _kubelet_cannot_connect, "Test pod pulls the image", "The node cannot reach 127.0.0.1:"),
]


@pytest.mark.parametrize(("breaker", "failed_step", "expected"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN])
def test_chain_broken_at_each_link_names_the_first_broken_link(
    plate_env: dict,
    fake_slack: FakeSlack,
    kube_api: FakeKubeAPI,
    registry: FakeRegistry,
    cluster: SimulatedCluster,
    breaker: Callable[[FakeKubeAPI, FakeRegistry, SimulatedCluster], None],
    failed_step: str,
    expected: str,
) -> None:
    seed_chain(kube_api, NS, registry.host)
    breaker(kube_api, registry, cluster)
    with harbor_service(plate_env, fake_slack, **registry_settings(registry)) as service:
        status, replies = run_command(service, "harbor-verify stg")
    assert "*harbor-verify stg* — failed" in status
    assert f":x: {failed_step}" in status
    line = summary_line(status)
    assert expected in line, line
    # Later checks still ran (the registry check is skipped only without credentials to try).
    results = status.count(":white_check_mark:") + status.count(":x:") + status.count(":heavy_minus_sign:")
    assert results == 9, status
    assert ":heavy_minus_sign:" not in status or "no credentials for" in status
    assert replies and replies[0].startswith("*The chain, walked back from the pull*")
    walk = replies[0].splitlines()
    assert walk[1].startswith((":x: pod pull", ":white_check_mark: pod pull"))
    assert f"*First broken link:* {line}" in walk
    assert_pod_cleaned_up(kube_api)


def test_several_broken_links_name_the_earliest_the_secret_store(
    plate_env: dict, fake_slack: FakeSlack, kube_api: FakeKubeAPI, registry: FakeRegistry, cluster: SimulatedCluster
) -> None:
    """The seed's incident: the store lost its token, so ESO stopped syncing, the docker Secret is gone, and
    pods fail with ImagePullBackOff. The diagnosis walks back from the pull to the SecretStore."""
    seed_chain(kube_api, NS, registry.host)
    _store_rejects_token(kube_api, registry, cluster)
    kube_api.put(external_secret(NS, ready=False, message="the desired SecretStore openbao-harbor is not ready"))
    kube_api.delete("v1", "Secret", "harbor-docker-secret", NS)
    cluster.fail_images(re.escape(TAG) + "$", "Unauthorized")
    with harbor_service(plate_env, fake_slack, **registry_settings(registry)) as service:
        status, replies = run_command(service, "harbor-verify stg")
    assert status.count(":x:") == 4  # store, external secret, docker secret, pod
    assert ":heavy_minus_sign: Registry pull check (v2 API)" in status and "no credentials for 127.0.0.1:" in status
    assert "`ImagePullBackOff`" in status and "401 Unauthorized" in status
    assert summary_line(status).startswith("SecretStore `openbao-harbor` not Ready: OpenBao rejected the token")
    walk = replies[0]
    assert walk.index(":x: pod pull") < walk.index(":x: Secret harbor-docker-secret") < walk.index(":x: SecretStore")
    assert "*Events of the test pod*" in walk and "Error: ImagePullBackOff" in walk
    assert_pod_cleaned_up(kube_api)


def test_extra_namespace_missing(
    plate_env: dict, fake_slack: FakeSlack, kube_api: FakeKubeAPI, registry: FakeRegistry, cluster: SimulatedCluster
) -> None:
    seed_chain(kube_api, NS, registry.host)
    with harbor_service(plate_env, fake_slack, **registry_settings(registry, namespaces=["plate-prod"])) as service:
        status, _ = run_command(service, "harbor-verify stg")
    assert ":x: Namespaces exist" in status and "missing: `plate-prod`" in status
    assert summary_line(status).startswith(
        "A namespace of the chain is missing; create it, or run `/plate harbor-bootstrap stg`"
    )


def watch_home(service: Service, user: str = "U0BOB") -> Callable[[], str]:
    """Open `user`'s App Home (so a job's end re-publishes it); returns a reader of its last-operation text
    once the job's refresh has landed."""
    body = home_opened_body(user)
    assert post(service.url, body, sign(SIGNING_SECRET, body))[0] == 200
    service.wait(lambda: user in service.slack.home_views)

    def read() -> str:
        service.wait(lambda: "*harbor-" in json.dumps(service.slack.home_views[user]["blocks"]))
        return json.dumps(service.slack.home_views[user]["blocks"], ensure_ascii=False)

    return read


def unreachable_url(where: str) -> str:
    """A registry API plate-bot's pod cannot reach: nothing listens there, or the name does not resolve."""
    return f"http://127.0.0.1:{distribution.free_port()}" if where == "refused" else "http://harbor.invalid"


@pytest.mark.parametrize("where", ["refused", "dns"])
def test_healthy_chain_with_an_unreachable_registry_passes_with_a_warning(
    plate_env: dict,
    fake_slack: FakeSlack,
    kube_api: FakeKubeAPI,
    registry: FakeRegistry,
    cluster: SimulatedCluster,
    where: str,
) -> None:
    """Issue 18: the nodes pull, plate-bot's own pod cannot reach the registry API (its NetworkPolicy, DNS).
    The pull proves the chain: the job succeeds, the registry step is a warning with its reason and a hint,
    and the status message, the verdict line, the thread and App Home all say so."""
    seed_chain(kube_api, NS, registry.host)
    url = unreachable_url(where)
    with harbor_service(plate_env, fake_slack, **registry_settings(registry, registry_url=url)) as service:
        home = watch_home(service)
        status, replies = run_command(service, "harbor-verify stg")
        last_operation = home()
    assert "*harbor-verify stg* — succeeded" in status, status
    registry_step = next(line for line in status.splitlines() if "Registry pull check" in line)
    assert registry_step.startswith(":warning: Registry pull check (v2 API)")
    assert f"cannot connect to {url}" in registry_step and ("DNS" in registry_step) is (where == "dns")
    assert "pulls do not take this path" in registry_step and "`harbor.registry_url`" in registry_step
    assert status.count(":white_check_mark:") == 8 and ":x:" not in status
    assert summary_line(status) == (
        f"chain works: 8 checks passed, `{registry.host}/{REPO}:{TAG}` pulls · warning: plate-bot's pod cannot "
        f"reach the registry API at {url}"
    )
    assert replies == []  # no broken link to walk back to
    assert ":white_check_mark: *harbor-verify* by <@U0BOB>" in last_operation
    assert f"chain works: 8 checks passed, `{registry.host}/{REPO}:{TAG}` pulls" in last_operation
    assert registry.requests == []  # the fake registry was never the one asked
    assert_pod_cleaned_up(kube_api)


def test_registry_refusing_the_credentials_fails_beside_a_working_pull(
    plate_env: dict, fake_slack: FakeSlack, kube_api: FakeKubeAPI, registry: FakeRegistry, cluster: SimulatedCluster
) -> None:
    """A reachable registry's answer about the credentials still fails the registry link, even when the
    kubelet pulled (a node-level credential or a mirror can hide it): the test pod's result is said beside."""
    seed_chain(kube_api, NS, registry.host)
    registry.users[USER] = "rotated-in-harbor-0001"
    with harbor_service(plate_env, fake_slack, **registry_settings(registry)) as service:
        home = watch_home(service)
        status, replies = run_command(service, "harbor-verify stg")
        last_operation = home()
    assert "*harbor-verify stg* — failed" in status and ":x: Registry pull check (v2 API)" in status
    line = summary_line(status)
    assert line.startswith("Harbor rejected the credentials in `harbor-docker-secret` (401)")
    assert line.endswith(f" · test pod: pulled `{registry.host}/{REPO}:{TAG}` all the same")
    assert f"*First broken link:* {line}" in replies[0].splitlines()
    assert ":x: *harbor-verify* by <@U0BOB>" in last_operation and "Harbor rejected the credentials" in last_operation


def test_external_secrets_v1beta1_only(
    plate_env: dict, fake_slack: FakeSlack, kube_api: FakeKubeAPI, registry: FakeRegistry, cluster: SimulatedCluster
) -> None:
    """An older ESO serves only external-secrets.io/v1beta1: v1 answers 404 and the checks fall back."""
    seed_chain(kube_api, NS, registry.host)
    kube_api.put(secret_store(NS, version="v1beta1"))
    kube_api.put(external_secret(NS, version="v1beta1"))
    kube_api.fail("GET", r"^/apis/external-secrets\.io/v1/", 404, times=None)
    with harbor_service(plate_env, fake_slack, **registry_settings(registry)) as service:
        status, _ = run_command(service, "harbor-verify stg")
    assert "Ready (v1beta1): store validated" in status
    assert "chain healthy" in summary_line(status)
    asked = {r.path.split("/")[3] for r in kube_api.requests if r.path.startswith("/apis/external-secrets.io/")}
    assert asked == {"v1", "v1beta1"}


def test_pod_timeout_is_reported_and_the_pod_deleted(
    plate_env: dict, fake_slack: FakeSlack, kube_api: FakeKubeAPI, registry: FakeRegistry
) -> None:
    """No kubelet picks the pod up (no SimulatedCluster): it stays Pending until harbor.pod_timeout."""
    seed_chain(kube_api, NS, registry.host)
    with harbor_service(plate_env, fake_slack, **registry_settings(registry, pod_timeout="1s")) as service:
        status, _ = run_command(service, "harbor-verify stg")
    assert ":x: Test pod pulls the image" in status and "not Running after 1s (Pending; no events)" in status
    assert summary_line(status).startswith("The test pod did not start in time")
    assert_pod_cleaned_up(kube_api)


def test_pod_deleted_when_reading_it_fails(
    plate_env: dict, fake_slack: FakeSlack, kube_api: FakeKubeAPI, registry: FakeRegistry
) -> None:
    seed_chain(kube_api, NS, registry.host)
    kube_api.fail("GET", rf"^/api/v1/namespaces/{NS}/pods/plate-harbor-verify-", 500, times=None)
    with harbor_service(plate_env, fake_slack, **registry_settings(registry)) as service:
        status, _ = run_command(service, "harbor-verify stg")
    assert ":x: Test pod pulls the image" in status and "Kubernetes could not read pod" in status
    assert summary_line(status).startswith("Plate-bot could not check the test pod: the Kubernetes API refused")
    assert_pod_cleaned_up(kube_api)


def test_leftover_test_pods_of_a_crashed_run_are_removed(
    plate_env: dict, fake_slack: FakeSlack, kube_api: FakeKubeAPI, registry: FakeRegistry, cluster: SimulatedCluster
) -> None:
    seed_chain(kube_api, NS, registry.host)
    labels = {"plate-bot/harbor-verify": "true"}
    for name, born, phase in (
        ("plate-harbor-verify-old", "2020-01-01T00:00:00Z", "Pending"),
        ("young", None, "Running"),
    ):
        meta = {"name": name, "namespace": NS, "labels": labels, **({"creationTimestamp": born} if born else {})}
        kube_api.put(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": meta,
                "spec": {"nodeName": "n1"},
                "status": {"phase": phase},
            }
        )
    with harbor_service(plate_env, fake_slack, **registry_settings(registry)) as service:
        status, _ = run_command(service, "harbor-verify stg")
    assert "removed 1 leftover test pod(s) of an earlier run" in status
    assert [p["metadata"]["name"] for p in verify_pods(kube_api, NS)] == ["young"]  # a running check's pod is left
    assert "plate-harbor-verify-old" in deleted_test_pods(kube_api)


def test_api_forbidden_becomes_evidence_not_a_crash(
    plate_env: dict, fake_slack: FakeSlack, kube_api: FakeKubeAPI, registry: FakeRegistry, cluster: SimulatedCluster
) -> None:
    seed_chain(kube_api, NS, registry.host)
    kube_api.fail("GET", rf"^/api/v1/namespaces/{NS}/secrets/openbao-token", 403, times=None)
    with harbor_service(plate_env, fake_slack, **registry_settings(registry)) as service:
        status, _ = run_command(service, "harbor-verify stg")
    assert ":x: OpenBao token Secret" in status and "403 Forbidden" in status
    assert summary_line(status).startswith(
        "Plate-bot could not check the token Secret: the Kubernetes API refused or failed; see"
    )
    assert status.count(":white_check_mark:") == 8  # the other checks ran and passed
    assert "Traceback" not in fake_slack.dump()


def test_verify_alias_and_no_lock_or_approval(
    plate_env: dict, fake_slack: FakeSlack, kube_api: FakeKubeAPI, registry: FakeRegistry, cluster: SimulatedCluster
) -> None:
    """harbor-verify reads only: prod (which needs approval for changes) runs it at once, unlocked."""
    seed_chain(kube_api, "plate-prod", registry.host)
    with harbor_service(plate_env, fake_slack, env="prod", **registry_settings(registry)) as service:
        status, _ = run_command(service, "verify-harbor production")
        assert service.runtime.store.lock_holder("prod") is None
    assert "*harbor-verify prod* — succeeded" in status


# --- harbor-bootstrap -----------------------------------------------------------------------------------


@pytest.fixture
def manifests(tmp_path: Path) -> Path:
    """The example manifests with a real token in place of the placeholder."""
    target = tmp_path / "harbor-auth"
    shutil.copytree(ROOT / "examples" / "harbor-auth", target)
    token = target / "openbao-token-secret.yaml"
    token.write_text(re.sub(r"REPLACE\S*", "hvs.CAESIBootstrapTokenForTests0001", token.read_text()))
    return target


def bootstrappable(kube_api: FakeKubeAPI, registry: FakeRegistry) -> list[dict[str, Any]]:
    """ESO running, and an Argo CD that seeds the chain in stg when it syncs `harbor-auth-eso`: what
    harbor-bootstrap finds in a cluster it can set up. Returns the syncs the controller ran."""
    kube_api.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ESO_NS}})
    kube_api.put(eso_pod())
    return argo_controller(kube_api, "argocd", "harbor-auth-eso", lambda: seed_chain(kube_api, NS, registry.host))


def test_bootstrap_applies_the_application_syncs_and_verifies(
    plate_env: dict,
    fake_slack: FakeSlack,
    kube_api: FakeKubeAPI,
    registry: FakeRegistry,
    cluster: SimulatedCluster,
    manifests: Path,
) -> None:
    ran = bootstrappable(kube_api, registry)
    settings = registry_settings(registry, manifests_dir=str(manifests))
    with harbor_service(plate_env, fake_slack, **settings) as service:
        status, replies = run_command(service, "harbor-bootstrap stg")
        assert service.runtime.store.lock_holder("stg") is None  # released after the job
    assert "*harbor-bootstrap stg* — succeeded" in status, status
    assert "5 manifests in" in status and "`openbao-token-secret.yaml` holds a token" in status
    assert "created `plate-stg`" in status
    assert "Application `harbor-auth-eso` created in `argocd`" in status
    assert "sync triggered: operation Succeeded, sync Synced, health Healthy" in status
    assert summary_line(status).startswith("chain healthy: 9 checks passed")
    assert status.count(":white_check_mark:") == 13 and replies == []
    app = kube_api.get("argoproj.io/v1alpha1", "Application", "harbor-auth-eso", "argocd")
    assert app is not None and app["spec"]["destination"]["namespace"] == "plate-stg"
    assert len(ran) == 1 and ran[0]["sync"]["revision"] == "main" and ran[0]["initiatedBy"]["username"] == "plate-bot"
    assert "hvs.CAESIBootstrapTokenForTests0001" not in fake_slack.dump()


def test_bootstrap_with_an_unreachable_registry_succeeds(
    plate_env: dict,
    fake_slack: FakeSlack,
    kube_api: FakeKubeAPI,
    registry: FakeRegistry,
    cluster: SimulatedCluster,
    manifests: Path,
) -> None:
    """Issue 18: applied, synced, and the test pod pulls: a success, though plate-bot's pod cannot reach the
    registry API. The same rule as harbor-verify's, on the same status message and App Home."""
    bootstrappable(kube_api, registry)
    url = unreachable_url("dns")
    settings = registry_settings(registry, manifests_dir=str(manifests), registry_url=url)
    with harbor_service(plate_env, fake_slack, **settings) as service:
        home = watch_home(service)
        status, replies = run_command(service, "harbor-bootstrap stg")
        last_operation = home()
    assert "*harbor-bootstrap stg* — succeeded" in status, status
    assert "sync triggered: operation Succeeded, sync Synced, health Healthy" in status
    assert ":warning: Registry pull check (v2 API)" in status and ":x:" not in status
    line = summary_line(status)
    assert line.startswith(f"chain works: 8 checks passed, `{registry.host}/{REPO}:{TAG}` pulls · warning: ")
    assert replies == [] and status.count(":white_check_mark:") == 12
    assert ":white_check_mark: *harbor-bootstrap* by <@U0BOB>" in last_operation and "chain works" in last_operation


def test_bootstrap_updates_an_existing_application(
    plate_env: dict,
    fake_slack: FakeSlack,
    kube_api: FakeKubeAPI,
    registry: FakeRegistry,
    cluster: SimulatedCluster,
    manifests: Path,
) -> None:
    seed_chain(kube_api, NS, registry.host)
    kube_api.put(
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Application",
            "metadata": {"name": "harbor-auth-eso", "namespace": "argocd"},
            "spec": {"project": "old", "ignoreDifferences": [{"kind": "Secret"}], "destination": {"namespace": "x"}},
            "status": {"operationState": {"phase": "Succeeded", "startedAt": "2020-01-01T00:00:00Z"}},
        }
    )
    argo_controller(kube_api, "argocd", "harbor-auth-eso", lambda: None)
    with harbor_service(plate_env, fake_slack, **registry_settings(registry, manifests_dir=str(manifests))) as service:
        status, _ = run_command(service, "harbor-bootstrap stg")
    assert "Application `harbor-auth-eso` updated in `argocd`" in status and "all exist" in status
    app = kube_api.get("argoproj.io/v1alpha1", "Application", "harbor-auth-eso", "argocd")
    assert app is not None and app["spec"]["project"] == "default" and "ignoreDifferences" not in app["spec"]
    assert "chain healthy" in summary_line(status)


def test_bootstrap_refuses_the_placeholder_and_changes_nothing(
    plate_env: dict, fake_slack: FakeSlack, kube_api: FakeKubeAPI, registry: FakeRegistry
) -> None:
    kube_api.put(eso_pod())
    settings = registry_settings(registry, manifests_dir=str(ROOT / "examples" / "harbor-auth"))
    with harbor_service(plate_env, fake_slack, **settings) as service:
        status, _ = run_command(service, "harbor-bootstrap stg")
    assert ":x: No REPLACE placeholder in the token manifest" in status
    assert "`openbao-token-secret.yaml` still has the `REPLACE` placeholder on line" in status
    writes = [r for r in kube_api.requests if r.method in ("POST", "PATCH", "PUT", "DELETE")]
    assert writes == []


def test_bootstrap_stops_before_changes_when_eso_is_missing(
    plate_env: dict, fake_slack: FakeSlack, kube_api: FakeKubeAPI, registry: FakeRegistry, manifests: Path
) -> None:
    with harbor_service(plate_env, fake_slack, **registry_settings(registry, manifests_dir=str(manifests))) as service:
        status, _ = run_command(service, "harbor-bootstrap stg")
    assert ":x: External Secrets Operator running" in status
    assert "nothing was changed" in summary_line(status)
    assert [r for r in kube_api.requests if r.method in ("POST", "PATCH", "PUT", "DELETE")] == []


def test_bootstrap_with_missing_manifests(
    plate_env: dict, fake_slack: FakeSlack, kube_api: FakeKubeAPI, registry: FakeRegistry, manifests: Path
) -> None:
    (manifests / "serviceaccount.yaml").unlink()
    with harbor_service(plate_env, fake_slack, **registry_settings(registry, manifests_dir=str(manifests))) as service:
        status, _ = run_command(service, "harbor-bootstrap stg")
    assert ":x: Required manifests" in status and "`serviceaccount.yaml` is missing" in status


def test_bootstrap_sync_failure_still_checks_the_chain(
    plate_env: dict,
    fake_slack: FakeSlack,
    kube_api: FakeKubeAPI,
    registry: FakeRegistry,
    cluster: SimulatedCluster,
    manifests: Path,
) -> None:
    kube_api.put(eso_pod())
    message = "one or more objects failed to apply, reason: secretstores.external-secrets.io is forbidden"
    argo_controller(kube_api, "argocd", "harbor-auth-eso", lambda: None, phase="Failed", message=message)
    with harbor_service(plate_env, fake_slack, **registry_settings(registry, manifests_dir=str(manifests))) as service:
        status, replies = run_command(service, "harbor-bootstrap stg")
    assert ":x: Argo CD sync" in status and "operation Failed, sync OutOfSync" in status and "forbidden" in status
    line = summary_line(status)
    assert line.startswith("Argo CD sync of `harbor-auth-eso` did not succeed · Secret `openbao-token` is missing")
    assert ":x: OpenBao token Secret" in status  # the checks ran after the failed sync
    assert replies[0].startswith("*The chain, walked back from the pull*")


def test_bootstrap_in_production_needs_approval(
    plate_env: dict,
    fake_slack: FakeSlack,
    kube_api: FakeKubeAPI,
    registry: FakeRegistry,
    cluster: SimulatedCluster,
    manifests: Path,
) -> None:
    kube_api.put(eso_pod())
    argo_controller(kube_api, "argocd", "harbor-auth-eso", lambda: seed_chain(kube_api, "plate-prod", registry.host))
    with harbor_service(
        plate_env, fake_slack, env="prod", **registry_settings(registry, manifests_dir=str(manifests))
    ) as service:
        status, _ = service.command("harbor-bootstrap prod")
        assert status == 200
        card = service.wait(lambda: fake_slack.messages("C0DEPLOYS"))[0]
        assert "Needs 1 approval" in str(card.blocks) and service.runtime.queue.count == 0
        assert service.click("plate_approve", service.request_ids()[0], user="U0BOB") == 200  # own request: refused
        assert service.runtime.queue.count == 0
        assert service.click("plate_approve", service.request_ids()[0], user="U0ALICE") == 200
        service.wait(lambda: service.runtime.queue.count == 1)
        assert service.runtime.store.lock_holder("prod")  # the environment lock is held for the job
        service.run_worker()
        status_text, _ = job_thread(service)
        assert service.runtime.store.lock_holder("prod") is None
    assert "*harbor-bootstrap prod* — succeeded" in status_text


# --- the registry check against the real CNCF Distribution registry ------------------------------------------


def _install_docker_registry() -> str | None:
    """The binary, installed with apt when missing and we are root (as scripts/test does); None if impossible."""
    if distribution.binary() is None and hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        for cmd in (["apt-get", "install", "-y", "-q", "docker-registry"], ["apt-get", "update", "-q"],
                    ["apt-get", "install", "-y", "-q", "docker-registry"]):  # fmt: skip
            if subprocess.run(cmd, capture_output=True, timeout=600).returncode == 0 and distribution.binary():
                break
    return distribution.binary()


@pytest.fixture(scope="session")
def real_registries(tmp_path_factory: pytest.TempPathFactory) -> Iterator[distribution.Registries]:
    if _install_docker_registry() is None:
        pytest.skip(
            "docker-registry (CNCF Distribution) is not installed and cannot be installed here "
            "(needs root and apt-get: `apt-get install -y docker-registry`, which scripts/test does)"
        )
    with distribution.registries(tmp_path_factory.mktemp("distribution")) as regs:
        yield regs


REAL_CASES = [
    # (case, which registry, credentials, image reference (repo:tag), expected cause, detail contains)
    ("basic-ok", "basic", distribution.PULLER, f"{REPO}:{TAG}", "ok", "readable (basic auth"),
    ("basic-401", "basic", (distribution.PULLER[0], "wrong-pw-123"), f"{REPO}:{TAG}", "unauthorized", "401"),
    ("basic-404-tag", "basic", distribution.PULLER, f"{REPO}:9.9.9", "not-found", "MANIFEST_UNKNOWN"),
    ("basic-404-repo", "basic", distribution.PULLER, "plate/nothing:1.0", "not-found", "(404)"),
    ("bearer-ok", "token", distribution.PULLER, f"{REPO}:{TAG}", "ok", "readable (bearer auth"),
    (
        "bearer-401",
        "token",
        (distribution.PULLER[0], "wrong-pw-123"),
        f"{REPO}:{TAG}",
        "unauthorized",
        "token service (401)",
    ),
    ("bearer-403", "token", distribution.DENIED, f"{REPO}:{TAG}", "denied", "refused pull on `plate/plate-web` (403)"),
    (
        "bearer-scope",
        "token",
        distribution.NOSCOPE,
        f"{REPO}:{TAG}",
        "denied",
        "no pull permission on `plate/plate-web`",
    ),
    ("bearer-404", "token", distribution.PULLER, f"{REPO}:9.9.9", "not-found", "MANIFEST_UNKNOWN"),
]


@pytest.mark.parametrize(
    ("which", "creds", "ref", "cause", "detail"), [c[1:] for c in REAL_CASES], ids=[c[0] for c in REAL_CASES]
)
def test_registry_check_against_distribution(
    real_registries: distribution.Registries, which: str, creds: tuple[str, str], ref: str, cause: str, detail: str
) -> None:
    from workers.harbor.chain import parse_image
    from workers.registry import check_pull

    reg = getattr(real_registries, which)
    result = check_pull(reg.url, parse_image(f"{reg.host}/{ref}"), *creds)
    assert (result.cause.value, detail in result.detail) == (cause, True), result
    assert creds[1] not in result.detail
    if cause == "ok":
        assert result.digest == real_registries.digest


def test_registry_check_bearer_asks_for_the_pull_scope(real_registries: distribution.Registries) -> None:
    from workers.harbor.chain import parse_image
    from workers.registry import check_pull

    reg, tokens = real_registries.token, real_registries.token_server
    before = len(tokens.requests)
    assert check_pull(reg.url, parse_image(f"{reg.host}/{REPO}:{TAG}"), *distribution.PULLER).cause.value == "ok"
    assert tokens.requests[before:] == [{"scope": f"repository:{REPO}:pull", "service": distribution.SERVICE}]


@pytest.mark.parametrize("case", ["tls", "unreachable"])
def test_registry_check_transport_failures(real_registries: distribution.Registries, case: str) -> None:
    from workers.harbor.chain import parse_image
    from workers.registry import check_pull

    basic = real_registries.basic
    url = basic.url.replace("http://", "https://") if case == "tls" else f"http://127.0.0.1:{distribution.free_port()}"
    result = check_pull(url, parse_image(f"{basic.host}/{REPO}:{TAG}"), *distribution.PULLER)
    assert result.cause.value == case, result
    assert ("TLS handshake" if case == "tls" else "Connection refused") in result.detail


@pytest.mark.parametrize(
    ("password", "verdict"),
    [(distribution.PULLER[1], "chain healthy"), ("stale-pw-0000", "Harbor rejected the credentials")],
    ids=["valid-credentials", "stale-credentials"],
)
def test_harbor_verify_job_against_distribution(
    real_registries: distribution.Registries,
    plate_env: dict,
    fake_slack: FakeSlack,
    kube_api: FakeKubeAPI,
    cluster: SimulatedCluster,
    password: str,
    verdict: str,
) -> None:
    reg = real_registries.token
    seed_chain(kube_api, NS, reg.host)
    data = {".dockerconfigjson": docker_config_json(reg.host, user=distribution.PULLER[0], password=password)}
    kube_api.put(secret("harbor-docker-secret", NS, data, "kubernetes.io/dockerconfigjson"))
    with harbor_service(plate_env, fake_slack, **registry_settings(reg)) as service:
        status, _ = run_command(service, "harbor-verify stg")
    assert verdict in summary_line(status)
    assert password not in fake_slack.dump()
