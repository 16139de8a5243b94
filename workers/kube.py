"""The one module that owns the Kubernetes client.

Objects come back as plain dicts in the API's own JSON shape (camelCase, as `kubectl get -o json`
prints), so the pure summarisers and classifiers work on data, not on client classes. The client's
`ApiException` dumps headers and bodies in its `str()`; it never leaves this module: it becomes a
`KubeError` with a short, safe message.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import logging
import socket
from collections.abc import Callable, Hashable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import urllib3
from kubernetes import client, config
from kubernetes import watch as k8s_watch
from kubernetes.client.rest import ApiException
from kubernetes.config.config_exception import ConfigException

from core.redact import REDACTOR, secret_values
from workers.errors import KubeError

log = logging.getLogger("plate.kube")
Obj = dict[str, Any]
TIMEOUT = (5, 30)  # connect, read seconds for every call


def read_retries() -> urllib3.Retry:
    """urllib3's retry policy for every call: a refused connection (nothing was sent) is tried again for
    any method; a GET that meets a 5xx or 429 (API server restarting, an etcd leader change, priority and
    fairness) is tried again after 0, 0.5 and 1 s, honouring Retry-After. Writes are never repeated on a
    status: the first answer is final. A status that persists becomes the caller's KubeError."""
    return urllib3.Retry(
        total=3,
        connect=3,
        read=0,  # a read timeout may mean the server acted: not retried, the 30 s read timeout is the bound
        status=3,
        allowed_methods=frozenset({"GET", "HEAD"}),
        status_forcelist=frozenset({429, 500, 502, 503, 504}),
        backoff_factor=0.25,
        backoff_max=2.0,
        raise_on_status=False,  # the last answer goes back to the client, which raises ApiException
    )


def _reason(exc: ApiException) -> str:
    try:
        message = json.loads(exc.body or "{}").get("message", "")
    except (ValueError, AttributeError):
        message = ""
    # A 422 echoes the value it refused (`data[token]: Invalid value: "…"`): redacted before it is cut.
    return REDACTOR.text(str(message or exc.reason or "error"))[:300]


@contextmanager
def _api(what: str) -> Iterator[None]:
    try:
        yield
    except ApiException as exc:
        if exc.status == 403:
            raise KubeError(f"Kubernetes refused to {what} (403 Forbidden): {_reason(exc)}", 403) from None
        raise KubeError(f"Kubernetes could not {what} ({exc.status}): {_reason(exc)}", exc.status) from None
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise KubeError(f"cannot reach the Kubernetes API to {what}: {type(exc).__name__}") from None


def context_cluster(kubeconfig: str | None, context: str) -> str | None:
    """The cluster name a kubeconfig context points at; None if the context does not exist."""
    try:
        contexts, _ = config.list_kube_config_contexts(config_file=kubeconfig)
    except (ConfigException, OSError) as exc:
        raise KubeError(f"cannot read the kubeconfig: {exc}") from None
    for item in contexts or []:
        if item.get("name") == context:
            return str((item.get("context") or {}).get("cluster") or "")
    return None


_APIS = ("CoreV1Api", "AppsV1Api", "NetworkingV1Api", "AutoscalingV2Api", "CustomObjectsApi")


def preload() -> None:
    """Load the client's API classes now. The kubernetes package imports them (and hundreds of model
    modules) lazily on first use, ~2 s: a worker calls this before it forks, so no job pays it again."""
    for name in _APIS:
        getattr(client, name)


class KubeGateway:
    def __init__(self, api_client: client.ApiClient) -> None:
        self.api_client = api_client
        self.core = client.CoreV1Api(api_client)
        self.apps = client.AppsV1Api(api_client)
        self.networking = client.NetworkingV1Api(api_client)
        self.autoscaling = client.AutoscalingV2Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self._versions: dict[str, str] = {}  # custom kind -> the API version this cluster serves
        self.context: str | None = None  # the kube context (cluster) it talks to; names its Secrets' sources

    @classmethod
    def connect(cls, kube_context: str | None, kubeconfig: str | None = None) -> KubeGateway:
        """The environment's context from the kubeconfig, or in-cluster config when it names none."""
        configuration = client.Configuration()
        try:
            if kube_context:
                config.load_kube_config(
                    config_file=kubeconfig, context=kube_context, client_configuration=configuration
                )
            else:
                config.load_incluster_config(client_configuration=configuration)
        except (ConfigException, OSError) as exc:
            raise KubeError(f"cannot load Kubernetes credentials: {exc}") from None
        configuration.retries = read_retries()  # read by the pool manager the ApiClient makes
        gateway = cls(client.ApiClient(configuration))
        gateway.context = kube_context
        return gateway

    def _raw(self, what: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        with _api(what):
            response = call(*args, _preload_content=False, _request_timeout=TIMEOUT, **kwargs)
            return json.loads(response.data or b"null")

    def _items(self, what: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> list[Obj]:
        return list(self._raw(what, call, *args, **kwargs).get("items") or [])

    # --- reads ----------------------------------------------------------------------------------------
    def namespace(self, name: str) -> Obj | None:
        try:
            return self._raw(f"read namespace {name}", self.core.read_namespace, name)
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    def _listed(self, kind: str, call: Callable[..., Any], namespace: str, selector: str | None) -> list[Obj]:
        return self._items(f"list {kind} in {namespace}", call, namespace, label_selector=selector or "")

    def pods(self, namespace: str, selector: str | None = None) -> list[Obj]:
        return self._listed("pods", self.core.list_namespaced_pod, namespace, selector)

    def services(self, namespace: str, selector: str | None = None) -> list[Obj]:
        return self._listed("services", self.core.list_namespaced_service, namespace, selector)

    def ingresses(self, namespace: str, selector: str | None = None) -> list[Obj]:
        return self._listed("ingresses", self.networking.list_namespaced_ingress, namespace, selector)

    def hpas(self, namespace: str, selector: str | None = None) -> list[Obj]:
        call = self.autoscaling.list_namespaced_horizontal_pod_autoscaler
        return self._listed("autoscalers", call, namespace, selector)

    def deployments(self, namespace: str, selector: str | None = None) -> list[Obj]:
        return self._listed("deployments", self.apps.list_namespaced_deployment, namespace, selector)

    def statefulsets(self, namespace: str, selector: str | None = None) -> list[Obj]:
        return self._listed("statefulsets", self.apps.list_namespaced_stateful_set, namespace, selector)

    def events(self, namespace: str, field_selector: str | None = None) -> list[Obj]:
        return self._items(
            f"list events in {namespace}",
            self.core.list_namespaced_event,
            namespace,
            field_selector=field_selector or "",
        )

    def pod_log(
        self, namespace: str, pod: str, container: str | None = None, tail: int = 20, previous: bool = False
    ) -> str:
        with _api(f"read the log of {pod}"):
            kwargs: dict[str, Any] = {"tail_lines": tail, "previous": previous}
            if container:
                kwargs["container"] = container
            response: Any = self.core.read_namespaced_pod_log(
                pod, namespace, _preload_content=False, _request_timeout=TIMEOUT, **kwargs
            )
            return str(response.data.decode(errors="replace"))

    # --- harbor-verify / harbor-bootstrap -----------------------------------------------------------------
    def _optional(self, what: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Obj | None:
        """A read where 404 means "absent" (None), not a failure."""
        try:
            return self._raw(what, call, *args, **kwargs)
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    def secret(self, namespace: str, name: str) -> Obj | None:
        """A Secret with its values; every value is registered with the redaction layer before it is returned."""
        obj = self._optional(f"read Secret {namespace}/{name}", self.core.read_namespaced_secret, name, namespace)
        if obj is not None:
            REDACTOR.set(self.secret_source(namespace, name), secret_values(obj))
        return obj

    # --- the redaction layer's exact values: every Secret of the namespaces this process talks about -------
    def secret_source(self, namespace: str, name: str) -> tuple[str, str, str, str]:
        """The registry key of a Secret's values: a changed Secret replaces them, a deleted one drops them."""
        return ("secret", self.context or "", namespace, name)

    def list_secrets(self, namespace: str) -> tuple[list[Obj], str]:
        """The Secrets of `namespace` that hold credentials (not helm's release records, skipped by the API
        server with a field selector), and the list's resourceVersion."""
        data = self._raw(
            f"list secrets in {namespace}",
            self.core.list_namespaced_secret,
            namespace,
            field_selector=SECRETS_SELECTOR,
        )
        return list(data.get("items") or []), str((data.get("metadata") or {}).get("resourceVersion") or "")

    def learn_secrets(self, namespaces: Iterable[str]) -> list[str]:
        """Register the values of every Secret in `namespaces` with the redaction layer (replacing what was
        known of those namespaces), before any cluster text is posted or logged. Best effort: a namespace
        that cannot be listed (RBAC's 403, the API down) is logged once, without values, and skipped:
        redaction goes on with the patterns and whatever else is known. Returns the namespaces learnt."""
        lists: dict[tuple[Hashable, ...], dict[Hashable, list[str]]] = {}
        for namespace in dict.fromkeys(namespaces):
            try:
                items, _version = self.list_secrets(namespace)
            except KubeError as exc:
                _warn_once(self.context, namespace, exc)
                continue
            lists[("secret", self.context or "", namespace)] = {
                self.secret_source(namespace, str((s.get("metadata") or {}).get("name"))): secret_values(s)
                for s in items
            }
        if lists:
            REDACTOR.replace_all(lists)
        return [str(scope[2]) for scope in lists]

    def service_account(self, namespace: str, name: str) -> Obj | None:
        return self._optional(
            f"read ServiceAccount {namespace}/{name}", self.core.read_namespaced_service_account, name, namespace
        )

    def pod(self, namespace: str, name: str) -> Obj | None:
        return self._optional(f"read pod {namespace}/{name}", self.core.read_namespaced_pod, name, namespace)

    def create_pod(self, namespace: str, body: Obj) -> Obj:
        return self._raw(f"create a pod in {namespace}", self.core.create_namespaced_pod, namespace, body)

    def delete_pod(self, namespace: str, name: str, grace_seconds: int = 0) -> bool:
        """Delete a pod; False when it was already gone."""
        gone = self._optional(
            f"delete pod {namespace}/{name}",
            self.core.delete_namespaced_pod,
            name,
            namespace,
            grace_period_seconds=grace_seconds,
        )
        return gone is not None

    def create_namespace(self, name: str) -> bool:
        """Create a namespace; False when it already existed."""
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        try:
            self._raw(f"create namespace {name}", self.core.create_namespace, body)
        except KubeError as exc:
            if exc.status == 409:
                return False
            raise
        return True

    def create_custom_object(self, group: str, version: str, namespace: str, plural: str, body: Obj) -> Obj:
        return self._raw(
            f"create {plural}.{group} in {namespace}",
            self.custom.create_namespaced_custom_object,
            group,
            version,
            namespace,
            plural,
            body,
        )

    def patch_custom_object(self, group: str, version: str, namespace: str, plural: str, name: str, patch: Obj) -> Obj:
        """JSON merge patch (RFC 7386) of a namespaced custom object."""
        return self._raw(
            f"patch {plural}.{group} {namespace}/{name}",
            self.custom.patch_namespaced_custom_object,
            group,
            version,
            namespace,
            plural,
            name,
            patch,
            _content_type="application/merge-patch+json",
        )

    # --- rollback: the Argo CD Application that may redeploy over it ---------------------------------
    def argocd_application(self, namespace: str, name: str) -> Obj | None:
        """An Argo CD Application (argoproj.io/v1alpha1); None when it does not exist."""
        return self._optional(
            f"read Argo CD Application {namespace}/{name}",
            self.custom.get_namespaced_custom_object,
            "argoproj.io",
            "v1alpha1",
            namespace,
            "applications",
            name,
        )

    def pause_auto_sync(self, namespace: str, name: str, automated: Obj) -> Obj:
        """Remove `spec.syncPolicy.automated`, only if it still equals `automated` (what the caller read and
        recorded): the JSON patch's `test` turns a concurrent edit into a 422 instead of overwriting it."""
        path = "/spec/syncPolicy/automated"
        return self._raw(
            f"pause auto-sync of Argo CD Application {namespace}/{name}",
            self.custom.patch_namespaced_custom_object,
            "argoproj.io",
            "v1alpha1",
            namespace,
            "applications",
            name,
            [{"op": "test", "path": path, "value": automated}, {"op": "remove", "path": path}],
            _content_type="application/json-patch+json",
        )

    # --- what the incident watcher follows (list-then-watch) and reads for its diagnosis ---------------
    def list_kind(self, kind: str, namespace: str, selector: str = "") -> tuple[list[Obj], str]:
        """Every `kind` (a WATCHABLE name) in `namespace`, and the list's resourceVersion to watch from.
        `selector`: labels helm's release records must also have (`name in (…)`: which releases)."""
        what = f"list {kind} in {namespace}"
        data = self._with_version(kind, lambda call, *a: self._raw(what, call, *a), namespace, selector=selector)
        return list(data.get("items") or []), str((data.get("metadata") or {}).get("resourceVersion") or "")

    def watch_kind(
        self, kind: str, namespace: str, resource_version: str, timeout: int, selector: str = ""
    ) -> WatchStream:
        """Changes to `kind` after `resource_version`, for at most `timeout` seconds (the server ends it)."""
        call, args = self._watch_call(kind, namespace, selector)
        return WatchStream(call, args, resource_version, timeout, f"watch {kind} in {namespace}")

    def custom_object(self, kind: str, namespace: str, name: str) -> Obj | None:
        """One ExternalSecret, SecretStore or Application; None when it does not exist."""
        what = f"read {kind} {namespace}/{name}"
        return self._with_version(kind, lambda call, *a: self._optional(what, call, *a), namespace, name)

    def replicaset(self, namespace: str, name: str) -> Obj | None:
        what = f"read replicaset {namespace}/{name}"
        return self._optional(what, self.apps.read_namespaced_replica_set, name, namespace)

    def repository_secrets(self, namespace: str) -> list[Obj]:
        """Argo CD repository credentials (`repository` and `repo-creds` Secrets): name, kind and URL only."""
        out = []
        for kind in ("repository", "repo-creds"):
            items = self._items(
                f"list Argo CD {kind} secrets in {namespace}",
                self.core.list_namespaced_secret,
                namespace,
                label_selector=f"argocd.argoproj.io/secret-type={kind}",
            )
            for secret in items:
                encoded = (secret.get("data") or {}).get("url", "")
                try:
                    url = base64.b64decode(encoded).decode() if encoded else ""
                except ValueError:
                    url = ""
                url = url or str((secret.get("stringData") or {}).get("url", ""))
                out.append({"name": (secret.get("metadata") or {}).get("name", "?"), "kind": kind, "url": url})
        return out

    def _watch_call(self, kind: str, namespace: str, selector: str = "") -> tuple[Callable[..., Any], tuple[Any, ...]]:
        if kind == "pods":
            return self.core.list_namespaced_pod, (namespace,)
        if kind == "events":
            return self.core.list_namespaced_event, (namespace,)
        if kind == "secrets":
            return functools.partial(self.core.list_namespaced_secret, field_selector=SECRETS_SELECTOR), (namespace,)
        labels = ",".join(["owner=helm", *([selector] if selector else [])])
        if kind == "helmsecrets":  # helm's release records (the default `secret` driver)
            call = functools.partial(
                self.core.list_namespaced_secret, field_selector=HELM_RECORDS_SELECTOR, label_selector=labels
            )
            return call, (namespace,)
        if kind == "helmconfigmaps":  # the same with HELM_DRIVER=configmap
            return functools.partial(self.core.list_namespaced_config_map, label_selector=labels), (namespace,)
        group, plural, versions = _CUSTOM[kind]
        version = self._versions.get(kind, versions[0])
        return self.custom.list_namespaced_custom_object, (group, version, namespace, plural)

    def _with_version(
        self, kind: str, fetch: Callable[..., Any], namespace: str, *name: str, selector: str = ""
    ) -> Any:
        """Core kinds directly; custom kinds in the first served version (ESO v1, else v1beta1), remembered."""
        if kind in _CORE:
            call, _args = self._watch_call(kind, namespace, selector)
            return fetch(call, namespace)
        group, plural, versions = _CUSTOM[kind]
        tried = [self._versions[kind]] if kind in self._versions else list(versions)
        for i, version in enumerate(tried):
            call = self.custom.get_namespaced_custom_object if name else self.custom.list_namespaced_custom_object
            try:
                data = fetch(call, group, version, namespace, plural, *name)
            except KubeError as exc:
                # 404 on the collection: this version is not served; a missing object is also 404,
                # so only a list decides the version.
                if exc.status == 404 and not name and i + 1 < len(tried):
                    continue
                raise
            if not name:
                self._versions[kind] = version
            return data
        raise KubeError(f"no served version of {kind}", 404)  # pragma: no cover - loop always returns/raises


# Custom kinds the watcher follows: name -> (group, plural, versions to try in order).
_CUSTOM: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "externalsecrets": ("external-secrets.io", "externalsecrets", ("v1", "v1beta1")),
    "secretstores": ("external-secrets.io", "secretstores", ("v1", "v1beta1")),
    "applications": ("argoproj.io", "applications", ("v1alpha1",)),
}
_CORE = ("pods", "events", "secrets", "helmsecrets", "helmconfigmaps")
WATCHABLE = (*_CORE, *_CUSTOM)
# helm's release records (`helm.sh/release.v1`) are large gzip'd manifests, not credentials.
SECRETS_SELECTOR = "type!=helm.sh/release.v1"
HELM_RECORDS_SELECTOR = "type=helm.sh/release.v1"
_warned: set[tuple[str | None, str]] = set()


def _warn_once(context: str | None, namespace: str, exc: KubeError) -> None:
    """Say once per process and namespace that its Secrets are unknown to the redaction layer."""
    if (context, namespace) in _warned:
        return
    _warned.add((context, namespace))
    log.warning(
        "cannot list the Secrets of %s: exact-value redaction goes on without them (patterns still apply): %s",
        namespace,
        exc.message,
        extra={"kube_context": context or "in-cluster", "namespace": namespace},
    )


class WatchExpired(KubeError):
    """410 Gone: the resourceVersion was compacted away. List again, then watch from the list's version."""


class WatchBroken(KubeError):
    """The stream ended abnormally (connection dropped, read timeout): resume from the last version."""


class WatchStream:
    """One watch request as an iterator of (type, object) with objects as plain dicts. `close()` from any
    thread ends it at once (the socket is shut down). Errors come out as WatchExpired / WatchBroken /
    KubeError, never as the client's own exceptions.

    The lines are read here rather than through `kubernetes.watch.Watch`: its raw (non-deserializing)
    mode fails on ERROR events, and deserializing every object into client models is wasted work."""

    def __init__(
        self, call: Callable[..., Any], args: tuple[Any, ...], resource_version: str, timeout: int, what: str
    ) -> None:
        self._call, self._args, self._what = call, args, what
        self._kwargs: dict[str, Any] = {
            "watch": True,
            "resource_version": resource_version,
            "timeout_seconds": int(timeout),
            "allow_watch_bookmarks": True,
            "_preload_content": False,
            "_request_timeout": (TIMEOUT[0], int(timeout) + 15),
        }
        self._response: Any = None
        self.closed = False

    def __iter__(self) -> Iterator[tuple[str, Obj]]:
        try:
            self._response = response = self._call(*self._args, **self._kwargs)
            if self.closed:
                return
            for line in k8s_watch.watch.iter_resp_lines(response):
                if not line.strip():
                    continue
                event = json.loads(line)
                obj = event.get("object")
                if event.get("type") == "ERROR":
                    code = int((obj or {}).get("code") or 0)
                    message = REDACTOR.text(str((obj or {}).get("message", "")))[:300]
                    if code == 410:
                        raise WatchExpired(f"{self._what}: resourceVersion expired (410 Gone)", 410)
                    raise KubeError(f"Kubernetes could not {self._what} ({code}): {message}", code)
                if isinstance(obj, dict):
                    yield str(event.get("type", "")), obj
        except ApiException as exc:
            if exc.status == 410:
                raise WatchExpired(f"{self._what}: resourceVersion expired (410 Gone)", 410) from None
            raise KubeError(f"Kubernetes could not {self._what} ({exc.status}): {_reason(exc)}", exc.status) from None
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            if self.closed:
                return
            raise WatchBroken(f"{self._what}: the stream broke ({type(exc).__name__})") from None
        finally:
            if self._response is not None:
                self._response.release_conn()

    @property
    def open(self) -> bool:
        """The server answered the watch request: changes from now on reach this stream."""
        return self._response is not None and not self.closed

    def close(self) -> None:
        """Stop the stream from another thread: shut the socket so a blocked read returns now."""
        self.closed = True
        sock = getattr(getattr(self._response, "connection", None), "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
