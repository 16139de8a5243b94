"""PURE. Whose a watched object is: which environment, and which of its apps (issue 14).

An environment's apps are Helm releases, each in a namespace (its own or the environment's). The watcher
follows each (cluster, namespace) once per kind, however many environments and apps live there, and asks
this index whose an object is:

- a workload belongs to the app whose Helm release made it: the annotation `meta.helm.sh/release-name`
  (with `meta.helm.sh/release-namespace`) that helm puts on what it creates, else the label
  `app.kubernetes.io/instance` charts put on pods (or Argo CD's tracking label, naming its Application);
  matched against the apps' (namespace, release). No match: it is no app's, and every environment
  watching the namespace hears of it, as before apps existed;
- an Argo CD Application belongs to the apps naming it in `argocd_app`; an environment naming none takes
  the Applications deploying into its namespaces.

A target outside its environment's own namespace carries a scope (`<namespace>/`) that goes into the
incident key, so two apps' same-named workloads in two namespaces stay two incidents, while keys in the
environment's namespace stay what they were before apps existed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

from config.environments import Environment

Obj = dict[str, Any]
INSTANCE = "app.kubernetes.io/instance"
RELEASE_NAME = "meta.helm.sh/release-name"
RELEASE_NAMESPACE = "meta.helm.sh/release-namespace"
Place = tuple[str | None, str]  # (kube context, namespace)


class Target(NamedTuple):
    env: str
    app: str  # "" when the object is no app's
    scope: str = ""  # "" in the environment's own namespace, else "<namespace>/"


@dataclass(frozen=True)
class AppRef:
    """One app of one environment, as the watcher needs it."""

    env: str
    app: str
    context: str | None
    namespace: str
    release: str
    argocd_app: str | None
    key: str  # Environment.key: the release's name in Redis (change records)
    label: str  # Environment.label: how messages name it

    def target(self, env_namespace: str) -> Target:
        return Target(self.env, self.app, "" if self.namespace == env_namespace else f"{self.namespace}/")


def app_refs(env: Environment) -> list[AppRef]:
    out = []
    for name in env.apps:
        v = env.for_app(name)
        out.append(AppRef(env.name, name, env.kube_context, v.namespace, v.release, v.argocd_app, v.key, v.label))
    return out


def release_names(meta: Obj) -> list[tuple[str, str]]:
    """(namespace, name) candidates for the Helm release that made an object, most reliable first."""
    ns = str(meta.get("namespace") or "")
    out = []
    annotations = meta.get("annotations") or {}
    if annotations.get(RELEASE_NAME):
        out.append((str(annotations.get(RELEASE_NAMESPACE) or ns), str(annotations[RELEASE_NAME])))
    labels = meta.get("labels") or {}
    if labels.get(INSTANCE):
        out.append((ns, str(labels[INSTANCE])))
    return out


class AppIndex:
    """The environments' apps by (cluster, namespace, release) and by Argo CD Application."""

    def __init__(self, envs: Iterable[Environment]) -> None:
        self.envs = {env.name: env for env in envs}
        self.apps: list[AppRef] = []
        self._releases: dict[tuple[str | None, str, str], list[Target]] = {}
        self._instances: dict[tuple[str | None, str, str], list[Target]] = {}  # Argo CD's tracking label
        self._argocd: dict[tuple[str | None, str, str], list[Target]] = {}
        self._watching: dict[Place, list[Target]] = {}  # who hears of a namespace's objects that are no app's
        self._destinations: dict[Place, list[tuple[str, str, str]]] = {}  # argocd ns -> (dest ns, env, app)
        for env in self.envs.values():
            refs = app_refs(env)
            self.apps += refs
            for ref in refs:
                target = ref.target(env.namespace)
                self._releases.setdefault((ref.context, ref.namespace, ref.release), []).append(target)
                place = (ref.context, ref.namespace)
                if Target(env.name, "", target.scope) not in self._watching.get(place, []):
                    self._watching.setdefault(place, []).append(Target(env.name, "", target.scope))
                if ref.argocd_app:
                    argo = (ref.context, env.argocd_namespace, ref.argocd_app)
                    self._argocd.setdefault(argo, []).append(Target(env.name, ref.app))
                    self._instances.setdefault((ref.context, ref.namespace, ref.argocd_app), []).append(target)
            named = {ref.argocd_app for ref in refs if ref.argocd_app}
            if env.argocd_app and env.argocd_app not in named:  # the whole environment's Application
                argo = (env.kube_context, env.argocd_namespace, env.argocd_app)
                self._argocd.setdefault(argo, []).append(Target(env.name, ""))
            if not named and not env.argocd_app:
                by_ns: dict[str, list[str]] = {}
                for ref in refs:
                    by_ns.setdefault(ref.namespace, []).append(ref.app)
                for ns, apps in by_ns.items():
                    entry = (ns, env.name, apps[0] if len(apps) == 1 else "")
                    self._destinations.setdefault((env.kube_context, env.argocd_namespace), []).append(entry)

    def namespaces(self) -> list[Place]:
        """Every (cluster, namespace) an app lives in, once."""
        return list(self._watching)

    def argocd_namespaces(self) -> list[Place]:
        """Every (cluster, namespace) holding Applications of interest, once."""
        places = {(ctx, ns): None for ctx, ns, _name in self._argocd}
        places.update({place: None for place in self._destinations})
        return list(places)

    def releases_in(self, context: str | None, namespace: str) -> dict[str, list[AppRef]]:
        """The apps whose release lives in (context, namespace), by release name."""
        out: dict[str, list[AppRef]] = {}
        for ref in self.apps:
            if ref.context == context and ref.namespace == namespace:
                out.setdefault(ref.release, []).append(ref)
        return out

    def owner(self, context: str | None, meta: Obj) -> tuple[Target, ...]:
        """Whose a namespaced object (pod, ExternalSecret, SecretStore) is: its release's app(s), else every
        environment watching its namespace, with app ""."""
        for ns, name in release_names(meta):
            found = self._releases.get((context, ns, name)) or self._instances.get((context, ns, name))
            if found:
                return tuple(found)
        return tuple(self._watching.get((context, str(meta.get("namespace") or "")), ()))

    def application(self, context: str | None, obj: Obj) -> tuple[Target, ...]:
        """Whose an Argo CD Application is: the apps naming it, else environments naming no Application whose
        namespace it deploys into; () when it is nobody's."""
        meta = obj.get("metadata") or {}
        ns, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
        found = self._argocd.get((context, ns, name))
        if found:
            return tuple(found)
        dest = str(((obj.get("spec") or {}).get("destination") or {}).get("namespace") or "")
        return tuple(Target(env, app) for d, env, app in self._destinations.get((context, ns), ()) if d == dest)

    def router(self, context: str | None) -> Router:
        return Router(self, context)


class Router:
    """The index as one cluster's views ask it (`EnvView(router=...)`)."""

    __slots__ = ("context", "index")

    def __init__(self, index: AppIndex, context: str | None) -> None:
        self.index, self.context = index, context

    def owner(self, meta: Obj) -> tuple[Target, ...]:
        return self.index.owner(self.context, meta)

    def application(self, obj: Obj) -> tuple[Target, ...]:
        return self.index.application(self.context, obj)
