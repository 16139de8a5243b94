"""Kubernetes objects shaped like the API returns them, for seeding the loopback API server."""

from __future__ import annotations

import datetime as dt
from typing import Any

LABELS = {"app.kubernetes.io/name": "plate-web", "app.kubernetes.io/instance": "plate-web"}


def ago(seconds: int) -> str:
    return (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def namespace(name: str, uid: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if uid:
        meta["uid"] = uid
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta, "status": {"phase": "Active"}}


def pod(
    name: str,
    ns: str,
    *,
    ready: bool = True,
    waiting: str | None = None,
    message: str = "",
    restarts: int = 0,
    owner: str | None = None,
) -> dict[str, Any]:
    state: dict[str, Any] = {"running": {"startedAt": ago(600)}}
    if waiting:
        state = {"waiting": {"reason": waiting, "message": message}}
    meta: dict[str, Any] = {"name": name, "namespace": ns, "labels": dict(LABELS)}
    if owner:
        meta["ownerReferences"] = [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": owner, "uid": f"uid-{owner}", "controller": True}
        ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {"containers": [{"name": "web", "image": "harbor.example.com/plate/plate-web:1.4.0"}]},
        "status": {
            "phase": "Running" if ready else "Pending",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "containerStatuses": [
                {
                    "name": "web",
                    "ready": ready,
                    "restartCount": restarts,
                    "state": state,
                    "image": "harbor.example.com/plate/plate-web:1.4.0",
                }
            ],
        },
    }


def event(
    name: str,
    ns: str,
    *,
    obj: str,
    reason: str,
    message: str,
    count: int = 1,
    kind: str = "Pod",
    type_: str = "Warning",
    seconds_ago: int = 30,
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": ns},
        "involvedObject": {"kind": kind, "name": obj, "namespace": ns},
        "reason": reason,
        "message": message,
        "type": type_,
        "count": count,
        "firstTimestamp": ago(seconds_ago + 60),
        "lastTimestamp": ago(seconds_ago),
    }


def service(name: str, ns: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns, "labels": dict(LABELS)},
        "spec": {"type": "ClusterIP", "clusterIP": "10.0.0.10", "ports": [{"port": 80, "protocol": "TCP"}]},
    }


def ingress(name: str, ns: str, host: str) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name, "namespace": ns, "labels": dict(LABELS)},
        "spec": {"rules": [{"host": host}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}]}},
    }


def hpa(name: str, ns: str) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name, "namespace": ns, "labels": dict(LABELS)},
        "spec": {"minReplicas": 3, "maxReplicas": 10, "scaleTargetRef": {"kind": "Deployment", "name": name}},
        "status": {"currentReplicas": 3, "desiredReplicas": 3},
    }


def deployment(
    name: str,
    ns: str,
    *,
    replicas: int = 3,
    generation: int = 1,
    observed: int = 1,
    updated: int | None = None,
    ready: int | None = None,
    available: int | None = None,
) -> dict[str, Any]:
    updated = replicas if updated is None else updated
    ready = replicas if ready is None else ready
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "labels": dict(LABELS), "generation": generation},
        "spec": {"replicas": replicas, "selector": {"matchLabels": dict(LABELS)}},
        "status": {
            "observedGeneration": observed,
            "replicas": replicas,
            "updatedReplicas": updated,
            "readyReplicas": ready,
            "availableReplicas": ready if available is None else available,
        },
    }


def seed_namespace(api: Any, ns: str, *, broken: bool = False) -> None:
    """A healthy plate-web in `ns`; with `broken`, one pod stuck in ImagePullBackOff with its events."""
    api.put(namespace(ns))
    api.put(pod("plate-web-7d9f-a", ns))
    api.put(pod("plate-web-7d9f-b", ns))
    if broken:
        api.put(
            pod(
                "plate-web-8e1a-c",
                ns,
                ready=False,
                waiting="ImagePullBackOff",
                message='Back-off pulling image "harbor.example.com/plate/plate-web:9.9.9"',
            )
        )
        api.put(
            event(
                "ev1",
                ns,
                obj="plate-web-8e1a-c",
                reason="Failed",
                count=4,
                message='Failed to pull image "harbor.example.com/plate/plate-web:9.9.9": '
                "unauthorized: authentication required",
            )
        )
        api.put(
            event(
                "ev2",
                ns,
                obj="plate-web-8e1a-c",
                reason="BackOff",
                count=9,
                message='Back-off pulling image "harbor.example.com/plate/plate-web:9.9.9"',
            )
        )
    api.put(event("ev0", ns, obj="plate-web-7d9f-a", reason="Pulled", type_="Normal", message="Successfully pulled"))
    api.put(service("plate-web", ns))
    api.put(ingress("plate-web", ns, "plate.example.com"))
    api.put(hpa("plate-web", ns))
