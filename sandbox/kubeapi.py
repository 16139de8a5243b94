"""A fake Kubernetes API server on loopback, for the real `kubernetes` Python client.

It speaks the REST shapes the generated client uses (core `/api/v1/...`, groups `/apis/{g}/{v}/...`,
subresources `status`, `scale`, pods `log`), chunked `?watch=true` streams with resourceVersion resume and
410 Gone, label/field selectors, and optimistic concurrency on PUT. Stdlib only, so the tests, the demo
and the benchmarks need nothing beyond the client itself.

Stored objects are never mutated in place: every change stores a new dict. That lets the watch history and
the per-watch queues share references without copying, and lets handler threads serialise outside the lock.
"""

from __future__ import annotations

import builtins
import contextlib
import copy
import enum
import json
import queue
import random
import re
import select
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

Obj = dict[str, Any]
ReadHook = Callable[[Obj], Obj | None]

GIT_VERSION = "v1.31.0"
HISTORY_LIMIT = 10_000  # watch events kept for resourceVersion resume; older ones answer 410
_POLL = 0.05  # how often idle streams look at deadlines, stop() and client hang-ups
_SUFFIX_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # apiserver's generateName alphabet (no vowels)

_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


@dataclass(frozen=True)
class KindInfo:
    group: str
    kind: str
    plural: str
    namespaced: bool
    versions: tuple[str, ...]


# (group, versions, kind, plural, namespaced). Unknown kinds are registered on first sight.
_BUILTIN_KINDS: list[tuple[str, tuple[str, ...], str, str, bool]] = [
    ("", ("v1",), "Pod", "pods", True),
    ("", ("v1",), "Event", "events", True),
    ("", ("v1",), "Secret", "secrets", True),
    ("", ("v1",), "ServiceAccount", "serviceaccounts", True),
    ("", ("v1",), "Namespace", "namespaces", False),
    ("", ("v1",), "Node", "nodes", False),
    ("", ("v1",), "Service", "services", True),
    ("", ("v1",), "ConfigMap", "configmaps", True),
    ("", ("v1",), "Endpoints", "endpoints", True),
    ("", ("v1",), "PersistentVolumeClaim", "persistentvolumeclaims", True),
    ("", ("v1",), "PersistentVolume", "persistentvolumes", False),
    ("", ("v1",), "ResourceQuota", "resourcequotas", True),
    ("", ("v1",), "LimitRange", "limitranges", True),
    ("apps", ("v1",), "Deployment", "deployments", True),
    ("apps", ("v1",), "StatefulSet", "statefulsets", True),
    ("apps", ("v1",), "ReplicaSet", "replicasets", True),
    ("apps", ("v1",), "DaemonSet", "daemonsets", True),
    ("apps", ("v1",), "ControllerRevision", "controllerrevisions", True),
    ("batch", ("v1",), "Job", "jobs", True),
    ("batch", ("v1",), "CronJob", "cronjobs", True),
    ("networking.k8s.io", ("v1",), "Ingress", "ingresses", True),
    ("networking.k8s.io", ("v1",), "NetworkPolicy", "networkpolicies", True),
    ("networking.k8s.io", ("v1",), "IngressClass", "ingressclasses", False),
    ("autoscaling", ("v2", "v1"), "HorizontalPodAutoscaler", "horizontalpodautoscalers", True),
    ("policy", ("v1",), "PodDisruptionBudget", "poddisruptionbudgets", True),
    ("rbac.authorization.k8s.io", ("v1",), "Role", "roles", True),
    ("rbac.authorization.k8s.io", ("v1",), "RoleBinding", "rolebindings", True),
    ("rbac.authorization.k8s.io", ("v1",), "ClusterRole", "clusterroles", False),
    ("rbac.authorization.k8s.io", ("v1",), "ClusterRoleBinding", "clusterrolebindings", False),
    ("storage.k8s.io", ("v1",), "StorageClass", "storageclasses", False),
    ("coordination.k8s.io", ("v1",), "Lease", "leases", True),
    ("events.k8s.io", ("v1",), "Event", "events", True),
    ("apiextensions.k8s.io", ("v1",), "CustomResourceDefinition", "customresourcedefinitions", False),
    ("external-secrets.io", ("v1", "v1beta1"), "SecretStore", "secretstores", True),
    ("external-secrets.io", ("v1", "v1beta1"), "ClusterSecretStore", "clustersecretstores", False),
    ("external-secrets.io", ("v1", "v1beta1"), "ExternalSecret", "externalsecrets", True),
    ("external-secrets.io", ("v1", "v1beta1"), "ClusterExternalSecret", "clusterexternalsecrets", False),
    ("argoproj.io", ("v1alpha1",), "Application", "applications", True),
    ("argoproj.io", ("v1alpha1",), "AppProject", "appprojects", True),
    ("argoproj.io", ("v1alpha1",), "ApplicationSet", "applicationsets", True),
]
_SCALABLE = {("apps", "deployments"), ("apps", "statefulsets"), ("apps", "replicasets")}


def default_plural(kind: str) -> str:
    """The apiserver's naive pluralisation, good enough for CRDs nobody registered."""
    low = kind.lower()
    if low.endswith("y") and low[-2:-1] not in "aeiou":
        return low[:-1] + "ies"
    if low.endswith(("s", "x", "ch", "sh")):
        return low + "es"
    return low + "s"


def split_api_version(api_version: str) -> tuple[str, str]:
    group, _, version = api_version.rpartition("/")
    return group, version


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_body(code: int, message: str, reason: str | None = None, details: Obj | None = None) -> Obj:
    """A metav1.Status as the apiserver sends it; the client turns it into ApiException(status=code)."""
    body: Obj = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success" if code < 400 else "Failure",
        "message": message,
        "reason": reason if reason is not None else _REASONS.get(code, "Unknown"),
        "code": code,
    }
    if details is not None:
        body["details"] = details
    return body


class ApiError(Exception):
    """Raised inside request handling; rendered as a Status response."""

    def __init__(self, code: int, message: str, reason: str | None = None, details: Obj | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.body = status_body(code, message, reason, details)


# --------------------------------------------------------------------------------------------- selectors

LabelReq = Callable[[dict[str, str]], bool]
_KEY = r"[A-Za-z0-9][-A-Za-z0-9_./]*"
_VAL = r"[-A-Za-z0-9_.]*"


def _split_top(text: str) -> list[str]:
    """Split on commas that are not inside `in (...)` value sets."""
    parts, depth, cur = [], 0, []
    for ch in text:
        depth += (ch == "(") - (ch == ")")
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def _label_req(part: str) -> LabelReq:
    if m := re.fullmatch(rf"!\s*({_KEY})", part):
        key = m[1]
        return lambda labels: key not in labels
    if m := re.fullmatch(rf"({_KEY})\s+(in|notin)\s*\(([^)]*)\)", part):
        key, op = m[1], m[2]
        values = {v.strip() for v in m[3].split(",") if v.strip()}
        if op == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values  # absent keys match `notin`, as in k8s
    if m := re.fullmatch(rf"({_KEY})\s*(==|!=|=)\s*({_VAL})", part):
        key, op, value = m[1], m[2], m[3]
        if op == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    if m := re.fullmatch(rf"({_KEY})\s*([<>])\s*(-?\d+)", part):
        key, op, bound = m[1], m[2], int(m[3])

        def compare(labels: dict[str, str]) -> bool:
            raw = labels.get(key, "")
            if not re.fullmatch(r"-?\d+", raw):
                return False
            return int(raw) > bound if op == ">" else int(raw) < bound

        return compare
    if re.fullmatch(_KEY, part):
        return lambda labels: part in labels
    raise ApiError(400, f'unable to parse requirement: invalid label selector "{part}"')


def parse_label_selector(text: str | None) -> Callable[[Obj], bool]:
    reqs = [_label_req(p) for p in _split_top(text or "")]

    def match(obj: Obj) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(req(labels) for req in reqs)

    return match


def _field_value(obj: Obj, dotted: str) -> str:
    cur: Any = obj
    for part in dotted.split("."):
        cur = cur.get(part) if isinstance(cur, dict) else None
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


def parse_field_selector(text: str | None) -> Callable[[Obj], bool]:
    """Generic dotted-path field selector (metadata.name, involvedObject.uid, status.phase, type ...)."""
    reqs: list[tuple[str, bool, str]] = []
    for part in _split_top(text or ""):
        m = re.fullmatch(r"([A-Za-z0-9_.]+)\s*(==|!=|=)\s*(.*)", part)
        if not m:
            raise ApiError(400, f'invalid field selector: "{part}"')
        reqs.append((m[1], m[2] == "!=", m[3].strip()))

    def match(obj: Obj) -> bool:
        return all((_field_value(obj, path) == value) != negate for path, negate, value in reqs)

    return match


# ----------------------------------------------------------------------------------------------- patches


def merge_patch(target: Any, patch: Any, *, strategic: bool = False) -> Any:
    """RFC 7386 merge patch. Strategic merge is approximated by it; `$` directives are dropped."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if strategic and key.startswith("$"):
            continue
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value, strategic=strategic)
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise ApiError(422, f"invalid JSON pointer {path!r}")
    return [t.replace("~1", "/").replace("~0", "~") for t in path[1:].split("/")]


def _walk(doc: Any, tokens: list[str]) -> Any:
    for tok in tokens:
        doc = doc[int(tok)] if isinstance(doc, list) else doc[tok]
    return doc


def json_patch(doc: Obj, ops: list[Obj]) -> Obj:
    """RFC 6902 (add, remove, replace, move, copy, test)."""
    result: Any = copy.deepcopy(doc)

    def add(tokens: list[str], value: Any) -> None:
        nonlocal result
        if not tokens:
            result = value
            return
        parent = _walk(result, tokens[:-1])
        last = tokens[-1]
        if isinstance(parent, list):
            parent.insert(len(parent) if last == "-" else int(last), value)
        else:
            parent[last] = value

    def remove(tokens: list[str]) -> Any:
        parent = _walk(result, tokens[:-1])
        last = tokens[-1]
        return parent.pop(int(last) if isinstance(parent, list) else last)

    try:
        for op in ops:
            name, tokens = op.get("op"), _pointer(op.get("path", ""))
            if name == "add":
                add(tokens, copy.deepcopy(op["value"]))
            elif name == "remove":
                remove(tokens)
            elif name == "replace":
                _walk(result, tokens)  # must exist
                if tokens:
                    remove(tokens)
                add(tokens, copy.deepcopy(op["value"]))
            elif name == "move":
                add(tokens, remove(_pointer(op["from"])))
            elif name == "copy":
                add(tokens, copy.deepcopy(_walk(result, _pointer(op["from"]))))
            elif name == "test":
                if _walk(result, tokens) != op["value"]:
                    raise ApiError(422, f"the server rejected our request: test failed at {op['path']}")
            else:
                raise ApiError(422, f"unsupported JSON patch op {name!r}")
    except (KeyError, IndexError, ValueError, TypeError) as exc:
        raise ApiError(422, f"the server rejected our request due to an error in our request: {exc}") from exc
    if not isinstance(result, dict):
        raise ApiError(422, "JSON patch must leave an object")
    return result


# ------------------------------------------------------------------------------------------- bookkeeping


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    body: Any  # parsed JSON, or None
    headers: dict[str, str]  # keys lower-cased


@dataclass
class _Failure:
    method: str
    pattern: re.Pattern[str]
    status: int
    remaining: int | None  # None = until clear_failures()
    reason: str
    message: str


@dataclass(frozen=True)
class _Route:
    group: str
    version: str
    plural: str
    namespace: str | None  # None: cluster-scoped kind or an all-namespaces list
    name: str | None
    sub: str | None

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


@dataclass(frozen=True)
class _Event:
    type: str  # ADDED, MODIFIED or DELETED
    rv: int
    group: str
    plural: str
    namespace: str
    obj: Obj  # state to send
    prev: Obj | None  # state before a MODIFIED, to notice objects entering/leaving a selector


class _Signal(enum.Enum):
    STOP = "stop"  # server stopping: end the stream cleanly
    DROP = "drop"  # cut the TCP connection without the final chunk
    EXPIRE = "expire"  # send ERROR 410 then end cleanly


@dataclass(eq=False)  # identity hash: watches live in a set
class _Watch:
    group: str
    plural: str
    version: str
    namespace: str | None
    labels: Callable[[Obj], bool]
    fields: Callable[[Obj], bool]
    q: queue.Queue[tuple[str, Obj] | _Signal | str] = field(default_factory=queue.Queue)

    def classify(self, ev: _Event) -> tuple[str, Obj] | None:
        """Which event, if any, this watcher sees; selector transitions become ADDED/DELETED as in k8s."""
        if ev.group != self.group or ev.plural != self.plural:
            return None
        if self.namespace is not None and ev.namespace != self.namespace:
            return None
        now = self.labels(ev.obj) and self.fields(ev.obj)
        if ev.prev is None:
            return (ev.type, ev.obj) if now else None
        before = self.labels(ev.prev) and self.fields(ev.prev)
        if now:
            return ("MODIFIED" if before else "ADDED", ev.obj)
        return ("DELETED", ev.obj) if before else None


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a stuck client must never block stop()
    allow_reuse_address = True
    api: FakeKubeAPI

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up mid-stream is normal here; keep test output quiet.
        pass


# ------------------------------------------------------------------------------------------- the server


class FakeKubeAPI:
    """In-memory Kubernetes API on 127.0.0.1. Thread-safe; use as a context manager or start()/stop()."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host, self.port = host, port
        self.requests: builtins.list[RecordedRequest] = []
        self._lock = threading.RLock()  # re-entrant: on_read hooks may call put()
        self._objects: dict[tuple[str, str], dict[tuple[str, str], Obj]] = {}
        self._rv = 0
        self._history: deque[_Event] = deque(maxlen=HISTORY_LIMIT)
        self._oldest_ok_rv = 0  # watches from a resourceVersion below this get 410
        self._watches: set[_Watch] = set()
        self._kinds: dict[tuple[str, str], KindInfo] = {}  # (group, kind)
        self._plurals: dict[tuple[str, str], KindInfo] = {}  # (group, plural)
        self._hooks: dict[tuple[str, str, str, str], ReadHook] = {}
        self._failures: builtins.list[_Failure] = []
        self._logs: dict[tuple[str, str, str, bool], str] = {}  # (ns, pod, container, previous)
        self._log_followers: dict[tuple[str, str, str], set[queue.Queue[str | _Signal]]] = {}
        self._conns: set[socket.socket] = set()
        self._streams = 0
        self._streams_done = threading.Condition(self._lock)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        for group, versions, kind, plural, namespaced in _BUILTIN_KINDS:
            self.register_kind(f"{group}/{versions[0]}" if group else versions[0], kind, plural, namespaced)
            for extra in versions[1:]:
                self.register_kind(f"{group}/{extra}", kind, plural, namespaced)

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> FakeKubeAPI:
        if self._server is not None:
            return self
        server = _Server((self.host, self.port), _Handler)
        server.api = self
        self._server = server
        self.port = server.server_address[1]
        self._stopping = False
        # Short poll interval so stop() returns quickly.
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-kubeapi", daemon=True
        )
        self._thread.start()
        return self

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeKubeAPI not started")
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        server = self._server
        if server is None:
            return
        with self._lock:
            self._stopping = True
            self._signal_streams(_Signal.STOP)
            # Open watches end cleanly within one poll; don't wait on a client that stopped reading.
            self._streams_done.wait_for(lambda: self._streams == 0, timeout=1.0)
            conns = builtins.list(self._conns)
        server.shutdown()
        for conn in conns:  # idle keep-alive connections would otherwise park handler threads forever
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        server.server_close()
        if self._thread is not None:
            self._thread.join(2)
        self._server = self._thread = None

    def __enter__(self) -> FakeKubeAPI:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ---------------------------------------------------------------- kinds

    def register_kind(
        self, api_version: str, kind: str, plural: str | None = None, namespaced: bool | None = None
    ) -> KindInfo:
        """Declare a kind (for CRDs with an irregular plural or cluster scope). Idempotent per version."""
        group, version = split_api_version(api_version)
        with self._lock:
            old = self._kinds.get((group, kind))
            if old is not None and version in old.versions and plural in (None, old.plural):
                return old
            info = KindInfo(
                group,
                kind,
                plural or (old.plural if old else default_plural(kind)),
                namespaced if namespaced is not None else (old.namespaced if old else not kind.startswith("Cluster")),
                tuple(dict.fromkeys((*(old.versions if old else ()), version))),
            )
            self._kinds[(group, kind)] = info
            self._plurals[(group, info.plural)] = info
            return info

    def _kind(self, api_version: str, kind: str) -> KindInfo:
        group, version = split_api_version(api_version)
        info = self._kinds.get((group, kind))
        if info is None or version not in info.versions:
            info = self.register_kind(api_version, kind)
        return info

    def _kind_for_route(self, route: _Route, body: Obj | None = None) -> KindInfo:
        info = self._plurals.get((route.group, route.plural))
        if info is not None:
            if route.version not in info.versions:
                info = self.register_kind(route.api_version, info.kind)
            return info
        kind = (body or {}).get("kind") or route.plural.rstrip("s").capitalize()
        return self.register_kind(route.api_version, kind, route.plural, route.namespace is not None)

    # ---------------------------------------------------------------- store (test-facing helpers)

    def put(self, obj: Obj) -> Obj:
        """Seed or replace an object. Explicit uid/creationTimestamp/generation are kept, the rest filled."""
        obj = copy.deepcopy(obj)
        info = self._kind(obj["apiVersion"], obj["kind"])
        meta = obj.setdefault("metadata", {})
        if info.namespaced:
            meta.setdefault("namespace", "default")
        else:
            meta.pop("namespace", None)
        with self._lock:
            key = (meta.get("namespace", ""), meta["name"])
            old = self._objects.get((info.group, info.plural), {}).get(key)
            return copy.deepcopy(self._commit(info, obj, old, trusted=True))

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Obj | None:
        info = self._kind(api_version, kind)
        with self._lock:
            obj = self._bucket(info).get((self._ns(info, namespace), name))
            return copy.deepcopy(self._as_version(obj, api_version)) if obj else None

    def list(self, api_version: str, kind: str, namespace: str | None = None) -> builtins.list[Obj]:
        info = self._kind(api_version, kind)
        with self._lock:
            items = self._select(info, namespace if info.namespaced else None)
            return [copy.deepcopy(self._as_version(o, api_version)) for o in items]

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> None:
        info = self._kind(api_version, kind)
        with self._lock:
            self._remove(info, self._ns(info, namespace), name)

    def patch(self, api_version: str, kind: str, name: str, patch: Obj, namespace: str | None = None) -> Obj:
        """Merge-patch a stored object (KeyError if absent); watchers see MODIFIED."""
        info = self._kind(api_version, kind)
        with self._lock:
            old = self._bucket(info).get((self._ns(info, namespace), name))
            if old is None:
                raise KeyError(f"{info.plural} {namespace}/{name} not found")
            return copy.deepcopy(self._commit(info, merge_patch(old, patch), old, trusted=True))

    def patch_status(self, api_version: str, kind: str, name: str, status: Obj, namespace: str | None = None) -> Obj:
        return self.patch(api_version, kind, name, {"status": status}, namespace)

    def set_log(
        self, namespace: str, pod: str, text: str, container: str | None = None, previous: bool = False
    ) -> None:
        """Serve `text` from GET .../pods/<pod>/log (per container, and per `previous=true`)."""
        with self._lock:
            self._logs[(namespace, pod, container or "", previous)] = text

    def append_log(self, namespace: str, pod: str, text: str, container: str | None = None) -> None:
        """Append to a log; `follow=true` readers receive the new text live."""
        with self._lock:
            key = (namespace, pod, container or "")
            self._logs[(*key, False)] = self._logs.get((*key, False), "") + text
            for q in self._log_followers.get(key, ()):
                q.put(text)

    def on_read(self, api_version: str, kind: str, namespace: str | None, name: str, fn: ReadHook) -> None:
        """Run `fn(copy_of_object)` on each item GET (incl. /status, /scale); a returned or mutated dict is
        stored (watchers see MODIFIED). Lets a test make a rollout progress over successive polls."""
        info = self._kind(api_version, kind)
        with self._lock:
            self._hooks[(info.group, info.plural, self._ns(info, namespace), name)] = fn

    def fail(
        self,
        method: str,
        path_regex: str,
        status: int,
        times: int | None = 1,
        reason: str | None = None,
        message: str | None = None,
    ) -> None:
        """The next `times` requests (None: all until clear_failures()) whose method matches (`*` = any) and
        whose path matches `path_regex` (re.search) answer a Status with `status`."""
        reason = reason or _REASONS.get(status, "Unknown")
        with self._lock:
            self._failures.append(
                _Failure(method.upper(), re.compile(path_regex), status, times, reason, message or reason)
            )

    def failures_left(self) -> int:
        """Injected failures not yet served (a `times=None` one counts until cleared)."""
        with self._lock:
            return len(self._failures)

    def clear_failures(self) -> None:
        with self._lock:
            self._failures.clear()

    def expire_watches(self) -> None:
        """Like an etcd compaction: open watches get ERROR 410 and close; resuming from any resourceVersion
        seen so far also gets 410, so clients must relist (the list's resourceVersion is valid)."""
        with self._lock:
            self._rv += 1
            self._oldest_ok_rv = self._rv
            for w in self._watches:
                w.q.put(_Signal.EXPIRE)

    def drop_watches(self) -> None:
        """Cut open watch connections without the final chunk, like a network failure."""
        with self._lock:
            for w in self._watches:
                w.q.put(_Signal.DROP)

    @property
    def resource_version(self) -> int:
        return self._rv

    def write_kubeconfig(self, path: str, contexts: dict[str, str], current: str | None = None) -> str:
        """Write a kubeconfig (JSON, which is valid YAML): context name -> cluster name, all clusters at
        self.url over plain http, one user with token `fake-token`."""
        clusters = sorted(set(contexts.values()))
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "preferences": {},
            "clusters": [{"name": c, "cluster": {"server": self.url}} for c in clusters],
            "users": [{"name": "fake-user", "user": {"token": "fake-token"}}],
            "contexts": [
                {"name": ctx, "context": {"cluster": cl, "user": "fake-user"}} for ctx, cl in contexts.items()
            ],
            "current-context": current or next(iter(contexts), ""),
        }
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(config, fh, indent=2)
        return path

    # ---------------------------------------------------------------- store internals (hold self._lock)

    def _bucket(self, info: KindInfo) -> dict[tuple[str, str], Obj]:
        return self._objects.setdefault((info.group, info.plural), {})

    @staticmethod
    def _ns(info: KindInfo, namespace: str | None) -> str:
        return (namespace or "default") if info.namespaced else ""

    @staticmethod
    def _as_version(obj: Obj, api_version: str) -> Obj:
        # One stored object per group, served in whichever version was asked for (as conversion would).
        return obj if obj.get("apiVersion") == api_version else {**obj, "apiVersion": api_version}

    def _select(
        self,
        info: KindInfo,
        namespace: str | None,
        labels: Callable[[Obj], bool] | None = None,
        fields: Callable[[Obj], bool] | None = None,
    ) -> builtins.list[Obj]:
        bucket = self._bucket(info)
        return [
            bucket[key]
            for key in sorted(bucket)
            if (namespace is None or key[0] == namespace)
            and (labels is None or labels(bucket[key]))
            and (fields is None or fields(bucket[key]))
        ]

    def _commit(self, info: KindInfo, obj: Obj, old: Obj | None, *, trusted: bool = False) -> Obj:
        """Store `obj` (a fresh dict nobody else holds) with a new resourceVersion and notify watchers."""
        meta = obj.setdefault("metadata", {})
        self._rv += 1
        meta["resourceVersion"] = str(self._rv)
        explicit_gen = trusted and "generation" in meta
        if old is None:
            if not (trusted and meta.get("uid")):
                meta["uid"] = str(uuid.uuid4())
            if not (trusted and meta.get("creationTimestamp")):
                meta["creationTimestamp"] = _now()
            if not explicit_gen:
                meta["generation"] = 1
            if info.kind == "Namespace" and not info.group:
                obj.setdefault("status", {"phase": "Active"})
        else:
            old_meta = old.get("metadata") or {}
            for k in ("uid", "creationTimestamp"):
                if not (trusted and meta.get(k)) and k in old_meta:
                    meta[k] = old_meta[k]
            if not explicit_gen:
                gen = int(old_meta.get("generation", 1))
                meta["generation"] = gen + 1 if obj.get("spec") != old.get("spec") else gen
        self._bucket(info)[(meta.get("namespace", ""), meta["name"])] = obj
        self._emit("MODIFIED" if old else "ADDED", info, obj, old)
        return obj

    def _remove(self, info: KindInfo, namespace: str, name: str) -> Obj | None:
        old = self._bucket(info).pop((namespace, name), None)
        if old is None:
            return None
        self._rv += 1
        gone = copy.deepcopy(old)
        gone["metadata"]["resourceVersion"] = str(self._rv)
        gone["metadata"].setdefault("deletionTimestamp", _now())
        self._emit("DELETED", info, gone, None)
        self._hooks.pop((info.group, info.plural, namespace, name), None)
        if info.kind == "Pod" and not info.group:
            for key, followers in self._log_followers.items():
                if key[:2] == (namespace, name):
                    for q in followers:
                        q.put(_Signal.STOP)
        return gone

    def _emit(self, etype: str, info: KindInfo, obj: Obj, prev: Obj | None) -> None:
        ns = (obj.get("metadata") or {}).get("namespace", "")
        ev = _Event(etype, self._rv, info.group, info.plural, ns, obj, prev)
        if len(self._history) == self._history.maxlen:
            self._oldest_ok_rv = max(self._oldest_ok_rv, self._history[0].rv)
        self._history.append(ev)
        for w in self._watches:
            if (seen := w.classify(ev)) is not None:
                w.q.put(seen)

    def _signal_streams(self, signal: _Signal) -> None:
        for w in self._watches:
            w.q.put(signal)
        for followers in self._log_followers.values():
            for q in followers:
                q.put(signal)

    def _stream_opened(self) -> None:
        with self._lock:
            self._streams += 1

    def _stream_closed(self) -> None:
        with self._lock:
            self._streams -= 1
            self._streams_done.notify_all()

    # ---------------------------------------------------------------- request handling

    def _record(self, req: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(req)

    def _injected_failure(self, method: str, path: str) -> Obj | None:
        with self._lock:
            for f in self._failures:
                if f.method in ("*", method) and f.pattern.search(path):
                    if f.remaining is not None:
                        f.remaining -= 1
                        if f.remaining <= 0:
                            self._failures.remove(f)
                    return status_body(f.status, f.message, f.reason)
        return None

    def _read_hooked(self, info: KindInfo, route: _Route, namespace: str) -> Obj:
        name = cast(str, route.name)
        with self._lock:
            obj = self._bucket(info).get((namespace, name))
            hook = self._hooks.get((info.group, info.plural, namespace, name))
        if obj is None:
            raise self._not_found(info, name)
        if hook is not None:  # outside the lock: the hook may be slow or call back into the API
            candidate = copy.deepcopy(obj)
            result = hook(candidate)
            new = result if result is not None else candidate
            with self._lock:
                current = self._bucket(info).get((namespace, name))
                if current is not None and new != current:
                    obj = self._commit(info, copy.deepcopy(new), current, trusted=True)
        return obj

    @staticmethod
    def _resource(info: KindInfo) -> str:
        return f"{info.plural}.{info.group}" if info.group else info.plural

    def _not_found(self, info: KindInfo, name: str) -> ApiError:
        details = {"name": name, "group": info.group, "kind": info.plural}
        return ApiError(404, f'{self._resource(info)} "{name}" not found', "NotFound", details)

    def _handle_api(self, method: str, route: _Route, query: dict[str, str], body: Any, ctype: str) -> tuple[int, Any]:
        """Non-streaming API call -> (status, JSON body or text)."""
        info = self._kind_for_route(route, body if isinstance(body, dict) else None)
        ns = route.namespace if info.namespaced else ""
        if route.sub == "log" and info.plural == "pods" and not info.group and method == "GET":
            return 200, self._log_text(cast(str, ns), cast(str, route.name), query)
        if route.sub not in (None, "status", "scale") or (
            route.sub == "scale" and (info.group, info.plural) not in _SCALABLE
        ):
            raise ApiError(404, f"the server could not find the requested resource ({route.sub})", "NotFound")
        if route.name is None:
            return self._collection(method, route, info, query, body)
        key_ns = ns if ns is not None else ""
        if method == "GET":
            obj = self._read_hooked(info, route, key_ns)
            out = self._as_version(obj, route.api_version)
            return 200, (self._scale_view(out) if route.sub == "scale" else out)
        if method == "DELETE":
            with self._lock:
                gone = self._remove(info, key_ns, route.name)
            if gone is None:
                raise self._not_found(info, route.name)
            # Gracefully deleted kinds (pods) answer with the object, the others with a Status.
            if info.kind == "Pod" and not info.group:
                return 200, self._as_version(gone, route.api_version)
            details = {"name": route.name, "group": info.group, "kind": info.plural}
            return 200, {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": {**details, "uid": gone["metadata"].get("uid")},
            }
        if method in ("PUT", "PATCH"):
            return self._update(method, route, info, key_ns, body, ctype)
        raise ApiError(405, f"method {method} not allowed", "MethodNotAllowed")

    def _collection(
        self, method: str, route: _Route, info: KindInfo, query: dict[str, str], body: Any
    ) -> tuple[int, Any]:
        if method == "POST":
            return 201, self._create(route, info, body)
        if method not in ("GET", "DELETE"):
            raise ApiError(405, f"method {method} not allowed on a collection", "MethodNotAllowed")
        labels = parse_label_selector(query.get("labelSelector"))
        fields = parse_field_selector(query.get("fieldSelector"))
        with self._lock:
            items = self._select(info, route.namespace if info.namespaced else None, labels, fields)
            if method == "DELETE":  # deletecollection
                items = [g for o in items if (g := self._remove(info, *self._key(o))) is not None]
            rv = str(self._rv)
        return 200, {
            "kind": f"{info.kind}List",
            "apiVersion": route.api_version,
            "metadata": {"resourceVersion": rv},
            "items": [self._as_version(o, route.api_version) for o in items],
        }

    @staticmethod
    def _key(obj: Obj) -> tuple[str, str]:
        meta = obj.get("metadata") or {}
        return meta.get("namespace", ""), meta["name"]

    def _check_body(self, route: _Route, info: KindInfo, body: Any) -> Obj:
        if not isinstance(body, dict):
            raise ApiError(400, "request body must be a JSON object", "BadRequest")
        obj = copy.deepcopy(body)
        obj["apiVersion"], obj["kind"] = route.api_version, info.kind
        meta = obj.setdefault("metadata", {})
        if info.namespaced:
            if meta.get("namespace") not in (None, "", route.namespace):
                raise ApiError(
                    400,
                    "the namespace of the provided object does not match the namespace sent on the request",
                    "BadRequest",
                )
            meta["namespace"] = route.namespace or "default"
        else:
            meta.pop("namespace", None)
        return obj

    def _create(self, route: _Route, info: KindInfo, body: Any) -> Obj:
        obj = self._check_body(route, info, body)
        meta = obj["metadata"]
        for server_owned in (
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "generation",
            "deletionTimestamp",
        ):
            meta.pop(server_owned, None)
        with self._lock:
            if not meta.get("name"):
                if not meta.get("generateName"):
                    raise ApiError(422, "name or generateName is required", "Invalid")
                while True:
                    meta["name"] = meta["generateName"] + "".join(random.choices(_SUFFIX_CHARS, k=5))
                    if self._key(obj) not in self._bucket(info):
                        break
            elif self._key(obj) in self._bucket(info):
                details = {"name": meta["name"], "group": info.group, "kind": info.plural}
                raise ApiError(409, f'{self._resource(info)} "{meta["name"]}" already exists', "AlreadyExists", details)
            return self._as_version(self._commit(info, obj, None), route.api_version)

    def _update(self, method: str, route: _Route, info: KindInfo, ns: str, body: Any, ctype: str) -> tuple[int, Any]:
        name = cast(str, route.name)
        with self._lock:
            old = self._bucket(info).get((ns, name))
            if old is None and not ctype.startswith("application/apply-patch"):
                raise self._not_found(info, name)
            if method == "PUT":
                new = body if isinstance(body, dict) else {}
                if route.sub == "scale":
                    new = merge_patch(old, {"spec": {"replicas": (new.get("spec") or {}).get("replicas")}})
                else:
                    sent_rv = (new.get("metadata") or {}).get("resourceVersion")
                    if sent_rv and old is not None and sent_rv != old["metadata"]["resourceVersion"]:
                        raise ApiError(
                            409,
                            f'Operation cannot be fulfilled on {self._resource(info)} "{name}": the '
                            "object has been modified; please apply your changes to the latest version and "
                            "try again",
                            "Conflict",
                            {"name": name, "group": info.group, "kind": info.plural},
                        )
            else:
                base = self._scale_view(old) if route.sub == "scale" and old is not None else (old or {})
                new = self._apply_patch(base, body, ctype)
                if route.sub == "scale":
                    new = merge_patch(old, {"spec": {"replicas": (new.get("spec") or {}).get("replicas")}})
            new = self._check_body(route, info, {**new, "metadata": {**(new.get("metadata") or {}), "name": name}})
            if not info.namespaced:
                new["metadata"].pop("namespace", None)
            stored = self._commit(info, new, old)
            out = self._as_version(stored, route.api_version)
            return (201 if old is None else 200), (self._scale_view(out) if route.sub == "scale" else out)

    @staticmethod
    def _apply_patch(base: Obj, body: Any, ctype: str) -> Obj:
        if ctype == "application/json-patch+json":
            if not isinstance(body, list):
                raise ApiError(400, "JSON patch body must be a list of operations", "BadRequest")
            return json_patch(base, body)
        if ctype in (
            "application/merge-patch+json",
            "application/strategic-merge-patch+json",
            "application/apply-patch+yaml",  # JSON is YAML; server-side apply approximated by a merge
        ):
            if not isinstance(body, dict):
                raise ApiError(400, "patch body must be a JSON object", "BadRequest")
            return merge_patch(base, body, strategic=ctype != "application/merge-patch+json")
        raise ApiError(415, f"the body of the request was in an unknown format: {ctype}", "UnsupportedMediaType")

    @staticmethod
    def _scale_view(obj: Obj) -> Obj:
        meta = obj.get("metadata") or {}
        selector = ((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp") if k in meta
            },
            "spec": {"replicas": (obj.get("spec") or {}).get("replicas", 1)},
            "status": {
                "replicas": (obj.get("status") or {}).get("replicas", 0),
                "selector": ",".join(f"{k}={v}" for k, v in selector.items()),
            },
        }

    # ---------------------------------------------------------------- logs

    def _log_key(self, ns: str, pod: str, container: str | None) -> tuple[str, str, str]:
        if container:
            return ns, pod, container
        with self._lock:
            names = sorted({k[2] for k in self._logs if k[:2] == (ns, pod)})
            exists = (ns, pod) in self._objects.get(("", "pods"), {})
        if "" in names or not names:
            if not names and not exists:
                raise self._not_found(self._kinds[("", "Pod")], pod)
            return ns, pod, ""
        if len(names) == 1:
            return ns, pod, names[0]
        raise ApiError(
            400,
            f"a container name must be specified for pod {pod}, choose one of: [{' '.join(names)}]",
            "BadRequest",
        )

    def _log_text(self, ns: str, pod: str, query: dict[str, str]) -> str:
        key = self._log_key(ns, pod, query.get("container"))
        previous = query.get("previous") in ("true", "1")
        with self._lock:
            text = self._logs.get((*key, previous))
            if text is None and key[2]:  # a container-less log answers for any container
                text = self._logs.get((ns, pod, "", previous))
        if text is None:
            if previous:
                raise ApiError(400, f'previous terminated container "{key[2]}" in pod "{pod}" not found', "BadRequest")
            text = ""
        if (tail := query.get("tailLines")) is not None:
            lines = text.splitlines(keepends=True)
            text = "".join(lines[-int(tail) :]) if int(tail) > 0 else ""
        if (limit := query.get("limitBytes")) is not None:
            text = text.encode()[: int(limit)].decode(errors="ignore")
        return text

    def _follow_log(self, ns: str, pod: str, query: dict[str, str]) -> tuple[str, queue.Queue[str | _Signal]]:
        key = self._log_key(ns, pod, query.get("container"))
        q: queue.Queue[str | _Signal] = queue.Queue()
        with self._lock:  # register before reading so no appended text is lost between the two
            self._log_followers.setdefault(key, set()).add(q)
            text = self._log_text(ns, pod, {**query, "previous": "false"})
            if self._stopping:
                q.put(_Signal.STOP)
        return text, q

    def _unfollow_log(self, q: queue.Queue[str | _Signal]) -> None:
        with self._lock:
            for followers in self._log_followers.values():
                followers.discard(q)

    # ---------------------------------------------------------------- watch

    def _open_watch(self, route: _Route, query: dict[str, str]) -> _Watch:
        info = self._kind_for_route(route)
        w = _Watch(
            info.group,
            info.plural,
            route.version,
            route.namespace if info.namespaced else None,
            parse_label_selector(query.get("labelSelector")),
            parse_field_selector(query.get("fieldSelector")),
        )
        raw_rv = query.get("resourceVersion", "")
        with self._lock:  # snapshot/replay and registration are atomic: no event is missed or doubled
            if raw_rv in ("", "0"):
                for obj in self._select(info, w.namespace, w.labels, w.fields):
                    w.q.put(("ADDED", obj))
            else:
                try:
                    since = int(raw_rv)
                except ValueError:
                    raise ApiError(400, f'invalid resourceVersion "{raw_rv}"', "BadRequest") from None
                if since < self._oldest_ok_rv:
                    w.q.put(_Signal.EXPIRE)
                    return w
                for ev in self._history:
                    if ev.rv > since and (seen := w.classify(ev)) is not None:
                        w.q.put(seen)
            if self._stopping:
                w.q.put(_Signal.STOP)
            self._watches.add(w)
        return w

    def _close_watch(self, w: _Watch) -> None:
        with self._lock:
            self._watches.discard(w)

    def _expired_status(self) -> Obj:
        with self._lock:
            msg = f"too old resource version: {self._oldest_ok_rv - 1} ({self._rv})"
        return status_body(410, msg, "Expired")


# ------------------------------------------------------------------------------------------- HTTP layer


def _route(segments: builtins.list[str]) -> _Route | None:
    if segments[:2] == ["api", "v1"]:
        group, version, rest = "", "v1", segments[2:]
    elif len(segments) >= 3 and segments[0] == "apis":
        group, version, rest = segments[1], segments[2], segments[3:]
    else:
        return None
    if rest[:1] == ["watch"]:  # legacy /watch/ URLs
        rest = rest[1:]
    if not rest:
        return None
    if rest[0] == "namespaces" and len(rest) >= 3 and not (not group and rest[2] in ("status", "finalize")):
        ns, plural, tail = rest[1], rest[2], rest[3:]
    else:
        ns, plural, tail = None, rest[0], rest[1:]
    if len(tail) > 2:
        return None
    return _Route(group, version, plural, ns, tail[0] if tail else None, tail[1] if len(tail) > 1 else None)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and chunked watch streams, like the real apiserver
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        with self.server.api._lock:
            self.server.api._conns.add(self.connection)

    def finish(self) -> None:
        with self.server.api._lock:
            self.server.api._conns.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    # -------------------------------------------------------------- plumbing

    def _send(self, status: int, payload: Any, ctype: str = "application/json") -> None:
        data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Audit-Id", str(uuid.uuid4()))
        self.end_headers()
        self.wfile.write(data)

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _client_gone(self) -> bool:
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _abort(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _serve(self, method: str) -> None:
        api = self.server.api
        parts = urlsplit(self.path)
        path = parts.path.rstrip("/") or "/"
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        headers = {k.lower(): v for k, v in self.headers.items()}
        api._record(RecordedRequest(method, path, query, body, headers))
        try:
            if (failure := api._injected_failure(method, path)) is not None:
                self._send(failure["code"], failure)
                return
            if isinstance(body, str):
                raise ApiError(400, "request body is not valid JSON", "BadRequest")
            if self._discovery(method, path):
                return
            route = _route([unquote(s) for s in path.strip("/").split("/")])
            if route is None:
                raise ApiError(404, "the server could not find the requested resource", "NotFound")
            watching = query.get("watch") in ("true", "1") or "/watch/" in path
            if watching and method == "GET" and route.name is None:
                self._watch(api, route, query)
            elif route.sub == "log" and method == "GET" and query.get("follow") in ("true", "1"):
                self._follow(api, route, query)
            else:
                status, payload = api._handle_api(method, route, query, body, ctype)
                self._send(status, payload, "text/plain" if isinstance(payload, str) else "application/json")
        except ApiError as exc:
            self._send(exc.code, exc.body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:  # a bug in the fake must surface as a 500, not a hung client
            self.close_connection = True  # headers may already be out (streams): don't reuse
            self._send(500, status_body(500, f"fake apiserver error: {exc!r}"))

    def _discovery(self, method: str, path: str) -> bool:
        api = self.server.api
        if method != "GET":
            return False
        if path in ("/healthz", "/readyz", "/livez"):
            self._send(200, "ok", "text/plain")
            return True
        major, minor = GIT_VERSION[1:].split(".")[:2]
        if path == "/version":
            self._send(
                200,
                {
                    "major": major,
                    "minor": minor,
                    "gitVersion": GIT_VERSION,
                    "gitCommit": "fake",
                    "gitTreeState": "clean",
                    "buildDate": "2024-08-13T00:00:00Z",
                    "goVersion": "go1.22.5",
                    "compiler": "gc",
                    "platform": "linux/amd64",
                },
            )
            return True
        if path == "/api":
            self._send(
                200,
                {
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [
                        {"clientCIDR": "0.0.0.0/0", "serverAddress": f"{api.host}:{api.port}"}
                    ],
                },
            )
            return True
        with api._lock:
            kinds = builtins.list(api._plurals.values())
        groups: dict[str, builtins.list[str]] = {}
        for info in kinds:
            groups.setdefault(info.group, [])
            groups[info.group] += [v for v in info.versions if v not in groups[info.group]]

        def group_doc(name: str) -> Obj:
            versions = [{"groupVersion": f"{name}/{v}", "version": v} for v in groups[name]]
            return {"name": name, "versions": versions, "preferredVersion": versions[0]}

        if path == "/apis":
            self._send(
                200,
                {
                    "kind": "APIGroupList",
                    "apiVersion": "v1",
                    "groups": [group_doc(g) for g in sorted(groups) if g],
                },
            )
            return True
        segs = path.strip("/").split("/")
        if len(segs) == 2 and segs[0] == "apis" and segs[1] in groups:
            self._send(200, {"kind": "APIGroup", "apiVersion": "v1", **group_doc(segs[1])})
            return True
        if segs == ["api", "v1"] or (len(segs) == 3 and segs[0] == "apis"):
            group, version = ("", "v1") if segs[0] == "api" else (segs[1], segs[2])
            resources = [
                {
                    "name": i.plural,
                    "singularName": i.kind.lower(),
                    "namespaced": i.namespaced,
                    "kind": i.kind,
                    "verbs": [
                        "create",
                        "delete",
                        "deletecollection",
                        "get",
                        "list",
                        "patch",
                        "update",
                        "watch",
                    ],
                }
                for i in kinds
                if i.group == group and version in i.versions
            ]
            if not resources:
                return False
            gv = f"{group}/{version}" if group else version
            self._send(
                200,
                {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources},
            )
            return True
        return False

    def _start_stream(self, ctype: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()

    def _stream_loop(self, q: queue.Queue[Any], deadline: float | None, render: Callable[[Any], bytes | None]) -> None:
        """Pump queue items to the client until a signal, the deadline, or the client hanging up."""
        while True:
            timeout = _POLL if deadline is None else min(_POLL, deadline - time.monotonic())
            if timeout <= 0:
                break
            try:
                item = q.get(timeout=timeout)
            except queue.Empty:
                if self._client_gone():
                    self.close_connection = True
                    return
                continue
            if item is _Signal.DROP:
                self._abort()
                return
            if item is _Signal.STOP:
                break
            data = render(item)
            if data is None:  # EXPIRE was rendered; the stream ends after it
                break
            self._chunk(data)
        self.wfile.write(b"0\r\n\r\n")

    def _watch(self, api: FakeKubeAPI, route: _Route, query: dict[str, str]) -> None:
        w = api._open_watch(route, query)
        api_version = route.api_version
        deadline = time.monotonic() + float(query["timeoutSeconds"]) if query.get("timeoutSeconds") else None

        def render(item: tuple[str, Obj] | _Signal) -> bytes | None:
            if item is _Signal.EXPIRE:
                self._chunk(json.dumps({"type": "ERROR", "object": api._expired_status()}).encode() + b"\n")
                return None
            etype, obj = cast(tuple[str, Obj], item)
            return json.dumps({"type": etype, "object": api._as_version(obj, api_version)}).encode() + b"\n"

        api._stream_opened()
        try:
            self._start_stream("application/json")
            self._stream_loop(w.q, deadline, render)
        finally:
            api._close_watch(w)
            api._stream_closed()

    def _follow(self, api: FakeKubeAPI, route: _Route, query: dict[str, str]) -> None:
        ns, pod = route.namespace or "default", cast(str, route.name)
        text, q = api._follow_log(ns, pod, query)
        api._stream_opened()
        try:
            self._start_stream("text/plain")
            if text:
                self._chunk(text.encode())
            self._stream_loop(q, None, lambda item: str(item).encode())
        finally:
            api._unfollow_log(q)
            api._stream_closed()
