"""A tiny simulated controller manager + kubelet for FakeKubeAPI, so rollouts actually complete.

A background thread polls the store every `tick` and plays the Deployment, ReplicaSet and StatefulSet
controllers, the garbage collector and the kubelet: it creates ReplicaSets and Pods, moves pods Pending ->
Running/Ready after `ready_after` seconds (or into ImagePullBackOff / CrashLoopBackOff when the image matches
a failure rule), records the kubelet's Events and writes controller status. Every write goes through
FakeKubeAPI's public methods, so watchers see ordinary ADDED/MODIFIED/DELETED events and resourceVersions;
and writes happen only on real transitions, so a settled healthy cluster is silent.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from sandbox.kubeapi import FakeKubeAPI, Obj

log = logging.getLogger(__name__)
PULL_FAILURES = frozenset({"ErrImagePull", "ImagePullBackOff", "Unauthorized", "NotFound"})
CRASH_FAILURES = frozenset({"CrashLoopBackOff", "OOMKilled"})
NODE = "sim-node-1"
REVISION = "deployment.kubernetes.io/revision"
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # the controllers' SafeEncodeString alphabet (no vowels)
_AVAILABLE = {
    True: ("MinimumReplicasAvailable", "Deployment has minimum availability."),
    False: ("MinimumReplicasUnavailable", "Deployment does not have minimum availability."),
}


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _hash(data: Any, n: int = 10) -> str:
    # Stable per pod template, like pod-template-hash: the same template always maps to the same RS name.
    digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).digest()
    return "".join(_ALPHABET[b % len(_ALPHABET)] for b in digest[:n])


def _dig(obj: Any, *path: str) -> Any:
    for key in path:
        obj = obj.get(key) if isinstance(obj, dict) else None
    return obj


def _replicas(spec: Obj) -> int:
    return 1 if spec.get("replicas") is None else int(spec["replicas"])  # the apiserver defaults it to 1


def _ref(obj: Obj, owner: bool = True) -> Obj:
    """An ownerReference (owner=True) or an Event's involvedObject."""
    m = obj["metadata"]
    ref = {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": m["name"], "uid": m["uid"]}
    return {**ref, "controller": True, "blockOwnerDeletion": True} if owner else {**ref, "namespace": m["namespace"]}


def _owned(obj: Obj, match: Callable[[Obj], bool]) -> bool:
    return any(match(r) for r in obj["metadata"].get("ownerReferences") or [])


def _pull_error(image: str, rule: str) -> str:
    """The kubelet's `Failed to pull image` event text (containerd flavour) for a pull failure rule."""
    host, _, rest = image.partition("/") if "/" in image else ("registry-1.docker.io", "", image)
    repo, _, tag = rest.rpartition(":") if ":" in rest else (rest, "", "latest")
    url = f"https://{host}/v2/{repo}/manifests/{tag}"
    why = f'failed to pull and unpack image "{image}": failed to resolve reference "{image}"'
    if rule == "Unauthorized":
        why = f"Unknown desc = {why}: unexpected status from HEAD request to {url}: 401 Unauthorized"
        why += " (unauthorized: authentication required)"
    elif rule == "NotFound":
        why = f"NotFound desc = {why}: {image}: not found (manifest unknown)"
    else:
        why = f'Unknown desc = {why}: failed to do request: Head "{url}": dial tcp: i/o timeout'
    return f'Failed to pull image "{image}": rpc error: code = {why}'


@dataclass
class _Pod:
    ref: Obj  # the pod's object reference (apiVersion, kind, name, namespace, uid)
    root: str  # uid of the owning Deployment/StatefulSet: garbage collection keys on it
    rev: str  # pod-template-hash (Deployment) or controller revision (StatefulSet)
    containers: list[tuple[str, str]]  # (name, image)
    born: float = field(default_factory=time.monotonic)  # drives the timeline
    wall: float = field(default_factory=time.time)  # for timestamps
    up: dict[str, float] = field(default_factory=dict)  # container -> wall time it started for good
    restarts: dict[str, int] = field(default_factory=dict)
    status: Obj | None = None  # last written, to skip no-op writes
    stable: bool = False  # Ready, or settled into its steady failure state

    @property
    def key(self) -> tuple[str, str]:
        return self.ref["namespace"], self.ref["name"]


class SimulatedCluster:
    def __init__(
        self,
        api: FakeKubeAPI,
        *,
        ready_after: float = 0.3,
        tick: float = 0.05,
        image_failures: dict[str, str] | None = None,
    ) -> None:
        self.api, self.ready_after, self.tick = api, ready_after, tick
        self._lock = threading.Lock()  # guards the rules; everything else belongs to the loop thread
        self._rules: list[tuple[re.Pattern[str], str]] = []
        self._crash_logs: list[tuple[re.Pattern[str], str]] = []  # what a crashed container printed last
        for pattern, reason in (image_failures or {}).items():
            self.fail_images(pattern, reason)
        self._pods: dict[tuple[str, str], _Pod] = {}
        self._rs: dict[tuple[str, str], str] = {}  # ReplicaSets we made -> root Deployment uid
        self._events: dict[tuple[str, ...], tuple[str, int, str]] = {}  # -> (name, count, firstTimestamp)
        self._seq = itertools.count()
        self._halt, self._cond = threading.Event(), threading.Condition()
        self._passes, self._settled = 0, False
        self._thread: threading.Thread | None = None

    def start(self) -> SimulatedCluster:
        if self._thread is None:
            self._halt.clear()
            self._thread = threading.Thread(target=self._run, name="sim-cluster", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._halt.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> SimulatedCluster:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def fail_images(self, pattern: str, reason: str, *, log: str | None = None) -> None:
        """Containers whose image matches `pattern` (re.search) fail with `reason` until they first run. A
        crashing container's previous run printed `log` (served with `previous=true`)."""
        if reason not in PULL_FAILURES | CRASH_FAILURES:
            raise ValueError(f"unknown failure reason {reason!r}")
        with self._lock:
            self._rules.append((re.compile(pattern), reason))
            if log is not None:
                self._crash_logs.append((re.compile(pattern), log))

    def clear_failures(self) -> None:
        with self._lock:
            self._rules.clear()
            self._crash_logs.clear()

    def settle(self, timeout: float = 5.0) -> None:
        """Block until a whole pass begun after this call found every controller's status written for its
        generation and every pod Ready or stably failing; TimeoutError otherwise."""
        if self._thread is None:
            raise RuntimeError("SimulatedCluster not started")
        with self._cond:
            start = self._passes
            if not self._cond.wait_for(lambda: self._passes >= start + 2 and self._settled, timeout):
                raise TimeoutError(f"simulated cluster did not settle within {timeout}s")

    # ------------------------------------------------------------------ loop and garbage collection

    def _run(self) -> None:
        while not self._halt.is_set():
            try:
                settled = self._pass()
            except Exception:  # a bug here must not silently freeze every rollout for the rest of the run
                log.exception("simulated cluster pass failed")
                settled = False
            with self._cond:
                self._passes, self._settled = self._passes + 1, settled
                self._cond.notify_all()
            self._halt.wait(self.tick)

    def _pass(self) -> bool:
        now, settled, live = time.monotonic(), True, set()
        for kind, reconcile in (("Deployment", self._deployment), ("StatefulSet", self._statefulset)):
            for obj in self.api.list("apps/v1", kind):
                live.add(obj["metadata"]["uid"])
                try:
                    settled &= reconcile(obj, now)
                except KeyError as exc:  # api.patch of an object deleted mid-pass: the next pass catches up
                    log.debug("object vanished mid-pass: %s", exc)
                    settled = False
        try:
            settled &= self._bare_pods(now, live)
        except KeyError as exc:  # a bare pod deleted mid-pass (its owner deleting it): the next pass catches up
            log.debug("pod vanished mid-pass: %s", exc)
            settled = False
        # Owner gone -> its pods and ReplicaSets go too, as the garbage collector cascades a delete.
        for pod in [p for p in self._pods.values() if p.root not in live]:
            self._drop(pod)
        for (ns, name), root in list(self._rs.items()):
            if root not in live:
                self.api.delete("apps/v1", "ReplicaSet", name, ns)
                del self._rs[(ns, name)]
        return settled

    def _bare_pods(self, now: float, live: set[str]) -> bool:
        """Pods created without an owner (a one-off test pod): the scheduler binds those with no node yet,
        then the kubelet runs them like any other. Seeded pods (with a node or a status) are left alone."""
        settled = True
        for p in self.api.list("v1", "Pod"):
            meta = p["metadata"]
            if meta.get("ownerReferences"):
                continue
            pod = self._pods.get((meta["namespace"], meta["name"]))
            if pod is None or pod.ref["uid"] != meta["uid"]:
                if (p.get("spec") or {}).get("nodeName") or (p.get("status") or {}).get("phase"):
                    continue
                self.api.patch("v1", "Pod", meta["name"], {"spec": {"nodeName": NODE}}, meta["namespace"])
                containers = [(c["name"], c.get("image", "")) for c in (p.get("spec") or {}).get("containers") or []]
                pod = _Pod(_ref(p, False), meta["uid"], "", containers)
                self._pods[pod.key] = pod
                msg = f"Successfully assigned {pod.key[0]}/{meta['name']} to {NODE}"
                self._event(pod.ref, "Normal", "Scheduled", msg, component="default-scheduler")
            live.add(pod.root)
            self._sync_pod(pod, now)
            settled &= pod.stable
        return settled

    def _rule(self, image: str) -> str | None:
        with self._lock:
            return next((reason for rx, reason in self._rules if rx.search(image)), None)

    def _crash_log(self, image: str) -> str | None:
        with self._lock:
            return next((log for rx, log in self._crash_logs if rx.search(image)), None)

    def _drop(self, pod: _Pod) -> None:
        self.api.delete("v1", "Pod", pod.ref["name"], pod.ref["namespace"])  # a no-op when already gone
        self._pods.pop(pod.key, None)
        for key in [k for k in self._events if k[1] == pod.ref["uid"]]:
            del self._events[key]

    def _adopt(self, ns: str, root: str, ours: Callable[[Obj], bool], rev: str) -> list[_Pod]:
        """The owner's live pods of revision `rev`, oldest first. Its pods of other revisions, and matching pods
        we did not create (e.g. a previous SimulatedCluster's), are deleted; tracked pods someone else deleted
        are forgotten, so the caller recreates them as a ReplicaSet would."""
        present = set()
        for p in self.api.list("v1", "Pod", ns):
            mine = self._pods.get((ns, p["metadata"]["name"]))
            if mine is not None and (mine.ref["uid"], mine.root, mine.rev) == (p["metadata"]["uid"], root, rev):
                present.add(mine.key)
            elif ours(p):
                self.api.delete("v1", "Pod", p["metadata"]["name"], ns)
        for pod in [p for p in self._pods.values() if p.root == root and p.key not in present]:
            self._drop(pod)
        return sorted((p for p in self._pods.values() if p.root == root), key=lambda p: p.born)

    # ------------------------------------------------------------------ controllers

    def _deployment(self, d: Obj, now: float) -> bool:
        meta, spec = d["metadata"], d.get("spec") or {}
        want, h, sel = _replicas(spec), _hash(spec.get("template")), _dig(spec, "selector", "matchLabels") or {}
        rs = self._replicaset(d, f"{meta['name']}-{h}", h, want)
        name = rs["metadata"]["name"]

        def ours(p: Obj) -> bool:  # the selector's pods whose ReplicaSet is one of this Deployment's
            labels = p["metadata"].get("labels") or {}
            rs_name = f"{meta['name']}-{labels.get('pod-template-hash')}"
            return all(labels.get(k) == v for k, v in sel.items()) and _owned(p, lambda r: r.get("name") == rs_name)

        # Old-revision pods go at once (no surge): simple, and rollout watchers still see the whole sequence.
        pods = self._adopt(meta["namespace"], meta["uid"], ours, h)
        for extra in pods[want:]:
            self._drop(extra)
        suffixes = ("".join(random.choices(_ALPHABET, k=5)) for _ in range(want - len(pods)))
        pods = pods[:want] + [self._spawn(d, rs, f"{name}-{s}", {"pod-template-hash": h}, h) for s in suffixes]
        ready = sum(self._sync_pod(p, now) for p in pods)
        counts = {"replicas": len(pods), "readyReplicas": ready, "availableReplicas": ready}
        rs_gen = int(rs["metadata"].get("generation") or 1)
        self._write_status(rs, {**counts, "fullyLabeledReplicas": len(pods), "observedGeneration": rs_gen})
        mu = _dig(spec, "strategy", "rollingUpdate", "maxUnavailable") or "25%"
        ok = ready >= want - (want * int(mu[:-1]) // 100 if str(mu).endswith("%") else int(mu))
        progress = (
            ("NewReplicaSetAvailable", f'ReplicaSet "{name}" has successfully progressed.')
            if ready == want
            else ("ReplicaSetUpdated", f'ReplicaSet "{name}" is progressing.')
        )
        old = _dig(d, "status", "conditions") or []
        conditions = [
            _condition(old, "Available", ok, *_AVAILABLE[ok]),
            _condition(old, "Progressing", True, *progress),
        ]
        status = {"observedGeneration": int(meta.get("generation") or 1), **counts, "updatedReplicas": len(pods)}
        self._write_status(d, {**status, "unavailableReplicas": want - ready, "conditions": conditions})
        return all(p.stable for p in pods)

    def _replicaset(self, d: Obj, rs_name: str, h: str, want: int) -> Obj:
        """Make `rs_name` the Deployment's one scaled ReplicaSet, with the highest revision (as after a rollout
        or a rollback to its template); scale the others to 0 but keep them as rollout history."""
        meta, tpl, ns = d["metadata"], _dig(d, "spec", "template") or {}, d["metadata"]["namespace"]
        rss = self.api.list("apps/v1", "ReplicaSet", ns)
        mine = [r for r in rss if _owned(r, lambda o: o.get("uid") == meta["uid"])]

        def revision(r: Obj) -> int:
            return int(_dig(r, "metadata", "annotations", REVISION) or 0)

        def scaled(rs: str, was: int, to: int) -> None:
            verb = "up" if to > was else "down"
            msg = f"Scaled {verb} replica set {rs} to {to} from {was}"
            self._event(_ref(d, False), "Normal", "ScalingReplicaSet", msg, None, "deployment-controller")

        cur = next((r for r in mine if r["metadata"]["name"] == rs_name), None)
        top = max(map(revision, mine), default=0)
        for r in mine:
            if r is not cur and (was := _dig(r, "spec", "replicas")):
                self.api.patch("apps/v1", "ReplicaSet", r["metadata"]["name"], {"spec": {"replicas": 0}}, ns)
                scaled(r["metadata"]["name"], was, 0)
        self._rs[(ns, rs_name)] = meta["uid"]
        rev = {REVISION: str(top if cur is not None and revision(cur) == top else top + 1)}
        was = _dig(cur, "spec", "replicas") or 0
        if cur is None:
            labels = {**(_dig(tpl, "metadata", "labels") or {}), "pod-template-hash": h}
            selector = {"matchLabels": {**(_dig(d, "spec", "selector", "matchLabels") or {}), "pod-template-hash": h}}
            cur = self.api.put(
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "status": {"replicas": 0},
                    "metadata": {
                        "name": rs_name,
                        "namespace": ns,
                        "labels": labels,
                        "annotations": rev,
                        "ownerReferences": [_ref(d)],
                    },
                    "spec": {
                        "replicas": want,
                        "selector": selector,
                        "template": {**tpl, "metadata": {**(tpl.get("metadata") or {}), "labels": labels}},
                    },
                }
            )
        elif was != want or revision(cur) != int(rev[REVISION]):
            patch = {"spec": {"replicas": want}, "metadata": {"annotations": rev}}
            cur = self.api.patch("apps/v1", "ReplicaSet", rs_name, patch, ns)
        if was != want:
            scaled(rs_name, was, want)
        return cur

    def _statefulset(self, s: Obj, now: float) -> bool:
        meta, spec = s["metadata"], s.get("spec") or {}
        name, want, rev = meta["name"], _replicas(spec), f"{meta['name']}-{_hash(spec.get('template'))}"
        names = [f"{name}-{i}" for i in range(want)]

        def ours(p: Obj) -> bool:
            return _owned(p, lambda r: (r.get("kind"), r.get("name")) == ("StatefulSet", name))

        pods = self._adopt(meta["namespace"], meta["uid"], ours, rev)
        for extra in [p for p in pods if p.ref["name"] not in names]:
            self._drop(extra)
        have, labels = {p.ref["name"]: p for p in pods}, {"controller-revision-hash": rev}
        pods = [
            have.get(n) or self._spawn(s, s, n, {**labels, "statefulset.kubernetes.io/pod-name": n}, rev) for n in names
        ]
        ready = sum(self._sync_pod(p, now) for p in pods)
        current = rev if ready == want else _dig(s, "status", "currentRevision") or rev
        self._write_status(
            s,
            {
                "observedGeneration": int(meta.get("generation") or 1),
                "replicas": len(pods),
                "readyReplicas": ready,
                "availableReplicas": ready,
                "updatedReplicas": len(pods),
                "currentRevision": current,
                "currentReplicas": sum(p.rev == current for p in pods),
                "updateRevision": rev,
            },
        )
        return all(p.stable for p in pods)

    # ------------------------------------------------------------------ kubelet

    def _spawn(self, root: Obj, owner: Obj, name: str, labels: dict[str, str], rev: str) -> _Pod:
        tmeta, tspec = _dig(root, "spec", "template", "metadata") or {}, _dig(root, "spec", "template", "spec") or {}
        obj = self.api.put(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "spec": {**tspec, "nodeName": NODE},
                "status": {"phase": "Pending"},
                "metadata": {
                    "name": name,
                    "namespace": root["metadata"]["namespace"],
                    "ownerReferences": [_ref(owner)],
                    "labels": {**(tmeta.get("labels") or {}), **labels},
                    "annotations": dict(tmeta.get("annotations") or {}),
                },
            }
        )
        containers = [(c["name"], c.get("image", "")) for c in tspec.get("containers") or []]
        pod = _Pod(_ref(obj, False), root["metadata"]["uid"], rev, containers)
        self._pods[pod.key] = pod
        msg = f"Successfully assigned {pod.key[0]}/{name} to {NODE}"
        self._event(pod.ref, "Normal", "Scheduled", msg, component="default-scheduler")
        for cname, image in containers:
            self._event(
                {**pod.ref, "fieldPath": f"spec.containers{{{cname}}}"}, "Normal", "Pulling", f'Pulling image "{image}"'
            )
        return pod

    def _sync_pod(self, pod: _Pod, now: float) -> bool:
        """Advance one pod along its timeline and write its status if that changed; return whether it is Ready."""
        results = [self._container(pod, cname, image, now - pod.born) for cname, image in pod.containers]
        statuses = [st for st, _, _ in results]
        ready, born = all(st["ready"] for st in statuses), _iso(pod.wall)
        unready = " ".join(st["name"] for st in statuses if not st["ready"])
        when = _iso(max(pod.up.values(), default=pod.wall)) if ready else born
        cond = (
            {"status": "True"}
            if ready
            else {
                "status": "False",
                "reason": "ContainersNotReady",
                "message": f"containers with unready status: [{unready}]",
            }
        )
        uid = pod.ref["uid"]
        status = {
            "phase": "Pending" if any(pending for _, pending, _ in results) else "Running",
            "hostIP": "10.0.0.10",
            "podIP": f"10.244.{int(uid[:2], 16)}.{int(uid[2:4], 16)}",
            "startTime": born,
            "qosClass": "Burstable",
            "containerStatuses": statuses,
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": born},
                {"type": "Initialized", "status": "True", "lastTransitionTime": born},
                {"type": "ContainersReady", "lastTransitionTime": when, **cond},
                {"type": "Ready", "lastTransitionTime": when, **cond},
            ],
        }
        if status != pod.status:
            self.api.patch_status("v1", "Pod", pod.ref["name"], status, pod.ref["namespace"])
            pod.status = status
        pod.stable = all(stable for _, _, stable in results)
        return ready

    def _container(self, pod: _Pod, cname: str, image: str, age: float) -> tuple[Obj, bool, bool]:
        """(containerStatus, keeps the pod Pending, settled) at `age`, recording the kubelet's events. Failure
        rules apply until a container first runs: a running container never re-pulls its image."""
        st: Obj = {
            "name": cname,
            "image": image,
            "imageID": "",
            "ready": False,
            "started": False,
            "restartCount": pod.restarts.get(cname, 0),
            "lastState": {},
        }
        if age < self.ready_after:
            return {**st, "state": {"waiting": {"reason": "ContainerCreating"}}}, True, False
        ref, period = {**pod.ref, "fieldPath": f"spec.containers{{{cname}}}"}, max(self.ready_after, self.tick)
        cycles = 1 + int((age - self.ready_after) / period)  # pull attempts or container runs so far
        rule = None if cname in pod.up else self._rule(image)
        if rule in PULL_FAILURES:
            err, backoff = _pull_error(image, rule), cycles > 1 and rule != "ErrImagePull"
            for etype, reason, message, count in (
                ("Normal", "Pulling", f'Pulling image "{image}"', cycles),
                ("Warning", "Failed", err, cycles),
                ("Warning", "Failed", "Error: ErrImagePull", cycles),
                ("Warning", "BackOff", f'Back-off pulling image "{image}"', cycles - 1),
                ("Warning", "Failed", "Error: ImagePullBackOff", cycles - 1),
            ):
                self._event(ref, etype, reason, message, count)
            waiting = (
                {"reason": "ImagePullBackOff", "message": f'Back-off pulling image "{image}"'}
                if backoff
                else {"reason": "ErrImagePull", "message": err.split(": ", 1)[1]}
            )
            return {**st, "state": {"waiting": waiting}}, True, backoff or rule == "ErrImagePull"
        ms = int(self.ready_after * 1000)
        pulled = f'Successfully pulled image "{image}" in {ms}ms ({ms}ms including waiting)'
        self._event(ref, "Normal", "Pulled", pulled)
        runs = cycles if rule else st["restartCount"] + 1
        self._event(ref, "Normal", "Created", f"Created container {cname}", runs)
        self._event(ref, "Normal", "Started", f"Started container {cname}", runs)
        if rule is None:
            digest = hashlib.sha256(image.encode()).hexdigest()
            repo = re.sub(r"(:[^/:@]+)?(@.*)?$", "", image)
            started = _iso(pod.up.setdefault(cname, time.time()))
            return (
                {
                    **st,
                    "ready": True,
                    "started": True,
                    "state": {"running": {"startedAt": started}},
                    "imageID": f"{repo}@sha256:{digest}",
                    "containerID": f"containerd://{digest[::-1]}",
                },
                False,
                True,
            )
        # CrashLoopBackOff / OOMKilled: each period the container starts, dies at once and is backed off.
        if pod.restarts.get(cname, 0) == 0 and (printed := self._crash_log(image)) is not None:
            self.api.set_log(pod.ref["namespace"], pod.ref["name"], printed, container=cname, previous=True)
        pod.restarts[cname] = cycles
        oom, died = rule == "OOMKilled", pod.wall + self.ready_after + (cycles - 0.5) * period
        where = f"{pod.ref['name']}_{pod.key[0]}({pod.ref['uid']})"
        self._event(ref, "Warning", "BackOff", f"Back-off restarting failed container {cname} in pod {where}", cycles)
        waiting = {
            "reason": "CrashLoopBackOff",
            "message": f"back-off 10s restarting failed container={cname} pod={where}",
        }
        dead = {
            "exitCode": 137 if oom else 1,
            "reason": "OOMKilled" if oom else "Error",
            "startedAt": _iso(died - 0.1),
            "finishedAt": _iso(died),
        }
        st.update(restartCount=cycles, state={"waiting": waiting}, lastState={"terminated": dead})
        return st, False, True

    # ------------------------------------------------------------------ writes

    def _event(
        self, ref: Obj, etype: str, reason: str, message: str, count: int | None = 1, component: str = "kubelet"
    ) -> None:
        """Record an Event as the kubelet's correlator does: a repeat bumps `count` and `lastTimestamp` of the
        same Event instead of creating a new one. `count=None` means one more than last time."""
        key = (ref["namespace"], ref["uid"], ref.get("fieldPath", ""), reason, message)
        name, seen, first = self._events.get(key) or (f"{ref['name']}.{time.time_ns() + next(self._seq):x}", 0, "")
        count = seen + 1 if count is None else count
        if count <= seen:
            return
        stamp = _iso(time.time())
        source = {"component": component, **({"host": NODE} if component == "kubelet" else {})}
        self.api.put(
            {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": name, "namespace": ref["namespace"]},
                "involvedObject": ref,
                "type": etype,
                "reason": reason,
                "message": message,
                "count": count,
                "firstTimestamp": first or stamp,
                "lastTimestamp": stamp,
                "source": source,
                "reportingComponent": component,
                "reportingInstance": source.get("host", ""),
            }
        )
        self._events[key] = (name, count, first or stamp)

    def _write_status(self, obj: Obj, status: Obj) -> None:
        """Replace .status when it changed. Zero counts are left out (omitempty upstream, so clients see None),
        except `replicas` of ReplicaSets/StatefulSets, which the API always sends."""
        status = {k: v for k, v in status.items() if v or (k == "replicas" and obj["kind"] != "Deployment")}
        old, m = obj.get("status") or {}, obj["metadata"]
        if old != status:
            patch = {**dict.fromkeys(old), **status}  # None removes a key in a merge patch
            with contextlib.suppress(KeyError):  # deleted meanwhile
                stored = self.api.patch_status(obj["apiVersion"], obj["kind"], m["name"], patch, m["namespace"])
                obj["status"] = stored["status"]


def _condition(old: list[Obj], ctype: str, ok: bool, reason: str, message: str) -> Obj:
    """A condition keeping its timestamps while unchanged, as the controllers do (no MODIFIED per tick)."""
    prev = next((c for c in old if c.get("type") == ctype), {})
    status, stamp = "True" if ok else "False", _iso(time.time())
    same = prev.get("status") == status
    return {
        "type": ctype,
        "status": status,
        "reason": reason,
        "message": message,
        "lastUpdateTime": prev.get("lastUpdateTime", stamp) if same and prev.get("reason") == reason else stamp,
        "lastTransitionTime": prev.get("lastTransitionTime", stamp) if same else stamp,
    }
