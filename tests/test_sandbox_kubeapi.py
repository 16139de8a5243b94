"""The fake Kubernetes API (sandbox/kubeapi.py) driven by the real `kubernetes` client, no mocks."""

from __future__ import annotations

import json
import threading
import time

import pytest
import urllib3
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from sandbox.kubeapi import FakeKubeAPI, json_patch, merge_patch


def pod(name: str, ns: str = "ops", labels: dict | None = None, phase: str = "Running") -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels or {}},
        "spec": {"containers": [{"name": "app", "image": "nginx"}]},
        "status": {"phase": phase},
    }


def deployment(name: str, ns: str = "ops", replicas: int = 2) -> dict:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "c", "image": "x:1"}]},
            },
        },
    }


def later(delay: float, fn, *args) -> None:
    timer = threading.Timer(delay, fn, args)
    timer.daemon = True
    timer.start()


# ------------------------------------------------------------------------------------------------ CRUD


def test_pod_crud_and_status_codes(kube_api: FakeKubeAPI, kc: client.ApiClient) -> None:
    v1 = client.CoreV1Api(kc)
    _, code, _ = v1.create_namespaced_pod_with_http_info("ops", {"metadata": {"name": "web-1"}})
    assert code == 201
    created = v1.read_namespaced_pod("web-1", "ops")
    assert created.metadata.namespace == "ops"  # filled from the URL
    assert created.metadata.uid and created.metadata.creation_timestamp and created.metadata.generation == 1

    with pytest.raises(ApiException) as exc:
        v1.create_namespaced_pod("ops", {"metadata": {"name": "web-1"}})
    assert exc.value.status == 409
    assert json.loads(exc.value.body)["message"] == 'pods "web-1" already exists'
    assert json.loads(exc.value.body)["reason"] == "AlreadyExists"
    with pytest.raises(ApiException) as exc:
        v1.read_namespaced_pod("nope", "ops")
    status = json.loads(exc.value.body)
    assert (exc.value.status, status["reason"], status["message"]) == (
        404,
        "NotFound",
        'pods "nope" not found',
    )

    created.metadata.labels = {"tier": "web"}
    replaced = v1.replace_namespaced_pod("web-1", "ops", created)
    assert replaced.metadata.labels == {"tier": "web"}
    assert int(replaced.metadata.resource_version) > int(created.metadata.resource_version)
    assert replaced.metadata.uid == created.metadata.uid
    with pytest.raises(ApiException) as exc:  # stale resourceVersion: optimistic concurrency
        v1.replace_namespaced_pod("web-1", "ops", created)
    assert exc.value.status == 409
    with pytest.raises(ApiException) as exc:
        v1.replace_namespaced_pod("ghost", "ops", {"metadata": {"name": "ghost"}})
    assert exc.value.status == 404

    generated = v1.create_namespaced_pod("ops", {"metadata": {"generateName": "job-"}})
    assert generated.metadata.name.startswith("job-") and len(generated.metadata.name) == 9

    assert v1.delete_namespaced_pod("web-1", "ops").metadata.name == "web-1"
    with pytest.raises(ApiException) as exc:
        v1.delete_namespaced_pod("web-1", "ops")
    assert exc.value.status == 404
    assert [p.metadata.name for p in v1.list_namespaced_pod("ops").items] == [generated.metadata.name]
    assert kube_api.get("v1", "Pod", "web-1", "ops") is None


def test_patch_flavours(kube_api: FakeKubeAPI, kc: client.ApiClient) -> None:
    kube_api.put(pod("p", labels={"a": "1", "b": "2"}))
    v1 = client.CoreV1Api(kc)
    # A dict body goes out as strategic-merge-patch, a list as json-patch (the client picks by body type).
    patched = v1.patch_namespaced_pod("p", "ops", {"metadata": {"labels": {"a": None, "c": "3"}}})
    assert patched.metadata.labels == {"b": "2", "c": "3"}
    ops = [
        {"op": "add", "path": "/metadata/labels/d", "value": "4"},
        {"op": "replace", "path": "/metadata/labels/b", "value": "two"},
        {"op": "remove", "path": "/metadata/labels/c"},
    ]
    assert v1.patch_namespaced_pod("p", "ops", ops).metadata.labels == {"b": "two", "d": "4"}
    merged = v1.patch_namespaced_pod(
        "p", "ops", {"spec": {"nodeName": "n1"}}, _content_type="application/merge-patch+json"
    )
    assert merged.spec.node_name == "n1"
    assert {r.headers.get("content-type") for r in kube_api.requests if r.method == "PATCH"} == {
        "application/strategic-merge-patch+json",
        "application/json-patch+json",
        "application/merge-patch+json",
    }
    with pytest.raises(ApiException) as exc:
        v1.patch_namespaced_pod("ghost", "ops", {"metadata": {"labels": {"x": "y"}}})
    assert exc.value.status == 404


def test_patch_helpers() -> None:
    assert merge_patch({"a": {"b": 1, "c": 2}, "l": [1]}, {"a": {"b": None}, "l": [2]}) == {
        "a": {"c": 2},
        "l": [2],
    }
    doc = {"spec": {"items": [1, 2]}}
    out = json_patch(
        doc,
        [
            {"op": "add", "path": "/spec/items/-", "value": 3},
            {"op": "move", "from": "/spec/items/0", "path": "/spec/first"},
            {"op": "copy", "from": "/spec/first", "path": "/spec/again"},
            {"op": "test", "path": "/spec/again", "value": 1},
        ],
    )
    assert out == {"spec": {"items": [2, 3], "first": 1, "again": 1}} and doc == {"spec": {"items": [1, 2]}}


def test_deployment_generation_status_and_scale(kube_api: FakeKubeAPI, kc: client.ApiClient) -> None:
    apps = client.AppsV1Api(kc)
    created = apps.create_namespaced_deployment("ops", deployment("web"))
    assert created.metadata.generation == 1
    bumped = apps.patch_namespaced_deployment(
        "web", "ops", {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "x:2"}]}}}}
    )
    assert bumped.metadata.generation == 2
    relabelled = apps.patch_namespaced_deployment("web", "ops", {"metadata": {"labels": {"x": "y"}}})
    assert relabelled.metadata.generation == 2  # metadata-only changes keep the generation

    kube_api.patch_status("apps/v1", "Deployment", "web", {"observedGeneration": 2, "replicas": 2}, "ops")
    status = apps.read_namespaced_deployment_status("web", "ops")
    assert status.status.observed_generation == 2 and status.spec.replicas == 2  # whole object, as documented

    scale = apps.read_namespaced_deployment_scale("web", "ops")
    assert (scale.spec.replicas, scale.status.replicas, scale.status.selector) == (2, 2, "app=web")
    apps.patch_namespaced_deployment_scale("web", "ops", {"spec": {"replicas": 5}})
    assert apps.read_namespaced_deployment("web", "ops").spec.replicas == 5
    assert kube_api.get("apps/v1", "Deployment", "web", "ops")["metadata"]["generation"] == 3

    # kubernetes 37 types this answer as a plain `object`, so it arrives as a dict.
    deleted = apps.delete_namespaced_deployment("web", "ops", propagation_policy="Foreground")
    assert deleted["status"] == "Success" and deleted["details"]["name"] == "web"


# ------------------------------------------------------------------------------------------- selectors


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("app=web", ["a", "b"]),
        ("app==web,tier=front", ["a"]),
        ("app!=web", ["c", "d"]),
        ("app in (web,db)", ["a", "b", "c"]),
        ("app notin (web)", ["c", "d"]),
        ("tier", ["a", "c"]),
        ("!tier", ["b", "d"]),
        ("app in (web, db),!tier", ["b"]),
    ],
)
def test_label_selectors(kube_api: FakeKubeAPI, kc: client.ApiClient, selector: str, expected: list[str]) -> None:
    kube_api.put(pod("a", labels={"app": "web", "tier": "front"}))
    kube_api.put(pod("b", labels={"app": "web"}))
    kube_api.put(pod("c", labels={"app": "db", "tier": "back"}))
    kube_api.put(pod("d"))
    got = client.CoreV1Api(kc).list_namespaced_pod("ops", label_selector=selector)
    assert [p.metadata.name for p in got.items] == expected


def test_field_selectors_and_events(kube_api: FakeKubeAPI, kc: client.ApiClient) -> None:
    v1 = client.CoreV1Api(kc)
    kube_api.put(pod("a", phase="Running"))
    kube_api.put(pod("b", phase="Pending"))
    kube_api.put(pod("c", ns="other", phase="Pending"))
    assert [p.metadata.name for p in v1.list_namespaced_pod("ops", field_selector="status.phase!=Running").items] == [
        "b"
    ]
    names = [p.metadata.name for p in v1.list_pod_for_all_namespaces(field_selector="status.phase==Pending").items]
    assert names == ["b", "c"]
    assert [p.metadata.name for p in v1.list_namespaced_pod("ops", field_selector="metadata.name=a").items] == ["a"]
    for i, (obj, reason) in enumerate([("a", "BackOff"), ("b", "Pulled"), ("a", "Killing")]):
        kube_api.put(
            {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": f"e{i}", "namespace": "ops"},
                "involvedObject": {"kind": "Pod", "name": obj, "namespace": "ops"},
                "reason": reason,
                "type": "Warning",
            }
        )
    evs = v1.list_namespaced_event("ops", field_selector="involvedObject.name=a,involvedObject.kind=Pod")
    assert [e.reason for e in evs.items] == ["BackOff", "Killing"]
    assert [e.metadata.name for e in v1.list_namespaced_event("ops", field_selector="reason=Pulled").items] == ["e1"]
    with pytest.raises(ApiException) as exc:
        v1.list_namespaced_pod("ops", label_selector="a in (b")
    assert exc.value.status == 400


# ------------------------------------------------------------------------- custom objects & other groups


def test_custom_objects(kube_api: FakeKubeAPI, kc: client.ApiClient) -> None:
    co = client.CustomObjectsApi(kc)
    kube_api.put(
        {
            "apiVersion": "external-secrets.io/v1beta1",
            "kind": "ExternalSecret",
            "metadata": {"name": "db", "namespace": "ops"},
            "spec": {"secretStoreRef": {"name": "vault", "kind": "ClusterSecretStore"}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]},
        }
    )
    kube_api.put({"apiVersion": "external-secrets.io/v1", "kind": "ClusterSecretStore", "metadata": {"name": "vault"}})
    # One stored object, served in whichever version is asked for (like CRD conversion).
    for version in ("v1beta1", "v1"):
        got = co.get_namespaced_custom_object("external-secrets.io", version, "ops", "externalsecrets", "db")
        assert got["apiVersion"] == f"external-secrets.io/{version}"
    status = co.get_namespaced_custom_object_status("external-secrets.io", "v1", "ops", "externalsecrets", "db")
    assert status["status"]["conditions"][0]["status"] == "True"
    stores = co.list_cluster_custom_object("external-secrets.io", "v1", "clustersecretstores")
    assert stores["kind"] == "ClusterSecretStoreList" and [s["metadata"]["name"] for s in stores["items"]] == ["vault"]
    assert "namespace" not in stores["items"][0]["metadata"]

    app = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": "shop"},
        "spec": {"project": "default", "source": {"targetRevision": "v1"}},
    }
    created = co.create_namespaced_custom_object("argoproj.io", "v1alpha1", "argocd", "applications", app)
    assert created["metadata"]["namespace"] == "argocd" and created["metadata"]["uid"]  # 201 -> not None
    patched = co.patch_namespaced_custom_object(
        "argoproj.io",
        "v1alpha1",
        "argocd",
        "applications",
        "shop",
        {"spec": {"source": {"targetRevision": "v2"}}},
    )
    assert patched["spec"]["source"] == {"targetRevision": "v2"} and patched["metadata"]["generation"] == 2
    listed = co.list_namespaced_custom_object("argoproj.io", "v1alpha1", "argocd", "applications")
    assert [a["metadata"]["name"] for a in listed["items"]] == ["shop"]
    co.delete_namespaced_custom_object("argoproj.io", "v1alpha1", "argocd", "applications", "shop")
    with pytest.raises(ApiException) as exc:
        co.get_namespaced_custom_object("argoproj.io", "v1alpha1", "argocd", "applications", "shop")
    assert exc.value.status == 404 and "applications.argoproj.io" in exc.value.body


def test_namespaces_and_other_groups(kube_api: FakeKubeAPI, kc: client.ApiClient) -> None:
    v1 = client.CoreV1Api(kc)
    kube_api.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ops"}})
    created = v1.create_namespace({"metadata": {"name": "staging"}})
    assert created.status.phase == "Active" and created.metadata.namespace is None
    with pytest.raises(ApiException) as exc:
        v1.create_namespace({"metadata": {"name": "staging"}})
    assert exc.value.status == 409
    assert [n.metadata.name for n in v1.list_namespace().items] == ["ops", "staging"]
    assert v1.read_namespace("ops").metadata.name == "ops"
    assert v1.read_namespace_status("ops").status.phase == "Active"

    kube_api.put(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {"name": "web", "namespace": "ops"},
        }
    )
    kube_api.put(
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": "ops"},
            "spec": {"maxReplicas": 5, "scaleTargetRef": {"kind": "Deployment", "name": "web"}},
        }
    )
    assert client.NetworkingV1Api(kc).read_namespaced_ingress("web", "ops").metadata.name == "web"
    hpas = client.AutoscalingV2Api(kc).list_namespaced_horizontal_pod_autoscaler("ops").items
    assert [h.spec.max_replicas for h in hpas] == [5]
    assert client.VersionApi(kc).get_code().git_version == "v1.31.0"
    groups = {g.name for g in client.ApisApi(kc).get_api_versions().groups}
    assert {"apps", "external-secrets.io", "argoproj.io"} <= groups
    assert "pods" in {r.name for r in v1.get_api_resources().resources}


def test_pod_logs(kube_api: FakeKubeAPI, kc: client.ApiClient) -> None:
    v1 = client.CoreV1Api(kc)
    kube_api.put(pod("web"))
    kube_api.set_log("ops", "web", "one\ntwo\nthree\n")
    assert v1.read_namespaced_pod_log("web", "ops") == "one\ntwo\nthree\n"
    assert v1.read_namespaced_pod_log("web", "ops", tail_lines=2) == "two\nthree\n"
    kube_api.set_log("ops", "web", "crashed\n", previous=True)
    assert v1.read_namespaced_pod_log("web", "ops", previous=True) == "crashed\n"

    kube_api.put(pod("multi"))
    kube_api.set_log("ops", "multi", "a-log\n", container="a")
    kube_api.set_log("ops", "multi", "b-log\n", container="b")
    assert v1.read_namespaced_pod_log("multi", "ops", container="b") == "b-log\n"
    with pytest.raises(ApiException) as exc:
        v1.read_namespaced_pod_log("multi", "ops")
    assert exc.value.status == 400 and "choose one of: [a b]" in exc.value.body
    with pytest.raises(ApiException) as exc:
        v1.read_namespaced_pod_log("ghost", "ops")
    assert exc.value.status == 404
    assert kube_api.requests[-1].path == "/api/v1/namespaces/ops/pods/ghost/log"

    # follow=true streams appended text until the pod goes away.
    later(0.1, kube_api.append_log, "ops", "web", "four\n")
    later(0.2, kube_api.delete, "v1", "Pod", "web", "ops")
    lines = list(watch.Watch().stream(v1.read_namespaced_pod_log, "web", "ops", tail_lines=1))
    assert lines == ["three", "four"]


# ----------------------------------------------------------------------------------------------- watch


def test_watch_initial_then_live_events(kube_api: FakeKubeAPI, kc: client.ApiClient) -> None:
    v1 = client.CoreV1Api(kc)
    kube_api.put(pod("b"))
    kube_api.put(pod("a"))
    kube_api.put(pod("elsewhere", ns="other"))
    w, seen = watch.Watch(), []
    for ev in w.stream(v1.list_namespaced_pod, "ops", timeout_seconds=2):
        seen.append((ev["type"], ev["object"].metadata.name))
        if len(seen) == 2:  # snapshot delivered: now change things live
            kube_api.patch("v1", "Pod", "a", {"status": {"phase": "Failed"}}, "ops")
            kube_api.put(pod("c", ns="other"))
            kube_api.delete("v1", "Pod", "b", "ops")
        if ev["type"] == "DELETED":
            w.stop()
    assert seen == [("ADDED", "a"), ("ADDED", "b"), ("MODIFIED", "a"), ("DELETED", "b")]


def test_watch_resume_and_selector_transitions(kube_api: FakeKubeAPI, kc: client.ApiClient) -> None:
    v1 = client.CoreV1Api(kc)
    kube_api.put(pod("a", labels={"app": "web"}))
    rv = v1.list_namespaced_pod("ops").metadata.resource_version
    kube_api.put(pod("b", labels={"app": "web"}))
    kube_api.patch("v1", "Pod", "a", {"metadata": {"labels": {"app": "db"}}}, "ops")  # leaves the selector
    kube_api.patch("v1", "Pod", "a", {"metadata": {"labels": {"app": "web"}}}, "ops")  # and re-enters it
    w, seen = watch.Watch(), []
    for ev in w.stream(v1.list_namespaced_pod, "ops", label_selector="app=web", resource_version=rv, timeout_seconds=1):
        seen.append((ev["type"], ev["object"].metadata.name))
        if len(seen) == 3:
            w.stop()
    assert seen == [("ADDED", "b"), ("DELETED", "a"), ("ADDED", "a")]


def test_expire_watches_gives_410(kube_api: FakeKubeAPI, kc: client.ApiClient) -> None:
    """kubernetes 37: an ERROR event with code 410 ends the stream with ApiException(status=410).
    With timeout_seconds the client never retries; without it, Watch retries ONCE from its last seen
    resourceVersion, which is still too old after expire_watches(), so it raises 410 as well. Either
    way the caller never sees an ERROR event and must relist."""
    v1 = client.CoreV1Api(kc)
    kube_api.put(pod("a"))
    for kwargs in ({"timeout_seconds": 5}, {}):
        later(0.2, kube_api.expire_watches)
        seen = []
        with pytest.raises(ApiException) as exc:
            for ev in watch.Watch().stream(v1.list_namespaced_pod, "ops", **kwargs):
                seen.append(ev["type"])
        assert exc.value.status == 410 and "too old resource version" in exc.value.reason
        assert seen == ["ADDED"]
    stale = kube_api.get("v1", "Pod", "a", "ops")["metadata"]["resourceVersion"]
    with pytest.raises(ApiException) as exc:
        list(watch.Watch().stream(v1.list_namespaced_pod, "ops", resource_version=stale, timeout_seconds=1))
    assert exc.value.status == 410
    fresh = v1.list_namespaced_pod("ops").metadata.resource_version  # relist -> a valid resourceVersion
    later(0.1, kube_api.put, pod("b"))
    w = watch.Watch()
    for ev in w.stream(v1.list_namespaced_pod, "ops", resource_version=fresh, timeout_seconds=2):
        assert (ev["type"], ev["object"].metadata.name) == ("ADDED", "b")
        w.stop()


def test_drop_watches_breaks_the_connection(kube_api: FakeKubeAPI, kc: client.ApiClient) -> None:
    kube_api.put(pod("a"))
    later(0.2, kube_api.drop_watches)
    with pytest.raises(urllib3.exceptions.ProtocolError):  # no final chunk: "Response ended prematurely"
        list(watch.Watch().stream(client.CoreV1Api(kc).list_namespaced_pod, "ops", timeout_seconds=5))


def test_watch_timeout_and_stop_end_streams() -> None:
    server = FakeKubeAPI().start()
    cfg = client.Configuration()
    cfg.host = server.url
    v1 = client.CoreV1Api(client.ApiClient(cfg))
    started = time.monotonic()
    assert list(watch.Watch().stream(v1.list_namespaced_pod, "ops", timeout_seconds=1)) == []
    assert 0.9 < time.monotonic() - started < 1.5
    later(0.2, server.stop)
    started = time.monotonic()
    assert list(watch.Watch().stream(v1.list_namespaced_pod, "ops", timeout_seconds=30)) == []
    assert time.monotonic() - started < 1.5
    time.sleep(0.1)
    assert not [t for t in threading.enumerate() if "fake-kubeapi" in t.name or "process_request" in t.name]


# ------------------------------------------------------------------------------- failures & hooks


def test_fail_injection_and_request_log(kube_api: FakeKubeAPI, kc: client.ApiClient) -> None:
    v1 = client.CoreV1Api(kc)
    kube_api.put(pod("a"))
    kube_api.fail("GET", r"/namespaces/ops/pods$", 500)
    with pytest.raises(ApiException) as exc:
        v1.list_namespaced_pod("ops")
    assert exc.value.status == 500
    assert len(v1.list_namespaced_pod("ops").items) == 1  # times=1: next call succeeds
    kube_api.fail("*", r"/secrets", 403, times=2, message='secrets is forbidden: User "bot" cannot list')
    for _ in range(2):
        with pytest.raises(ApiException) as exc:
            v1.list_namespaced_secret("ops")
        assert exc.value.status == 403 and "cannot list" in exc.value.body
    assert v1.list_namespaced_secret("ops").items == []
    kube_api.fail("GET", r"/pods", 410, times=None)
    with pytest.raises(ApiException):
        list(watch.Watch().stream(v1.list_namespaced_pod, "ops", timeout_seconds=1))
    kube_api.clear_failures()
    assert v1.list_namespaced_pod("ops", label_selector="x=y").items == []
    last = kube_api.requests[-1]
    assert (last.method, last.path, last.query) == (
        "GET",
        "/api/v1/namespaces/ops/pods",
        {"labelSelector": "x=y"},
    )
    assert last.headers.get("authorization") is None  # no credentials configured on this client


def test_on_read_progresses_a_rollout(kube_api: FakeKubeAPI, kc: client.ApiClient) -> None:
    apps = client.AppsV1Api(kc)
    kube_api.put(deployment("web", replicas=3) | {"status": {"updatedReplicas": 0, "replicas": 3}})

    def progress(obj: dict) -> dict:
        status = obj["status"]
        status["updatedReplicas"] = min(status["updatedReplicas"] + 1, 3)
        status["observedGeneration"] = obj["metadata"]["generation"]
        return obj

    kube_api.on_read("apps/v1", "Deployment", "ops", "web", progress)
    seen = [apps.read_namespaced_deployment_status("web", "ops").status.updated_replicas for _ in range(4)]
    assert seen == [1, 2, 3, 3]
    assert kube_api.list("apps/v1", "Deployment", "ops")[0]["status"]["updatedReplicas"] == 3


def test_kubeconfig_contexts(kube_api: FakeKubeAPI, tmp_path) -> None:
    path = kube_api.write_kubeconfig(
        str(tmp_path / "kubeconfig"), {"plate-prod": "prod", "plate-stg": "stg"}, "plate-stg"
    )
    contexts, current = config.list_kube_config_contexts(config_file=path)
    assert {c["name"] for c in contexts} == {"plate-prod", "plate-stg"} and current["name"] == "plate-stg"
    kube_api.put(pod("a"))
    with config.new_client_from_config(config_file=path, context="plate-prod") as api_client:
        assert [p.metadata.name for p in client.CoreV1Api(api_client).list_namespaced_pod("ops").items] == ["a"]
    assert kube_api.requests[-1].headers.get("authorization") == "Bearer fake-token"
