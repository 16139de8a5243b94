"""The one module that owns the Kubernetes client.

Objects come back as plain dicts in the API's own JSON shape (camelCase, as `kubectl get -o json`
prints), so the pure summarisers and classifiers work on data, not on client classes. The client's
`ApiException` dumps headers and bodies in its `str()`; it never leaves this module: it becomes a
`KubeError` with a short, safe message.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import urllib3
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from kubernetes.config.config_exception import ConfigException

from workers.errors import KubeError

Obj = dict[str, Any]
TIMEOUT = (5, 30)  # connect, read seconds for every call


def _reason(exc: ApiException) -> str:
    try:
        message = json.loads(exc.body or "{}").get("message", "")
    except (ValueError, AttributeError):
        message = ""
    return str(message or exc.reason or "error")[:300]


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


class KubeGateway:
    def __init__(self, api_client: client.ApiClient) -> None:
        self.api_client = api_client
        self.core = client.CoreV1Api(api_client)
        self.apps = client.AppsV1Api(api_client)
        self.networking = client.NetworkingV1Api(api_client)
        self.autoscaling = client.AutoscalingV2Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)

    @classmethod
    def connect(cls, kube_context: str | None, kubeconfig: str | None = None) -> KubeGateway:
        """The environment's context from the kubeconfig, or in-cluster config when it names none."""
        try:
            if kube_context:
                api_client = config.new_client_from_config(config_file=kubeconfig, context=kube_context)
            else:
                configuration = client.Configuration()
                config.load_incluster_config(client_configuration=configuration)
                api_client = client.ApiClient(configuration)
        except (ConfigException, OSError) as exc:
            raise KubeError(f"cannot load Kubernetes credentials: {exc}") from None
        return cls(api_client)

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

    def pods(self, namespace: str, selector: str | None = None) -> list[Obj]:
        return self._items(
            f"list pods in {namespace}", self.core.list_namespaced_pod, namespace, label_selector=selector or ""
        )

    def services(self, namespace: str, selector: str | None = None) -> list[Obj]:
        return self._items(
            f"list services in {namespace}", self.core.list_namespaced_service, namespace, label_selector=selector or ""
        )

    def ingresses(self, namespace: str, selector: str | None = None) -> list[Obj]:
        return self._items(
            f"list ingresses in {namespace}",
            self.networking.list_namespaced_ingress,
            namespace,
            label_selector=selector or "",
        )

    def hpas(self, namespace: str, selector: str | None = None) -> list[Obj]:
        return self._items(
            f"list autoscalers in {namespace}",
            self.autoscaling.list_namespaced_horizontal_pod_autoscaler,
            namespace,
            label_selector=selector or "",
        )

    def deployments(self, namespace: str, selector: str | None = None) -> list[Obj]:
        return self._items(
            f"list deployments in {namespace}",
            self.apps.list_namespaced_deployment,
            namespace,
            label_selector=selector or "",
        )

    def statefulsets(self, namespace: str, selector: str | None = None) -> list[Obj]:
        return self._items(
            f"list statefulsets in {namespace}",
            self.apps.list_namespaced_stateful_set,
            namespace,
            label_selector=selector or "",
        )

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
            response = self.core.read_namespaced_pod_log(
                pod, namespace, _preload_content=False, _request_timeout=TIMEOUT, **kwargs
            )
            return response.data.decode(errors="replace")
