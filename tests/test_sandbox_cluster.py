"""sandbox/cluster.py: the simulated controllers driven through FakeKubeAPI with the real `kubernetes` client."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from sandbox.cluster import SimulatedCluster
from sandbox.helm import install_wrapper
from sandbox.kubeapi import FakeKubeAPI
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent
NS = "plate-prod"
IMAGE = "harbor.example.com/plate/plate-web"


@pytest.fixture
def cluster(kube_api: FakeKubeAPI) -> Iterator[SimulatedCluster]:
    with SimulatedCluster(kube_api, ready_after=0.15, tick=0.02) as sim:
        yield sim


def deployment(name: str = "plate-web", tag: str = "1.4.0", replicas: int = 2) -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/instance": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "web", "image": f"{IMAGE}:{tag}"}]},
            },
        },
    }


def pods(kc: client.ApiClient, name: str = "plate-web") -> list[client.V1Pod]:
    core = client.CoreV1Api(kc)
    return core.list_namespaced_pod(NS, label_selector=f"app.kubernetes.io/name={name}").items


def test_deployment_pods_become_ready(kube_api: FakeKubeAPI, kc: client.ApiClient) -> None:
    apps = client.AppsV1Api(kc)
    with SimulatedCluster(kube_api, ready_after=0.6, tick=0.02) as cluster:
        apps.create_namespaced_deployment(NS, deployment(replicas=3))
        first = wait_until(lambda: pods(kc), 5, "the first pods")
        waiting = first[0].status.container_statuses[0].state.waiting
        assert first[0].status.phase == "Pending" and waiting.reason == "ContainerCreating"
        cluster.settle()
    items = pods(kc)
    assert len(items) == 3
    for pod in items:
        assert pod.status.phase == "Running"
        assert {c.type: c.status for c in pod.status.conditions}["Ready"] == "True"
        cs = pod.status.container_statuses[0]
        assert cs.ready and cs.restart_count == 0 and cs.state.running is not None
        assert cs.image == f"{IMAGE}:1.4.0" and cs.image_id.startswith(f"{IMAGE}@sha256:")
        assert pod.metadata.name.startswith("plate-web-") and "pod-template-hash" in pod.metadata.labels
    status = apps.read_namespaced_deployment_status("plate-web", NS).status
    assert (status.observed_generation, status.replicas, status.updated_replicas) == (1, 3, 3)
    assert (status.ready_replicas, status.available_replicas, status.unavailable_replicas) == (3, 3, None)
    conds = {c.type: c for c in status.conditions}
    assert conds["Available"].status == "True"
    assert conds["Progressing"].reason == "NewReplicaSetAvailable"
    reasons = {e.reason for e in client.CoreV1Api(kc).list_namespaced_event(NS).items}
    assert {"Scheduled", "Pulling", "Pulled", "Started", "ScalingReplicaSet"} <= reasons


def test_image_change_rolls_pods(cluster: SimulatedCluster, kc: client.ApiClient) -> None:
    apps = client.AppsV1Api(kc)
    apps.create_namespaced_deployment(NS, deployment())
    cluster.settle()
    old = {p.metadata.name for p in pods(kc)}
    old_hash = pods(kc)[0].metadata.labels["pod-template-hash"]
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": f"{IMAGE}:1.5.0"}]}}}}
    assert apps.patch_namespaced_deployment("plate-web", NS, patch).metadata.generation == 2
    cluster.settle()
    new = pods(kc)
    assert len(new) == 2 and not old & {p.metadata.name for p in new}
    assert all(p.spec.containers[0].image == f"{IMAGE}:1.5.0" and p.status.phase == "Running" for p in new)
    assert new[0].metadata.labels["pod-template-hash"] != old_hash
    status = apps.read_namespaced_deployment("plate-web", NS).status
    assert (status.observed_generation, status.updated_replicas, status.ready_replicas) == (2, 2, 2)
    rs = {r.metadata.name: r for r in apps.list_namespaced_replica_set(NS).items}
    assert rs[f"plate-web-{old_hash}"].spec.replicas == 0
    assert rs[new[0].metadata.owner_references[0].name].status.ready_replicas == 2


def test_owner_chain_and_delete_cascades(cluster: SimulatedCluster, kc: client.ApiClient) -> None:
    apps, core = client.AppsV1Api(kc), client.CoreV1Api(kc)
    dep = apps.create_namespaced_deployment(NS, deployment(replicas=1))
    cluster.settle()
    pod = pods(kc)[0]
    (rs_ref,) = pod.metadata.owner_references
    assert rs_ref.kind == "ReplicaSet" and rs_ref.controller
    rs = apps.read_namespaced_replica_set(rs_ref.name, NS)
    assert rs.metadata.uid == rs_ref.uid and rs.metadata.name == f"plate-web-{pod.metadata.labels['pod-template-hash']}"
    (dep_ref,) = rs.metadata.owner_references
    assert (dep_ref.kind, dep_ref.name, dep_ref.uid) == ("Deployment", "plate-web", dep.metadata.uid)
    # A pod deleted by hand is replaced, as the ReplicaSet controller would.
    core.delete_namespaced_pod(pod.metadata.name, NS)
    wait_until(lambda: [p for p in pods(kc) if p.metadata.name != pod.metadata.name], 5, "a replacement pod")
    apps.delete_namespaced_deployment("plate-web", NS)
    wait_until(lambda: not pods(kc) and not apps.list_namespaced_replica_set(NS).items, 5, "pods and ReplicaSets gone")


def events_for(kc: client.ApiClient, pod: str) -> list[client.CoreV1Event]:
    return client.CoreV1Api(kc).list_namespaced_event(NS, field_selector=f"involvedObject.name={pod}").items


def test_unauthorized_image_backs_off_with_events(kube_api: FakeKubeAPI, kc: client.ApiClient) -> None:
    apps = client.AppsV1Api(kc)
    with SimulatedCluster(kube_api, ready_after=0.1, tick=0.02, image_failures={r":9\.9\.9$": "Unauthorized"}) as sim:
        apps.create_namespaced_deployment(NS, deployment(tag="9.9.9"))
        sim.settle()
        time.sleep(0.25)  # a few more retries: counts must grow on the same events
        items = pods(kc)
        assert len(items) == 2
        for pod in items:
            cs = pod.status.container_statuses[0]
            assert pod.status.phase == "Pending" and not cs.ready
            assert cs.state.waiting.reason == "ImagePullBackOff"
            assert cs.state.waiting.message == f'Back-off pulling image "{IMAGE}:9.9.9"'
        name = items[0].metadata.name
        events = events_for(kc, name)
        assert all(e.involved_object.kind == "Pod" and e.involved_object.uid == items[0].metadata.uid for e in events)
        failed = [e for e in events if e.reason == "Failed" and e.message.startswith("Failed to pull image")]
        assert len(failed) == 1 and failed[0].type == "Warning" and failed[0].count >= 2
        assert "401 Unauthorized" in failed[0].message and "unauthorized: authentication required" in failed[0].message
        assert "https://harbor.example.com/v2/plate/plate-web/manifests/9.9.9" in failed[0].message
        assert failed[0].source.component == "kubelet" and failed[0].first_timestamp and failed[0].last_timestamp
        backoff = [e for e in events if e.reason == "BackOff"]
        assert len(backoff) == 1 and backoff[0].message == f'Back-off pulling image "{IMAGE}:9.9.9"'
        status = apps.read_namespaced_deployment("plate-web", NS).status
        assert status.observed_generation == 1 and not status.ready_replicas and status.unavailable_replicas == 2
        assert {c.type: c.reason for c in status.conditions}["Progressing"] == "ReplicaSetUpdated"
        # Fixing the registry lets the next pull retry succeed.
        sim.clear_failures()
        sim.settle()
        assert apps.read_namespaced_deployment("plate-web", NS).status.ready_replicas == 2


def test_not_found_and_err_image_pull(kube_api: FakeKubeAPI, kc: client.ApiClient) -> None:
    with SimulatedCluster(kube_api, ready_after=0.1, tick=0.02) as sim:
        sim.fail_images("missing", "NotFound")
        sim.fail_images("flaky", "ErrImagePull")
        client.AppsV1Api(kc).create_namespaced_deployment(NS, deployment("a", tag="missing", replicas=1))
        client.AppsV1Api(kc).create_namespaced_deployment(NS, deployment("b", tag="flaky", replicas=1))
        sim.settle()
        (a,), (b,) = pods(kc, "a"), pods(kc, "b")
        assert a.status.container_statuses[0].state.waiting.reason == "ImagePullBackOff"
        assert any(e.message.endswith("not found (manifest unknown)") for e in events_for(kc, a.metadata.name))
        waiting = b.status.container_statuses[0].state.waiting
        assert waiting.reason == "ErrImagePull" and "failed to pull and unpack image" in waiting.message


def test_crashloop_restart_count_grows(kube_api: FakeKubeAPI, kc: client.ApiClient) -> None:
    apps = client.AppsV1Api(kc)
    with SimulatedCluster(kube_api, ready_after=0.1, tick=0.02, image_failures={"1.4.0": "CrashLoopBackOff"}) as sim:
        apps.create_namespaced_deployment(NS, deployment(replicas=1))
        sim.settle()
        first = pods(kc)[0].status.container_statuses[0]
        assert first.state.waiting.reason == "CrashLoopBackOff" and not first.ready
        assert first.last_state.terminated.exit_code == 1 and first.last_state.terminated.reason == "Error"
        later = wait_until(
            lambda: (cs := pods(kc)[0].status.container_statuses[0]).restart_count >= first.restart_count + 2 and cs,
            5,
            "two more restarts",
        )
        assert later.state.waiting.reason == "CrashLoopBackOff"
        pod = pods(kc)[0]
        backoff = [e for e in events_for(kc, pod.metadata.name) if e.reason == "BackOff"]
        assert len(backoff) == 1 and backoff[0].type == "Warning" and backoff[0].count >= 2
        assert backoff[0].message.startswith(f"Back-off restarting failed container web in pod {pod.metadata.name}")
        assert (
            pod.status.phase == "Running" and not apps.read_namespaced_deployment("plate-web", NS).status.ready_replicas
        )
        sim.fail_images("oom", "OOMKilled")
        patch = {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": f"{IMAGE}:oom"}]}}}}
        apps.patch_namespaced_deployment("plate-web", NS, patch)
        sim.settle()
        (pod,) = pods(kc)
        cs = pod.status.container_statuses[0]
        assert cs.image == f"{IMAGE}:oom" and cs.state.waiting.reason == "CrashLoopBackOff"
        assert (cs.last_state.terminated.reason, cs.last_state.terminated.exit_code) == ("OOMKilled", 137)


def test_statefulset(cluster: SimulatedCluster, kc: client.ApiClient) -> None:
    apps = client.AppsV1Api(kc)
    body = deployment("plate-db", replicas=2)
    body["kind"] = "StatefulSet"
    body["spec"]["serviceName"] = "plate-db"
    apps.create_namespaced_stateful_set(NS, body)
    cluster.settle()
    items = pods(kc, "plate-db")
    assert sorted(p.metadata.name for p in items) == ["plate-db-0", "plate-db-1"]
    assert all(p.metadata.owner_references[0].kind == "StatefulSet" for p in items)
    status = apps.read_namespaced_stateful_set("plate-db", NS).status
    assert (status.observed_generation, status.ready_replicas, status.current_replicas) == (1, 2, 2)
    apps.patch_namespaced_stateful_set("plate-db", NS, {"spec": {"replicas": 3}})
    cluster.settle()
    status = apps.read_namespaced_stateful_set("plate-db", NS).status
    assert (status.observed_generation, status.replicas, status.ready_replicas, status.updated_replicas) == (2, 3, 3, 3)


def test_helm_install_end_to_end(
    kube_api: FakeKubeAPI, cluster: SimulatedCluster, kc: client.ApiClient, tmp_path: Path
) -> None:
    helm = install_wrapper(tmp_path / "bin", tmp_path / "state")
    chart = ROOT / "examples" / "plate-web"
    argv = [str(helm), "upgrade", "--install", "plate-web", str(chart), "-n", NS,
            "-f", str(chart / "values-production.yaml"), "--kube-context", "x"]  # fmt: skip
    env = {**os.environ, "FAKE_HELM_KUBE_URL": kube_api.url}
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    apps = client.AppsV1Api(kc)
    dep = wait_until(lambda: apps.list_namespaced_deployment(NS).items, 5, "the Deployment helm applied")[0]
    cluster.settle()
    items = pods(kc, "plate-web")
    assert items and all(p.status.phase == "Running" for p in items)
    assert items[0].spec.containers[0].image == f"{IMAGE}:1.4.0"
    assert items[0].metadata.labels["app.kubernetes.io/instance"] == "plate-web"
    status = apps.read_namespaced_deployment(dep.metadata.name, NS).status
    assert status.observed_generation == dep.metadata.generation and status.ready_replicas == len(items)


def test_two_helm_releases_share_a_namespace(
    kube_api: FakeKubeAPI, cluster: SimulatedCluster, kc: client.ApiClient, tmp_path: Path
) -> None:
    """Issue 14: plate-web and plate-api, two apps of one environment, rolled out side by side in plate-prod;
    upgrading one rolls only its own pods."""
    helm = install_wrapper(tmp_path / "bin", tmp_path / "state")
    env = {**os.environ, "FAKE_HELM_KUBE_URL": kube_api.url}

    def upgrade(release: str, *extra: str) -> None:
        chart = ROOT / "examples" / release
        argv = [str(helm), "upgrade", "--install", release, str(chart), "-n", NS,
                "-f", str(chart / "values-production.yaml"), *extra]  # fmt: skip
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 0, proc.stderr

    def instance(release: str) -> list[client.V1Pod]:
        core = client.CoreV1Api(kc)
        return core.list_namespaced_pod(NS, label_selector=f"app.kubernetes.io/instance={release}").items

    upgrade("plate-web")
    upgrade("plate-api")
    apps = client.AppsV1Api(kc)
    wait_until(lambda: len(apps.list_namespaced_deployment(NS).items) == 2, 5, "both Deployments")
    cluster.settle()
    web, api = instance("plate-web"), instance("plate-api")
    assert len(web) == 1 and len(api) == 2  # plate-web leaves the scale to its HPA (none here): 1
    assert all(p.metadata.name.startswith("plate-web-") and p.status.phase == "Running" for p in web)
    assert all(p.metadata.name.startswith("plate-api-") and p.status.phase == "Running" for p in api)
    assert {p.spec.containers[0].image for p in api} == {"harbor.example.com/plate/plate-api:2.1.0"}
    assert {p.spec.containers[0].image for p in web} == {f"{IMAGE}:1.4.0"}

    upgrade("plate-api", "--set-string", "image.tag=2.2.0")
    cluster.settle()
    assert {p.metadata.name for p in instance("plate-web")} == {p.metadata.name for p in web}  # untouched
    rolled = instance("plate-api")
    assert len(rolled) == 2 and not {p.metadata.name for p in rolled} & {p.metadata.name for p in api}
    assert {p.spec.containers[0].image for p in rolled} == {"harbor.example.com/plate/plate-api:2.2.0"}
    status = {d.metadata.name: d.status for d in apps.list_namespaced_deployment(NS).items}
    assert (status["plate-web"].observed_generation, status["plate-web"].ready_replicas) == (1, 1)
    assert (status["plate-api"].observed_generation, status["plate-api"].ready_replicas) == (2, 2)
    services = {s.metadata.name: s.spec.selector for s in client.CoreV1Api(kc).list_namespaced_service(NS).items}
    assert services["plate-api"] == {"app.kubernetes.io/name": "plate-api", "app.kubernetes.io/instance": "plate-api"}
    assert services["plate-web"]["app.kubernetes.io/instance"] == "plate-web"
