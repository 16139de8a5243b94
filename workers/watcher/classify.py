"""PURE. What is wrong in an environment, from the objects the watcher sees.

Objects are API-shaped dicts. `EnvView` keeps the latest Pods, ExternalSecrets, SecretStores and Argo CD
Applications of one namespace, as an informer cache would, and turns each change into observations:
environment + owning workload + reason class + a one-line detail, and the app it belongs to (`apps`).
Time is passed in; ReplicaSet reads (to find a pod's Deployment) come through an injected lookup.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Any, NamedTuple, Protocol

from core.redact import REDACTOR
from core.text import clip, parse_time
from workers.describe import event_time, is_ready, restarts
from workers.watcher.apps import Target

Obj = dict[str, Any]
# (namespace, ReplicaSet name) -> the ReplicaSet, or None when it cannot be read.
ReplicaSetLookup = Callable[[str, str], Obj | None]

PULL_WAITING = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull", "RegistryUnavailable"}
)
RESTART_THRESHOLD = 3  # restarts that count as "repeated"...
RESTART_WINDOW = 900.0  # ...when the last one ended within this many seconds
EVENT_FRESH = 600.0  # older warning events are history, not news
ARGO_ERROR_CONDITIONS = frozenset({"ComparisonError", "SyncError", "InvalidSpecError"})
CUSTOM_KINDS = {"externalsecrets": "ExternalSecret", "secretstores": "SecretStore", "applications": "Application"}
_PLURAL = {kind: plural for plural, kind in CUSTOM_KINDS.items()}


class Reason(StrEnum):
    IMAGE_PULL = "image_pull"
    CRASH_LOOP = "crash_loop"
    OOM_KILLED = "oom_killed"
    UNSCHEDULABLE = "unschedulable"
    MOUNT_FAILED = "mount_failed"
    PROBE_FAILED = "probe_failed"
    SECRET_SYNC = "secret_sync"  # noqa: S105 - a name, not a secret
    SECRET_STORE = "secret_store"  # noqa: S105 - a name, not a secret
    ARGOCD_SYNC = "argocd_sync"
    ARGOCD_DEGRADED = "argocd_degraded"

    @property
    def label(self) -> str:
        return _TITLES[self]

    @property
    def pod_level(self) -> bool:
        """Seen on pods; over when every pod of the workload is Ready."""
        return self in _POD_REASONS


_TITLES = {
    Reason.IMAGE_PULL: "Image pull failing",
    Reason.CRASH_LOOP: "Crash loop",
    Reason.OOM_KILLED: "Out of memory (OOMKilled)",
    Reason.UNSCHEDULABLE: "Pods cannot be scheduled",
    Reason.MOUNT_FAILED: "Volume mount failing",
    Reason.PROBE_FAILED: "Readiness/liveness probes failing",
    Reason.SECRET_SYNC: "ExternalSecret not syncing",
    Reason.SECRET_STORE: "SecretStore not ready",
    Reason.ARGOCD_SYNC: "Argo CD sync failed",
    Reason.ARGOCD_DEGRADED: "Argo CD application degraded",
}
_POD_REASONS = frozenset(
    {
        Reason.IMAGE_PULL,
        Reason.CRASH_LOOP,
        Reason.OOM_KILLED,
        Reason.UNSCHEDULABLE,
        Reason.MOUNT_FAILED,
        Reason.PROBE_FAILED,
    }
)


def severity(reason: Reason, production: bool) -> str:
    """Probes failing alone degrade; everything else stops the service or its next deploy."""
    if reason is Reason.PROBE_FAILED:
        return "warning" if production else "info"
    return "critical" if production else "warning"


@dataclass(frozen=True, order=True)
class Workload:
    kind: str
    name: str
    namespace: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.name}"


class Observation(NamedTuple):
    """One occurrence of a problem. A named tuple, not a frozen dataclass: an event storm makes one per
    event, and a frozen dataclass' __init__ costs three times as much (bench/watcher_throughput.py)."""

    env: str
    workload: Workload
    reason: Reason
    detail: str  # one line: what was seen
    source: str  # the object that showed it, e.g. `pod/web-7d9f-x2`
    since: float | None = None  # when it started, if the object says
    app: str = ""  # the environment's app (Helm release) it belongs to; "" when none is known
    scope: str = ""  # "<namespace>/" outside the environment's own namespace (apps.Target)

    @property
    def key(self) -> str:
        return incident_key(self.env, self.workload, self.reason, self.scope)


def incident_key(env: str, workload: Workload, reason: Reason, scope: str = "") -> str:
    """environment + workload + reason class. The app is not part of it (it is derived from the workload, and
    incidents opened before apps existed keep their keys); a workload outside the environment's namespace is
    prefixed with its namespace (`scope`), so two apps' same-named workloads stay apart."""
    # A StrEnum formats as its value, faster than .value.
    return f"{env}:{scope}{workload.kind}/{workload.name}:{reason}"


def _meta(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


def _controller(obj: Obj) -> Obj | None:
    refs = _meta(obj).get("ownerReferences") or []
    return next((r for r in refs if r.get("controller")), refs[0] if refs else None)


def owning_workload(pod: Obj, replicaset: ReplicaSetLookup) -> Workload:
    """Pod -> ReplicaSet -> Deployment through ownerReferences; StatefulSet/Job/DaemonSet directly; a bare
    pod is its own workload. An unreadable ReplicaSet falls back on the pod-template-hash naming rule."""
    meta = _meta(pod)
    ns, name = str(meta.get("namespace", "")), str(meta.get("name", "?"))
    ref = _controller(pod)
    if ref is None:
        return Workload("Pod", name, ns)
    kind, owner = str(ref.get("kind", "")), str(ref.get("name", ""))
    if kind != "ReplicaSet":
        return Workload(kind, owner, ns)
    rs = replicaset(ns, owner)
    if rs is not None:
        top = _controller(rs)
        if top is not None:
            return Workload(str(top.get("kind", "")), str(top.get("name", "")), ns)
        return Workload("ReplicaSet", owner, ns)
    template_hash = (meta.get("labels") or {}).get("pod-template-hash")
    if template_hash and owner.endswith(f"-{template_hash}"):
        return Workload("Deployment", owner[: -len(template_hash) - 1], ns)
    return Workload("ReplicaSet", owner, ns)


def _container_statuses(pod: Obj) -> list[Obj]:
    status = pod.get("status") or {}
    return [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]


def pod_problems(pod: Obj, now: float) -> list[tuple[Reason, str, float | None]]:
    """(reason, detail, since) for what the pod's status shows now; at most one entry per reason."""
    found: dict[Reason, tuple[str, float | None]] = {}
    for cs in _container_statuses(pod):
        name = cs.get("name", "?")
        state = cs.get("state") or {}
        waiting = state.get("waiting") or {}
        last = (cs.get("lastState") or {}).get("terminated") or {}
        restarts = int(cs.get("restartCount") or 0)
        exit_line = f"last exit {last.get('exitCode')} ({last.get('reason', 'Error')})" if last else ""
        if waiting.get("reason") in PULL_WAITING:
            message = f": {clip(waiting['message'], 160)}" if waiting.get("message") else ""
            found.setdefault(Reason.IMAGE_PULL, (f"{name} {waiting['reason']}{message}", None))
        elif waiting.get("reason") == "CrashLoopBackOff":
            reason = Reason.OOM_KILLED if last.get("reason") == "OOMKilled" else Reason.CRASH_LOOP
            detail = f"{name} CrashLoopBackOff, {restarts} restarts" + (f", {exit_line}" if exit_line else "")
            found.setdefault(reason, (detail, None))
        elif (state.get("terminated") or {}).get("reason") == "OOMKilled":
            ended = parse_time(state["terminated"].get("finishedAt"))
            found.setdefault(Reason.OOM_KILLED, (f"{name} OOMKilled", ended))
        elif restarts >= RESTART_THRESHOLD and last.get("exitCode") not in (None, 0):
            ended = parse_time(last.get("finishedAt"))
            if ended is not None and now - ended <= RESTART_WINDOW:
                reason = Reason.OOM_KILLED if last.get("reason") == "OOMKilled" else Reason.CRASH_LOOP
                found.setdefault(reason, (f"{name} restarted {restarts} times, {exit_line}", None))
    status = pod.get("status") or {}
    if status.get("phase") == "Pending":
        for cond in status.get("conditions") or []:
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
                detail = f"Unschedulable: {clip(cond.get('message', ''), 160)}"
                found.setdefault(Reason.UNSCHEDULABLE, (detail, parse_time(cond.get("lastTransitionTime"))))
    return [(reason, detail, since) for reason, (detail, since) in found.items()]


_EVENT_REASONS = frozenset({"FailedScheduling", "FailedMount", "FailedAttachVolume", "Unhealthy", "Failed", "BackOff",
                            "ErrImagePull"})  # fmt: skip


def event_reason(event: Obj) -> Reason | None:
    """The reason class of a Warning event about a pod; None for events that open no incident."""
    reason = event.get("reason")
    if (
        reason not in _EVENT_REASONS
        or event.get("type") != "Warning"
        or (event.get("involvedObject") or {}).get("kind") != "Pod"
    ):
        return None
    if reason == "FailedScheduling":
        return Reason.UNSCHEDULABLE
    if reason in ("FailedMount", "FailedAttachVolume"):
        return Reason.MOUNT_FAILED
    low = str(event.get("message", "")).lower()
    if reason == "Unhealthy" and "probe" in low:
        return Reason.PROBE_FAILED
    if reason in ("Failed", "BackOff", "ErrImagePull") and ("pull" in low or "imagepullbackoff" in low):
        return Reason.IMAGE_PULL
    if reason == "BackOff" and "restarting failed container" in low:
        return Reason.CRASH_LOOP
    return None


def event_line(event: Obj) -> str:
    return _event_line(str(event.get("reason", "")), str(event.get("message", "")), REDACTOR.generation)


@lru_cache(maxsize=4096)
def _event_line(reason: str, message: str, _generation: int) -> str:
    # Cached: a recurring warning repeats its message word for word, and clip() (redaction) is the costly
    # part; per registry generation, so a Secret learnt later is cut from lines made after it.
    return f"{reason}: {clip(message, 200)}"


def event_problem(event: Obj) -> tuple[Reason, str] | None:
    """A Warning event about a pod, classified with its detail line; None for events that open no incident."""
    found = event_reason(event)
    return None if found is None else (found, event_line(event))


def ready_condition(obj: Obj) -> Obj | None:
    return next(
        (c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"),
        None,
    )


def secret_problem(plural: str, obj: Obj) -> tuple[Reason, str] | None:
    """ExternalSecret / SecretStore whose Ready condition is False (not yet reconciled: no incident)."""
    cond = ready_condition(obj)
    if cond is None or cond.get("status") != "False":
        return None
    reason = Reason.SECRET_SYNC if plural == "externalsecrets" else Reason.SECRET_STORE
    return reason, f"Ready=False {cond.get('reason', '')}: {clip(cond.get('message', ''), 200)}".replace(" :", ":")


def app_problems(app: Obj) -> list[tuple[Reason, str]]:
    """An Argo CD Application whose last sync failed (or cannot even compare) or whose health is Degraded."""
    status = app.get("status") or {}
    op = status.get("operationState") or {}
    out: list[tuple[Reason, str]] = []
    errors = [c for c in status.get("conditions") or [] if c.get("type") in ARGO_ERROR_CONDITIONS]
    if op.get("phase") in ("Failed", "Error"):
        out.append((Reason.ARGOCD_SYNC, f"sync {op['phase']}: {clip(op.get('message', ''), 200)}"))
    elif errors:
        first = errors[0]
        out.append((Reason.ARGOCD_SYNC, f"{first['type']}: {clip(first.get('message', ''), 200)}"))
    health = status.get("health") or {}
    if health.get("status") == "Degraded":
        message = f": {clip(health['message'], 200)}" if health.get("message") else ""
        out.append((Reason.ARGOCD_DEGRADED, f"health Degraded{message}"))
    return out


def app_settled(app: Obj) -> bool:
    """Synced, Healthy and no failed operation: what an Argo CD incident waits for to be over."""
    status = app.get("status") or {}
    return (
        (status.get("sync") or {}).get("status") == "Synced"
        and (status.get("health") or {}).get("status") == "Healthy"
        and not app_problems(app)
    )


class Owners(Protocol):
    """Whose an object is (`apps.Router`): the environments and apps an observation of it goes to."""

    def owner(self, meta: Obj) -> tuple[Target, ...]: ...

    def application(self, obj: Obj) -> tuple[Target, ...]: ...


class EnvView:
    """The latest objects of one namespace and the observations their changes make. Not thread-safe: the
    watcher's loop is its only user. With a `router` (the watcher's: one view per cluster and namespace,
    whatever environments and apps live there) each observation goes to the environments and app the router
    names; without one, everything is environment `env`'s (Applications: `argocd_app`, or those deploying
    into `namespace`).

    An observation is an occurrence, not a notification: a pod newly showing a problem or restarting
    again, an event whose count grew, a custom object whose failure changed (or a new failed sync). The
    same state seen again (a status heartbeat, a relist) is no occurrence."""

    def __init__(
        self,
        env: str,
        namespace: str,
        argocd_app: str | None = None,
        *,
        event_fresh: float = EVENT_FRESH,
        router: Owners | None = None,
    ) -> None:
        self.env, self.namespace, self.argocd_app = env, namespace, argocd_app
        self.event_fresh = event_fresh
        self.router = router
        self._alone = (Target(env, ""),)  # without a router, everything is `env`'s
        self._targets: dict[str, tuple[Target, ...]] = {}  # pod uid (or name) -> whose it is
        self.pods: dict[str, Obj] = {}
        # Per pod, from its last applied state: Ready, and whether it shows an OOM kill. Events about the
        # pod are checked against these instead of re-reading the pod each time (the storm hot path).
        self._pod_ready: dict[str, bool] = {}
        self._pod_oom: dict[str, bool] = {}
        self.objects: dict[tuple[str, str], Obj] = {}  # (plural, name) of the custom kinds
        self._owners: dict[str, Workload] = {}  # pod uid (or name) -> its workload
        self._seen: dict[tuple[str, str], str] = {}  # (plural, name) -> resourceVersion last applied
        self._marks: dict[tuple[str, str], dict[Reason, str]] = {}  # (plural, name) -> what was last counted
        self.synced: set[str] = set()  # kinds listed at least once: only then does absence mean "gone"

    def wants(self, plural: str, obj: Obj) -> bool:
        meta = _meta(obj)
        if plural == "applications":
            if self.router is not None:
                return bool(self.router.application(obj))
            if self.argocd_app is not None:
                return meta.get("name") == self.argocd_app
            destination = (obj.get("spec") or {}).get("destination") or {}
            return destination.get("namespace") == self.namespace
        return meta.get("namespace") == self.namespace

    def apply(self, plural: str, etype: str, obj: Obj, now: float, replicaset: ReplicaSetLookup) -> list[Observation]:
        """One watch event. A relisted object at a resourceVersion already applied changes nothing."""
        meta = obj.get("metadata") or {}
        if plural == "applications":
            if not self.wants(plural, obj):
                return []
        elif meta.get("namespace") != self.namespace:  # wants(), inlined for the hot path
            return []
        name, rv = str(meta.get("name", "")), str(meta.get("resourceVersion") or "")
        if etype == "DELETED":
            self._forget(plural, name)
            return []
        if etype not in ("ADDED", "MODIFIED") or (rv and self._seen.get((plural, name)) == rv):
            return []
        self._seen[(plural, name)] = rv
        if plural == "pods":
            self.pods[name] = obj
            return self._pod(obj, now, replicaset)
        if plural == "events":
            return self._event(obj, name, now, replicaset)
        if plural in CUSTOM_KINDS:
            self.objects[(plural, name)] = obj
            workload = Workload(CUSTOM_KINDS[plural], name, str(meta.get("namespace", "")))
            found = app_problems(obj) if plural == "applications" else [p for p in [secret_problem(plural, obj)] if p]
            attempt = str(((obj.get("status") or {}).get("operationState") or {}).get("startedAt") or "")
            marks = {r: f"{attempt}|{d}" for r, d in found}  # a new sync attempt or a new error is news
            news, source = self._news(plural, name, marks), f"{CUSTOM_KINDS[plural].lower()}/{name}"
            fresh = [(r, d) for r, d in found if r in news]
            if not fresh:
                return []
            if self.router is None:
                targets: tuple[Target, ...] = self._alone
            elif plural == "applications":
                targets = self.router.application(obj)
            else:
                targets = self.router.owner(meta)
            return [Observation(t.env, workload, r, d, source, None, t.app, t.scope) for t in targets for r, d in fresh]
        return []

    def _news(self, plural: str, name: str, marks: dict[Reason, str]) -> set[Reason]:
        """Record `marks` (reason -> state) as what the object shows now; the reasons whose state is new."""
        before = self._marks.get((plural, name), {})
        self._marks[(plural, name)] = marks
        return {r for r, mark in marks.items() if before.get(r) != mark}

    def sync(self, plural: str, items: Iterable[Obj], now: float, replicaset: ReplicaSetLookup) -> list[Observation]:
        """A full list (start, or relist after 410 Gone): forget what is gone, apply what changed."""
        self.synced.add(plural)
        items = [i for i in items if self.wants(plural, i)]
        present = {str(_meta(i).get("name", "")) for i in items}
        for kind, name in list(self._seen):
            if kind == plural and name not in present:
                self._forget(plural, name)
        out: list[Observation] = []
        for item in items:
            out += self.apply(plural, "ADDED", item, now, replicaset)
        return out

    def _forget(self, plural: str, name: str) -> None:
        self._seen.pop((plural, name), None)
        self._marks.pop((plural, name), None)
        if plural == "pods":
            pod = self.pods.pop(name, None)
            self._pod_ready.pop(name, None)
            self._pod_oom.pop(name, None)
            if pod is not None:
                self._owners.pop(self._uid(pod), None)
                self._targets.pop(self._uid(pod), None)
        else:
            self.objects.pop((plural, name), None)

    @staticmethod
    def _uid(pod: Obj) -> str:
        meta = _meta(pod)
        return str(meta.get("uid") or meta.get("name", ""))

    def workload_of(self, pod: Obj, replicaset: ReplicaSetLookup) -> Workload:
        uid = self._uid(pod)
        if uid not in self._owners:
            self._owners[uid] = owning_workload(pod, replicaset)
        return self._owners[uid]

    def targets_of(self, pod: Obj) -> tuple[Target, ...]:
        """The environments and app a pod's observations go to (asked once per pod)."""
        if self.router is None:
            return self._alone
        uid = self._uid(pod)
        found = self._targets.get(uid)
        if found is None:
            found = self._targets[uid] = self.router.owner(_meta(pod))
        return found

    def _pod(self, pod: Obj, now: float, replicaset: ReplicaSetLookup) -> list[Observation]:
        name = str(_meta(pod).get("name", "?"))
        problems = pod_problems(pod, now)
        self._pod_ready[name] = is_ready(pod)
        self._pod_oom[name] = any(r is Reason.OOM_KILLED for r, _d, _s in problems)
        count = str(restarts(pod))
        marks = {r: count if r in (Reason.CRASH_LOOP, Reason.OOM_KILLED) else "" for r, _d, _s in problems}
        news = self._news("pods", name, marks)
        fresh = [(r, d, since) for r, d, since in problems if r in news]
        if not fresh:
            return []
        workload = self.workload_of(pod, replicaset)
        source = f"pod/{name}"
        return [
            Observation(t.env, workload, r, d, source, since, t.app, t.scope)
            for t in self.targets_of(pod)
            for r, d, since in fresh
        ]

    def _event(self, event: Obj, name: str, now: float, replicaset: ReplicaSetLookup) -> list[Observation]:
        # The storm's hot path: most lines are events, so this avoids the general _news bookkeeping.
        reason = event_reason(event)
        if reason is None:
            return []
        pod_name = str((event.get("involvedObject") or {}).get("name", ""))
        pod = self.pods.get(pod_name)
        # A pod we do not know is gone already; a Ready pod got over it; an old event is history.
        if pod is None or self._pod_ready[pod_name] or now - event_time(event) > self.event_fresh:
            return []
        if reason is Reason.CRASH_LOOP and self._pod_oom[pod_name]:
            reason = Reason.OOM_KILLED  # the kubelet's back-off event does not say why it died
        count = str(event.get("count") or (event.get("series") or {}).get("count") or 1)
        key = ("events", name)
        before = self._marks.get(key)
        if before is not None and before.get(reason) == count:
            return []  # the same count again: a relist or a status heartbeat, no occurrence
        self._marks[key] = {reason: count}
        since = parse_time(event.get("firstTimestamp") or event.get("eventTime"))
        workload = self.workload_of(pod, replicaset)
        line, source = event_line(event), f"pod/{pod_name}"
        return [Observation(t.env, workload, reason, line, source, since, t.app, t.scope) for t in self.targets_of(pod)]

    def pods_of(self, workload: Workload, replicaset: ReplicaSetLookup) -> list[Obj]:
        return [p for p in self.pods.values() if self.workload_of(p, replicaset) == workload]

    def healthy(self, workload: Workload, reason: Reason, replicaset: ReplicaSetLookup) -> bool:
        """Whether an incident of `reason` on `workload` is over, as far as the objects show: every pod of
        the workload Ready (or none left), the condition back to True, the app Synced and Healthy. Nothing
        is healthy before its kind was listed: right after a restart, an empty view proves nothing."""
        plural = "pods" if reason.pod_level else _PLURAL.get(workload.kind, "")
        if plural not in self.synced:
            return False
        if reason.pod_level:
            return all(is_ready(p) for p in self.pods_of(workload, replicaset))
        obj = self.objects.get((plural, workload.name))
        if obj is None:
            return True  # deleted: nothing left to be broken
        if reason in (Reason.SECRET_SYNC, Reason.SECRET_STORE):
            return (ready_condition(obj) or {}).get("status") == "True"
        return app_settled(obj)
