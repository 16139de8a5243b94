"""workers.watcher.classify: what the watcher calls a problem, whose it is, and when it is over."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from workers.watcher.classify import (
    EnvView,
    Reason,
    Workload,
    app_problems,
    app_settled,
    event_problem,
    incident_key,
    owning_workload,
    pod_problems,
    secret_problem,
    severity,
)

NOW = 1_800_000_000.0
NS = "plate-prod"


def iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod(
    name: str = "web-7d9f-x1",
    *,
    waiting: str | None = None,
    message: str = "",
    restarts: int = 0,
    last: dict[str, Any] | None = None,
    terminated: dict[str, Any] | None = None,
    ready: bool = False,
    phase: str = "Running",
    unschedulable: str | None = None,
    owner: tuple[str, str] | None = ("ReplicaSet", "web-7d9f"),
    labels: dict[str, str] | None = None,
    rv: str = "1",
    init: bool = False,
) -> dict[str, Any]:
    state: dict[str, Any] = {"running": {}}
    if waiting:
        state = {"waiting": {"reason": waiting, "message": message}}
    if terminated:
        state = {"terminated": terminated}
    status: dict[str, Any] = {
        "phase": phase,
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
    }
    cs = {"name": "web", "ready": ready, "restartCount": restarts, "state": state, "lastState": {}}
    if last:
        cs["lastState"] = {"terminated": last}
    status["initContainerStatuses" if init else "containerStatuses"] = [cs]
    if unschedulable:
        status["phase"] = "Pending"
        status["conditions"].append(
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": unschedulable}
        )
    meta: dict[str, Any] = {
        "name": name,
        "namespace": NS,
        "uid": f"uid-{name}",
        "resourceVersion": rv,
        "labels": labels or {"pod-template-hash": "7d9f"},
    }
    if owner:
        meta["ownerReferences"] = [{"kind": owner[0], "name": owner[1], "controller": True}]
    return {"metadata": meta, "status": status, "spec": {"containers": [{"name": "web"}]}}


def event(
    reason: str,
    message: str,
    *,
    obj: str = "web-7d9f-x1",
    type_: str = "Warning",
    count: int = 1,
    name: str = "ev1",
    age: float = 10,
    kind: str = "Pod",
) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": NS, "resourceVersion": str(count)},
        "involvedObject": {"kind": kind, "name": obj, "namespace": NS},
        "reason": reason,
        "message": message,
        "type": type_,
        "count": count,
        "firstTimestamp": iso(NOW - age - 60),
        "lastTimestamp": iso(NOW - age),
    }


RS = {
    ("plate-prod", "web-7d9f"): {
        "metadata": {"name": "web-7d9f", "ownerReferences": [{"kind": "Deployment", "name": "web", "controller": True}]}
    }
}


def rs_lookup(ns: str, name: str) -> dict[str, Any] | None:
    return RS.get((ns, name))


def no_rs(_ns: str, _name: str) -> None:
    return None


# --- pods -------------------------------------------------------------------------------------------------

OOM_LAST = {"exitCode": 137, "reason": "OOMKilled", "finishedAt": iso(NOW - 30)}
ERR_LAST = {"exitCode": 1, "reason": "Error", "finishedAt": iso(NOW - 30)}

POD_CASES = [
    ("healthy", pod(ready=True), []),
    ("ErrImagePull", pod(waiting="ErrImagePull", message="unauthorized"), [Reason.IMAGE_PULL]),
    ("ImagePullBackOff", pod(waiting="ImagePullBackOff"), [Reason.IMAGE_PULL]),
    ("InvalidImageName", pod(waiting="InvalidImageName"), [Reason.IMAGE_PULL]),
    ("init container pull", pod(waiting="ErrImagePull", init=True), [Reason.IMAGE_PULL]),
    ("crash loop", pod(waiting="CrashLoopBackOff", restarts=4, last=ERR_LAST), [Reason.CRASH_LOOP]),
    ("crash loop of an OOM", pod(waiting="CrashLoopBackOff", restarts=4, last=OOM_LAST), [Reason.OOM_KILLED]),
    ("terminated OOMKilled", pod(terminated={"reason": "OOMKilled", "exitCode": 137}), [Reason.OOM_KILLED]),
    ("repeated restarts, recent", pod(ready=True, restarts=3, last=ERR_LAST), [Reason.CRASH_LOOP]),
    ("two restarts only", pod(ready=True, restarts=2, last=ERR_LAST), []),
    ("restarts long ago", pod(ready=True, restarts=9, last={**ERR_LAST, "finishedAt": iso(NOW - 3600)}), []),
    ("restarts after clean exits", pod(ready=True, restarts=5, last={"exitCode": 0, "finishedAt": iso(NOW)}), []),
    ("unschedulable", pod(unschedulable="0/3 nodes are available: 3 Insufficient memory."), [Reason.UNSCHEDULABLE]),
    ("creating", pod(waiting="ContainerCreating", phase="Pending"), []),
]


@pytest.mark.parametrize(("case", "obj", "expected"), POD_CASES, ids=[c[0] for c in POD_CASES])
def test_pod_problems(case: str, obj: dict[str, Any], expected: list[Reason]) -> None:
    assert [r for r, _d, _s in pod_problems(obj, NOW)] == expected


def test_pod_problem_details_name_the_container_and_cause() -> None:
    [(_, detail, _)] = pod_problems(pod(waiting="CrashLoopBackOff", restarts=4, last=OOM_LAST), NOW)
    assert detail == "web CrashLoopBackOff, 4 restarts, last exit 137 (OOMKilled)"
    [(_, detail, _)] = pod_problems(pod(waiting="ImagePullBackOff", message='Back-off pulling image "x:9"'), NOW)
    assert detail == 'web ImagePullBackOff: Back-off pulling image "x:9"'


# --- events -------------------------------------------------------------------------------------------------

EVENT_CASES = [
    ("FailedScheduling", event("FailedScheduling", "0/3 nodes are available"), Reason.UNSCHEDULABLE),
    ("FailedMount", event("FailedMount", 'MountVolume.SetUp failed for volume "cfg"'), Reason.MOUNT_FAILED),
    ("FailedAttachVolume", event("FailedAttachVolume", "Multi-Attach error"), Reason.MOUNT_FAILED),
    (
        "readiness",
        event("Unhealthy", "Readiness probe failed: HTTP probe failed with statuscode: 503"),
        Reason.PROBE_FAILED,
    ),
    ("liveness", event("Unhealthy", "Liveness probe failed: connection refused"), Reason.PROBE_FAILED),
    ("pull failed", event("Failed", 'Failed to pull image "x": 401 Unauthorized'), Reason.IMAGE_PULL),
    ("ErrImagePull", event("Failed", "Error: ErrImagePull"), Reason.IMAGE_PULL),
    ("pull backoff", event("BackOff", 'Back-off pulling image "x"'), Reason.IMAGE_PULL),
    ("crash backoff", event("BackOff", "Back-off restarting failed container web in pod x"), Reason.CRASH_LOOP),
    ("normal", event("Pulled", "Successfully pulled", type_="Normal"), None),
    ("not a pod", event("FailedCreate", "quota", kind="ReplicaSet"), None),
    ("other warning", event("FailedKillPod", "error killing pod"), None),
    ("Failed without pull", event("Failed", "Error: failed to create containerd task"), None),
]


@pytest.mark.parametrize(("case", "obj", "expected"), EVENT_CASES, ids=[c[0] for c in EVENT_CASES])
def test_event_problem(case: str, obj: dict[str, Any], expected: Reason | None) -> None:
    found = event_problem(obj)
    assert (found[0] if found else None) is expected


# --- ESO and Argo CD ----------------------------------------------------------------------------------------


def ready(status: str, reason: str = "", message: str = "") -> dict[str, Any]:
    return {
        "metadata": {"name": "x", "namespace": NS, "resourceVersion": "1"},
        "status": {"conditions": [{"type": "Ready", "status": status, "reason": reason, "message": message}]},
    }


@pytest.mark.parametrize(
    ("plural", "obj", "expected"),
    [
        ("externalsecrets", ready("False", "SecretSyncedError", "could not get secret data"), Reason.SECRET_SYNC),
        ("externalsecrets", ready("True", "SecretSynced"), None),
        ("secretstores", ready("False", "InvalidProviderConfig", "permission denied"), Reason.SECRET_STORE),
        ("secretstores", ready("True", "Valid"), None),
        ("secretstores", {"metadata": {"name": "x"}, "status": {}}, None),  # not reconciled yet
    ],
)
def test_secret_problem(plural: str, obj: dict[str, Any], expected: Reason | None) -> None:
    found = secret_problem(plural, obj)
    assert (found[0] if found else None) is expected
    if found:
        assert "Ready=False" in found[1] and obj["status"]["conditions"][0]["message"] in found[1]


def app(
    sync: str = "Synced",
    health: str = "Healthy",
    phase: str | None = None,
    message: str = "",
    conditions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    status: dict[str, Any] = {"sync": {"status": sync}, "health": {"status": health}}
    if phase:
        status["operationState"] = {"phase": phase, "message": message, "startedAt": "2026-01-01T00:00:00Z"}
    if conditions:
        status["conditions"] = conditions
    return {
        "metadata": {"name": "plate-web-prod", "namespace": "argocd", "resourceVersion": "1"},
        "spec": {"destination": {"namespace": NS}},
        "status": status,
    }


APP_CASES = [
    ("synced healthy", app(), [], True),
    (
        "sync failed",
        app("OutOfSync", phase="Failed", message="one or more objects failed to apply"),
        [Reason.ARGOCD_SYNC],
        False,
    ),
    ("sync error", app("OutOfSync", phase="Error", message="rpc error"), [Reason.ARGOCD_SYNC], False),
    (
        "comparison error",
        app("Unknown", conditions=[{"type": "ComparisonError", "message": "repository not found"}]),
        [Reason.ARGOCD_SYNC],
        False,
    ),
    ("degraded", app(health="Degraded"), [Reason.ARGOCD_DEGRADED], False),
    (
        "failed and degraded",
        app("OutOfSync", "Degraded", "Failed"),
        [Reason.ARGOCD_SYNC, Reason.ARGOCD_DEGRADED],
        False,
    ),
    ("out of sync, no failure", app("OutOfSync"), [], False),
    ("progressing", app(health="Progressing", phase="Running"), [], False),
    (
        "synced after an old warning condition",
        app(conditions=[{"type": "SharedResourceWarning", "message": "x"}]),
        [],
        True,
    ),
]


@pytest.mark.parametrize(("case", "obj", "reasons", "settled"), APP_CASES, ids=[c[0] for c in APP_CASES])
def test_app_problems(case: str, obj: dict[str, Any], reasons: list[Reason], settled: bool) -> None:
    assert [r for r, _d in app_problems(obj)] == reasons
    assert app_settled(obj) is settled


# --- ownership, keys, severity ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("obj", "lookup", "expected"),
    [
        (pod(), rs_lookup, Workload("Deployment", "web", NS)),
        (pod(), no_rs, Workload("Deployment", "web", NS)),  # the pod-template-hash naming rule
        (pod(labels={"app": "x"}), no_rs, Workload("ReplicaSet", "web-7d9f", NS)),
        (pod(owner=("StatefulSet", "db")), no_rs, Workload("StatefulSet", "db", NS)),
        (pod(owner=("Job", "migrate-1")), no_rs, Workload("Job", "migrate-1", NS)),
        (pod("lonely", owner=None), no_rs, Workload("Pod", "lonely", NS)),
    ],
)
def test_owning_workload(obj: dict[str, Any], lookup: Any, expected: Workload) -> None:
    assert owning_workload(obj, lookup) == expected


def test_bare_replicaset_is_its_own_workload() -> None:
    def lookup(_ns: str, name: str) -> dict[str, Any]:
        return {"metadata": {"name": name}}

    assert owning_workload(pod(), lookup) == Workload("ReplicaSet", "web-7d9f", NS)


def test_incident_key_and_severity() -> None:
    web = Workload("Deployment", "web", NS)
    assert incident_key("prod", web, Reason.CRASH_LOOP) == "prod:Deployment/web:crash_loop"
    assert severity(Reason.IMAGE_PULL, production=True) == "critical"
    assert severity(Reason.IMAGE_PULL, production=False) == "warning"
    assert severity(Reason.PROBE_FAILED, production=True) == "warning"
    assert severity(Reason.PROBE_FAILED, production=False) == "info"


# --- the view: occurrences, relists, health -----------------------------------------------------------------


def view() -> EnvView:
    return EnvView("prod", NS, "plate-web-prod")


def test_one_observation_per_occurrence_not_per_notification() -> None:
    v = view()
    first = v.apply("pods", "ADDED", pod(waiting="ErrImagePull", rv="1"), NOW, rs_lookup)
    assert [(o.key, o.source) for o in first] == [("prod:Deployment/web:image_pull", "pod/web-7d9f-x1")]
    # ErrImagePull <-> ImagePullBackOff flapping is the same occurrence.
    assert v.apply("pods", "MODIFIED", pod(waiting="ImagePullBackOff", rv="2"), NOW, rs_lookup) == []
    # The same resourceVersion again (a relist) changes nothing.
    assert v.apply("pods", "MODIFIED", pod(waiting="ImagePullBackOff", rv="2"), NOW, rs_lookup) == []
    # Each restart of a crash loop is an occurrence.
    crash = [pod(waiting="CrashLoopBackOff", restarts=n, last=ERR_LAST, rv=str(10 + n)) for n in (3, 3, 4)]
    counts = [len(v.apply("pods", "MODIFIED", c, NOW, rs_lookup)) for c in crash]
    assert counts == [1, 0, 1]


def test_events_count_when_their_count_grows_for_known_unready_pods() -> None:
    v = view()
    v.apply("pods", "ADDED", pod(waiting="ImagePullBackOff"), NOW, rs_lookup)
    pull = 'Failed to pull image "harbor/x:9": 401 Unauthorized'
    assert len(v.apply("events", "ADDED", event("Failed", pull, count=1), NOW, rs_lookup)) == 1
    assert (
        v.apply(
            "events",
            "MODIFIED",
            {**event("Failed", pull, count=1), "metadata": {"name": "ev1", "namespace": NS, "resourceVersion": "99"}},
            NOW,
            rs_lookup,
        )
        == []
    )
    assert len(v.apply("events", "MODIFIED", event("Failed", pull, count=2), NOW, rs_lookup)) == 1
    # Unknown pod (gone), old event, Ready pod: no observation.
    assert v.apply("events", "ADDED", event("Failed", pull, obj="gone-pod", name="e2"), NOW, rs_lookup) == []
    assert v.apply("events", "ADDED", event("Failed", pull, name="e3", age=3600), NOW, rs_lookup) == []
    v.apply("pods", "MODIFIED", pod(ready=True, rv="5"), NOW, rs_lookup)
    assert v.apply("events", "ADDED", event("Failed", pull, name="e4"), NOW, rs_lookup) == []


def test_other_namespaces_and_apps_are_not_ours() -> None:
    v = view()
    other = pod(waiting="ErrImagePull")
    other["metadata"]["namespace"] = "elsewhere"
    assert v.apply("pods", "ADDED", other, NOW, rs_lookup) == []
    foreign = app(health="Degraded")
    foreign["metadata"]["name"] = "someone-else"
    assert v.apply("applications", "ADDED", foreign, NOW, rs_lookup) == []
    [obs] = v.apply("applications", "ADDED", app(health="Degraded"), NOW, rs_lookup)
    assert obs.key == "prod:Application/plate-web-prod:argocd_degraded"
    by_destination = EnvView("prod", NS)  # no argocd_app: the app deploying into our namespace
    assert [o.reason for o in by_destination.apply("applications", "ADDED", foreign, NOW, rs_lookup)] == [
        Reason.ARGOCD_DEGRADED
    ]


def test_a_new_failed_sync_attempt_is_a_new_occurrence() -> None:
    v = view()
    failed = app("OutOfSync", phase="Failed", message="boom")
    assert len(v.apply("applications", "ADDED", failed, NOW, rs_lookup)) == 1
    heartbeat = {**failed, "metadata": {**failed["metadata"], "resourceVersion": "2"}}
    assert v.apply("applications", "MODIFIED", heartbeat, NOW, rs_lookup) == []
    retried = app("OutOfSync", phase="Failed", message="boom")
    retried["status"]["operationState"]["startedAt"] = "2026-01-01T00:05:00Z"
    retried["metadata"]["resourceVersion"] = "3"
    assert len(v.apply("applications", "MODIFIED", retried, NOW, rs_lookup)) == 1


def test_sync_forgets_what_the_relist_no_longer_has() -> None:
    v = view()
    v.sync("pods", [pod("a", waiting="ErrImagePull"), pod("b", ready=True)], NOW, rs_lookup)
    assert set(v.pods) == {"a", "b"}
    v.sync("pods", [pod("b", ready=True)], NOW, rs_lookup)
    assert set(v.pods) == {"b"}
    # A pod that shows the problem again after being forgotten is an occurrence again.
    assert len(v.sync("pods", [pod("a", waiting="ErrImagePull", rv="7")], NOW, rs_lookup)) == 1


def test_health_needs_a_list_first_then_follows_the_objects() -> None:
    v = view()
    web = Workload("Deployment", "web", NS)
    assert v.healthy(web, Reason.IMAGE_PULL, rs_lookup) is False  # nothing listed yet: unknown
    v.sync("pods", [pod("a", waiting="ErrImagePull"), pod("b", ready=True)], NOW, rs_lookup)
    assert v.healthy(web, Reason.IMAGE_PULL, rs_lookup) is False
    v.apply("pods", "MODIFIED", pod("a", ready=True, rv="9"), NOW, rs_lookup)
    assert v.healthy(web, Reason.IMAGE_PULL, rs_lookup) is True
    v.apply("pods", "DELETED", pod("a"), NOW, rs_lookup)
    v.apply("pods", "DELETED", pod("b"), NOW, rs_lookup)
    assert v.healthy(web, Reason.IMAGE_PULL, rs_lookup) is True  # scaled away or deleted

    es = Workload("ExternalSecret", "x", NS)
    assert v.healthy(es, Reason.SECRET_SYNC, rs_lookup) is False
    v.sync("externalsecrets", [ready("False", "SecretSyncedError")], NOW, rs_lookup)
    assert v.healthy(es, Reason.SECRET_SYNC, rs_lookup) is False
    v.apply(
        "externalsecrets",
        "MODIFIED",
        {**ready("True"), "metadata": {"name": "x", "namespace": NS, "resourceVersion": "2"}},
        NOW,
        rs_lookup,
    )
    assert v.healthy(es, Reason.SECRET_SYNC, rs_lookup) is True

    argo = Workload("Application", "plate-web-prod", "argocd")
    v.sync("applications", [app("OutOfSync", "Degraded", "Failed")], NOW, rs_lookup)
    assert v.healthy(argo, Reason.ARGOCD_SYNC, rs_lookup) is False
    settled = app()
    settled["metadata"]["resourceVersion"] = "5"
    v.apply("applications", "MODIFIED", settled, NOW, rs_lookup)
    assert v.healthy(argo, Reason.ARGOCD_SYNC, rs_lookup) is True


def test_crash_backoff_events_of_an_oom_pod_count_as_oom() -> None:
    v = view()
    v.apply("pods", "ADDED", pod(waiting="CrashLoopBackOff", restarts=4, last=OOM_LAST), NOW, rs_lookup)
    [o] = v.apply("events", "ADDED", event("BackOff", "Back-off restarting failed container web"), NOW, rs_lookup)
    assert o.reason is Reason.OOM_KILLED
