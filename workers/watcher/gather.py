"""Reads for a diagnosis: a workload's pods, warning events and crashed containers' last log lines; the
pull-secret chain; an Argo CD Application (Procedure 4); what changed recently. Shared by the watcher and
the `/plate diagnose` and `/plate argocd` jobs.

Best effort throughout: a part that cannot be read becomes a line saying so, never an exception; the
diagnosis goes on top of an incident that is reported either way.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from config.environments import Environment
from core.errors import UserError
from core.slack import SlackGateway
from core.store import Store
from workers import describe
from workers.errors import HelmError, KubeError
from workers.harbor.chain import (
    Cause,
    Finding,
    Link,
    advice,
    failing_pull,
    kubelet_finding,
    on_registry,
    parse_image,
    verdict,
)
from workers.harbor.verify import Checks
from workers.helm import Helm
from workers.kube import KubeGateway
from workers.watcher.checks import argocd_report, attributed, change_lines, latest_change, selfheal_on
from workers.watcher.classify import Reason, Workload, owning_workload, pod_problems
from workers.watcher.incidents import Incident
from workers.watcher.render import Diagnosis

log = logging.getLogger("plate.watch")
Obj = dict[str, Any]
LOG_TAIL = 20  # lines of a crashed container's previous run
MAX_LOGS = 2
MAX_PODS = 6
MAX_EVENTS = 8
_RS_CACHE = 4096


class Sources(Protocol):
    """What a diagnosis reads through; a job's JobContext is one, the watcher builds `WatchSources`."""

    @property
    def env(self) -> Environment: ...

    @property
    def store(self) -> Store: ...

    @property
    def slack(self) -> SlackGateway: ...

    @property
    def clock(self) -> Callable[[], float]: ...

    @property
    def kube(self) -> KubeGateway: ...

    @property
    def helm(self) -> Helm: ...


@dataclass
class WatchSources:
    env: Environment
    store: Store
    slack: SlackGateway
    kube: KubeGateway
    helm: Helm
    clock: Callable[[], float]


class ReplicaSets:
    """ReplicaSet reads for owner resolution, cached: a ReplicaSet's owner never changes."""

    def __init__(self, kube: KubeGateway) -> None:
        self.kube = kube
        self._cache: dict[tuple[str, str], Obj] = {}

    def __call__(self, namespace: str, name: str) -> Obj | None:
        key = (namespace, name)
        if key in self._cache:
            return self._cache[key]
        try:
            rs = self.kube.replicaset(namespace, name)
        except KubeError as exc:
            log.info("cannot read replicaset %s/%s: %s", namespace, name, exc.message)
            return None  # not cached: the naming rule answers now, the API next time
        if rs is None:
            return None
        if len(self._cache) >= _RS_CACHE:
            self._cache.pop(next(iter(self._cache)))
        meta = rs.get("metadata") or {}
        self._cache[key] = {"metadata": {"name": meta.get("name"), "ownerReferences": meta.get("ownerReferences")}}
        return self._cache[key]


# --- pods -----------------------------------------------------------------------------------------------


def _crashed(pod: Obj) -> list[str]:
    """Containers with a previous run to read: restarted, or last terminated."""
    out = []
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        if int(cs.get("restartCount") or 0) > 0 or (cs.get("lastState") or {}).get("terminated"):
            out.append(str(cs.get("name")))
    return out


def pods_part(src: Sources, pods: list[Obj], d: Diagnosis, *, names: set[str] | None = None) -> list[str]:
    """Pod lines (each followed by its containers' last terminations), their warning events and crashed
    containers' last lines into `d`; returns the events' messages (the pull failure's wording, for the
    chain)."""
    env, now = src.env, src.clock()
    ordered = sorted(pods, key=lambda p: (describe.is_ready(p), describe.name_of(p)))
    ready = sum(1 for p in pods if describe.is_ready(p))
    lines: list[str] = []
    for pod in ordered[:MAX_PODS]:
        lines += [describe.pod_line(pod), *describe.last_state_lines(pod, now)]
    if len(pods) > MAX_PODS:
        lines.append(f"… and {len(pods) - MAX_PODS} more pods")
    d.add(f"Pods ({ready}/{len(pods)} ready)", lines or ["No pods."])
    wanted = {describe.name_of(p) for p in pods} | (names or set())
    messages: list[str] = []
    try:
        events = [e for e in src.kube.events(env.namespace) if (e.get("involvedObject") or {}).get("name") in wanted]
        d.add("Warning events", describe.event_excerpt(events, now, limit=MAX_EVENTS))
        messages = [str(e.get("message", "")) for e in events if e.get("type") == "Warning"]
    except KubeError as exc:
        d.add("Warning events", [f"(could not read events: {exc.message})"])
    for pod in ordered:
        for container in _crashed(pod):
            if len(d.logs) >= MAX_LOGS:
                return messages
            try:
                text = src.kube.pod_log(env.namespace, describe.name_of(pod), container, tail=LOG_TAIL, previous=True)
            except KubeError:
                continue
            d.logs.append((f"{describe.name_of(pod)}/{container}", text))
    return messages


def workload_pods(src: Sources, workload: Workload, rs: Callable[[str, str], Obj | None]) -> list[Obj]:
    pods = src.kube.pods(workload.namespace or src.env.namespace)
    if workload.kind == "Pod":
        return [p for p in pods if describe.name_of(p) == workload.name]
    return [p for p in pods if owning_workload(p, rs) == workload]


# --- the pull-secret chain ------------------------------------------------------------------------------


def _read_only_findings(checks: Checks) -> list[Finding]:
    read_only = (
        (Link.TOKEN, checks.token),
        (Link.STORE, checks.store),
        (Link.EXTERNAL_SECRET, checks.external_secret),
        (Link.DOCKER_SECRET, checks.docker_secret),
    )
    findings = []
    for link, check in read_only:
        try:
            findings.append(check())
        except KubeError as exc:
            findings.append(Finding.fail(link, Cause.API_ERROR, exc.message))
    return findings


def harbor_chain_lines(src: Sources) -> list[str]:
    """The links Kubernetes reads can check (no test pod, no registry call), walked back to the first
    broken link: for incidents of the chain itself and Argo CD checks, where nothing is pulling."""
    checks = Checks(src)  # type: ignore[arg-type]  # reads only env, kube and clock
    result = verdict(_read_only_findings(checks), checks.names)
    lines = ["Walked back from the pull (no test pod):", *result.walk]
    if not result.ok:
        lines.append(f":point_right: First broken link: {result.line}")
    else:
        lines.append(":information_source: The secret chain looks intact.")
    return lines


def pull_chain_lines(src: Sources, pods: list[Obj], messages: list[str]) -> list[str]:
    """An image pull failure walked back through the chain as harbor-verify walks it, the pods' own pull
    standing in for the test pod: the read-only links, plate-bot's registry check for the failing image
    (evidence, not a gate: a registry plate-bot cannot reach is a warning), then the kubelet's pull."""
    checks = Checks(src)  # type: ignore[arg-type]  # reads only env, kube and clock
    image, _reason = failing_pull(pods)
    names = dataclasses.replace(checks.names, image=image) if image else checks.names
    findings = _read_only_findings(checks)
    findings.append(_registry_for(checks, image))
    pod = kubelet_finding(pods, messages, names)
    findings.append(pod)
    result = verdict(findings, names)
    lines = ["Walked back from the pods' pull (no test pod):", *result.walk]
    if result.link is not Link.POD:
        lines.append(f":information_source: What the pods see: {advice(Link.POD, pod.cause, names)[0]}.")
    lines.append(f":point_right: First broken link: {result.line}")
    return lines


def _registry_for(checks: Checks, image: str) -> Finding:
    if not image:
        return Finding.skip(Link.REGISTRY, "no container shows which image fails to pull")
    if not on_registry(image, checks.names):
        return Finding.skip(Link.REGISTRY, f"`{image}` is not on {checks.names.registry}")
    ref = parse_image(image)
    skip = checks.registry_skip(ref)
    # A registry dropping packets must not hold the diagnosis for the full 10 s a job may wait.
    return Finding.skip(Link.REGISTRY, skip) if skip else checks.registry(ref, quick=True)


# --- Argo CD --------------------------------------------------------------------------------------------


def argocd_lines(src: Sources, name: str) -> tuple[list[str], Obj | None]:
    env = src.env
    try:
        app = src.kube.custom_object("applications", env.argocd_namespace, name)
    except KubeError as exc:
        return [f":x: Could not read Argo CD Application `{name}`: {exc.message}"], None
    if app is None:
        return [f":x: No Argo CD Application `{name}` in namespace `{env.argocd_namespace}`."], None
    try:
        secrets = src.kube.repository_secrets(env.argocd_namespace)
        unreadable = None
    except KubeError as exc:
        secrets, unreadable = [], exc.message
    lines = argocd_report(app, secrets, production=env.is_production)
    if unreadable:
        lines.append(f":warning: Repository Secrets could not be read: {unreadable}")
    return lines, app


# --- what changed recently ------------------------------------------------------------------------------


def recent_change(src: Sources, app: Obj | None = None) -> tuple[list[str], str | None]:
    """Lines about the latest helm revision (and the plate-bot request that made it, linked), and what to
    offer a rollback of when there is a previous revision: `env`, or `env/app` for one app of several
    (Environment.label). An environment of several apps seen as a whole has no one release to show."""
    env, now = src.env, src.clock()
    if not env.release:
        return ["(this belongs to none of the environment's apps, so there is no helm release to show)"], None
    try:
        history = src.helm.history(env.release, 5)
    except HelmError as exc:
        return [f"(helm history unavailable: {exc.message})"], None
    change = latest_change(history)
    with contextlib.suppress(UserError):  # Redis away: helm's description is all there is
        change = attributed(change, src.store.changes(env.key))
    link = None
    if change is not None and change.request and change.recent(now):
        try:
            request = src.store.get(change.request)
        except UserError:
            request = None
        if request is not None and request.message_ts:
            link = src.slack.permalink(request.channel, request.message_ts)
    lines = change_lines(change, now, link)
    if app is None and env.argocd_app:
        try:
            app = src.kube.custom_object("applications", env.argocd_namespace, env.argocd_app)
        except KubeError:
            app = None
    if selfheal_on(app):
        lines.append(
            f":warning: Argo CD selfHeal is on for `{env.argocd_app}`: it will sync the release back after a helm "
            "rollback; the rollback job pauses auto-sync, or revert in Git."
        )
    return lines, (env.label if len(history) >= 2 else None)


# --- whole diagnoses ------------------------------------------------------------------------------------


def diagnose_workload(
    src: Sources,
    workload: Workload,
    reason: Reason | None,
    rs: Callable[[str, str], Obj | None],
    *,
    with_change: bool = True,
) -> Diagnosis:
    title = f"Diagnosis of `{workload}` in `{src.env.label}`" + (f": {reason.label}" if reason else "")
    d = Diagnosis(title)
    try:
        pods = workload_pods(src, workload, rs)
        messages = pods_part(src, pods, d, names={workload.name})
    except KubeError as exc:
        d.add("Pods", [f"(could not read pods: {exc.message})"])
        pods, messages = [], []
    pulling = reason is Reason.IMAGE_PULL or any(
        r is Reason.IMAGE_PULL for p in pods for r, _d, _s in pod_problems(p, src.clock())
    )
    if pulling:
        d.add("Pull-secret chain", pull_chain_lines(src, pods, messages))
    if with_change:
        d.change, d.rollback_env = recent_change(src)
    return d


def diagnose_application(src: Sources, name: str, *, with_change: bool = True) -> Diagnosis:
    """Procedure 4 for one Application, with the secret chain it depends on."""
    d = Diagnosis(f"Argo CD check of `{name}` (`{src.env.label}`)")
    lines, app = argocd_lines(src, name)
    d.add("Procedure 4", lines)
    d.add("Secrets (OpenBao token → SecretStore → ExternalSecret)", harbor_chain_lines(src))
    if with_change:
        d.change, d.rollback_env = recent_change(src, app)
    return d


def diagnose_incident(src: Sources, incident: Incident, rs: Callable[[str, str], Obj | None]) -> Diagnosis:
    workload = Workload(incident.kind, incident.name, incident.namespace)
    if incident.reason in (Reason.ARGOCD_SYNC, Reason.ARGOCD_DEGRADED):
        return diagnose_application(src, incident.name)
    if incident.reason in (Reason.SECRET_SYNC, Reason.SECRET_STORE):
        d = Diagnosis(f"Diagnosis of `{workload}` in `{src.env.label}`: {incident.reason.label}")
        d.add("Pull-secret chain", harbor_chain_lines(src))
        d.change, d.rollback_env = recent_change(src)
        return d
    return diagnose_workload(src, workload, incident.reason, rs)
