"""`/plate harbor-verify <env>` (the seed's verify-harbor-auth.sh) and `/plate harbor-bootstrap <env>`
(deploy-harbor-auth.sh) as jobs.

harbor-verify runs every check of the chain, reporting each as pass/fail with its evidence, and does not
stop at the first failure: later checks still give evidence (a pod's events say more than a missing
Secret). Then the pure `harbor_chain.verdict` walks the chain backwards and names the first broken link.
The registry check from plate-bot's pod is evidence, not a gate (`chain.registry_finding`): a registry it
cannot reach is a warning, and a test pod that pulls with the chain's Secrets in place is a pass.

harbor-bootstrap checks the manifests and ESO before changing anything, creates missing namespaces,
applies the Argo CD Application through the Kubernetes API, triggers its sync (or awaits the one
running) and finishes with the same checks.
"""

from __future__ import annotations

import base64
import copy
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from core.redact import REDACTOR, secret_values
from core.text import parse_time
from workers import describe
from workers.errors import KubeError, StepFailed
from workers.harbor.chain import (
    APPLICATION_MANIFEST,
    CHAIN,
    LABEL,
    PLACEHOLDER,
    REQUIRED_MANIFESTS,
    TOKEN_MANIFEST,
    Cause,
    Finding,
    ImageRef,
    Link,
    Names,
    PodProgress,
    State,
    SyncProgress,
    application_patch,
    conclusion,
    docker_config,
    docker_secret_finding,
    external_secret_finding,
    manifest_problems,
    parse_image,
    placeholder_lines,
    pod_failure,
    pod_progress,
    pods_running,
    registry_finding,
    store_finding,
    sync_operation,
    sync_progress,
)
from workers.kube import KubeGateway
from workers.procedures import JobContext, procedure
from workers.registry import check_pull

POD_POLL = (0.1, 1.0)  # first and longest wait between reads of the test pod (doubling in between)
SYNC_POLL = 1.0
LEFTOVER_MARGIN = 60  # a labelled pod older than pod_timeout + this belongs to no running check

VERIFY_STEPS = [
    ("eso", "External Secrets Operator running"),
    ("namespaces", "Namespaces exist"),
    ("token", "OpenBao token Secret"),
    ("sa", "ServiceAccount of the secret reader"),
    ("store", "SecretStore Ready"),
    ("external", "ExternalSecret synced"),
    ("docker", "Harbor docker Secret"),
    ("registry", "Registry pull check (v2 API)"),
    ("pod", "Test pod pulls the image"),
]
STEP = dict(zip(CHAIN, (key for key, _ in VERIFY_STEPS), strict=True))
BOOTSTRAP_STEPS = [
    ("manifests", "Required manifests"),
    ("placeholder", "No REPLACE placeholder in the token manifest"),
    ("eso", "External Secrets Operator running"),
    ("namespaces", "Namespaces (created if missing)"),
    ("apply", "Argo CD Application applied"),
    ("sync", "Argo CD sync"),
    *VERIFY_STEPS[2:],
]


def _decoded(secret: dict[str, Any]) -> dict[str, str]:
    """Secret values by key (already registered with the redaction layer by the Kubernetes adapter)."""
    out = {k: str(v) for k, v in (secret.get("stringData") or {}).items()}
    for key, raw in (secret.get("data") or {}).items():
        try:
            out[key] = base64.b64decode(str(raw)).decode()
        except (ValueError, UnicodeDecodeError):
            out[key] = ""
    return out


class Checks:
    """The chain's checks against one environment. Each returns a Finding; cluster trouble (403, the API
    unreachable) becomes that check's evidence instead of stopping the others."""

    def __init__(self, ctx: JobContext, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.ctx = ctx
        self.names = Names.of(ctx.env)
        self.image = parse_image(self.names.image)
        self.details: list[str] = []  # extra evidence for the thread (the test pod's events)
        self.sleep = sleep
        self._cache: dict[str, Any] = {}

    @property
    def kube(self) -> KubeGateway:
        return self.ctx.kube

    def run(self, links: tuple[Link, ...] | list[Link]) -> list[Finding]:
        checks: dict[Link, Callable[[], Finding]] = {
            Link.ESO: self.eso,
            Link.NAMESPACES: self.namespaces,
            Link.TOKEN: self.token,
            Link.SERVICE_ACCOUNT: self.service_account,
            Link.STORE: self.store,
            Link.EXTERNAL_SECRET: self.external_secret,
            Link.DOCKER_SECRET: self.docker_secret,
            Link.REGISTRY: self.registry,
            Link.POD: self.pod,
        }
        findings = []
        for link in links:
            key = STEP[link]
            try:
                skip = self._skip_reason(link)
                if skip:
                    finding = Finding.skip(link, skip)
                else:
                    self.ctx.report.start(key)
                    finding = checks[link]()
            except KubeError as exc:
                finding = Finding.fail(link, Cause.API_ERROR, exc.message)
            report(self.ctx, key, finding)
            findings.append(finding)
        return findings

    def _skip_reason(self, link: Link) -> str:
        """Why a check cannot be tried at all (decided before it shows as running)."""
        if link is Link.REGISTRY and (why := self.registry_skip(self.image)):
            return why
        if link is Link.POD and self.kube.namespace(self.names.namespace) is None:
            return f"namespace `{self.names.namespace}` does not exist"
        return ""

    def registry_skip(self, image: ImageRef) -> str:
        """Why the registry check cannot be tried for `image`: no credentials for its host to try."""
        try:
            secret = self._docker_secret()
        except KubeError:
            secret = None
        creds = docker_config(secret or {}, image.host)
        if not (creds.username and creds.password):
            return f"no credentials for {image.host} in `{self.names.docker_secret}` to try"
        return ""

    # --- cached reads -----------------------------------------------------------------------------------
    def _eso_object(self, kind: str, name: str) -> dict[str, Any] | None:
        """A SecretStore/ExternalSecret by name, in external-secrets.io v1 or (404 on v1) v1beta1."""
        if kind not in self._cache:
            items, _rv = self.kube.list_kind(kind, self.names.namespace)
            self._cache[kind] = {(i.get("metadata") or {}).get("name"): i for i in items}
        return self._cache[kind].get(name)

    def _secret_store(self) -> dict[str, Any] | None:
        return self._eso_object("secretstores", self.names.secret_store)

    def _docker_secret(self) -> dict[str, Any] | None:
        if "docker" not in self._cache:
            self._cache["docker"] = self.kube.secret(self.names.namespace, self.names.docker_secret)
        return self._cache["docker"]

    # --- the checks, in chain order -----------------------------------------------------------------------
    def eso(self) -> Finding:
        ns = self.names.eso_namespace
        pods = self.kube.pods(ns)
        if not pods:
            exists = self.kube.namespace(ns) is not None
            why = "no pods" if exists else "the namespace does not exist"
            return Finding.fail(Link.ESO, Cause.MISSING, f"`{ns}`: {why}")
        running, bad = pods_running(pods)
        if bad:
            return Finding.fail(
                Link.ESO, Cause.NOT_RUNNING, f"{running}/{len(pods)} running in `{ns}`; " + "; ".join(bad[:3])
            )
        return Finding.ok(Link.ESO, f"{running}/{len(pods)} pods running in `{ns}`")

    def namespaces(self) -> Finding:
        missing = [ns for ns in self.names.namespaces if self.kube.namespace(ns) is None]
        if missing:
            return Finding.fail(Link.NAMESPACES, Cause.MISSING, "missing: " + ", ".join(f"`{n}`" for n in missing))
        return Finding.ok(Link.NAMESPACES, ", ".join(f"`{n}`" for n in self.names.namespaces))

    def token(self) -> Finding:
        names = self.names
        secret = self.kube.secret(names.namespace, names.token_secret)
        if secret is None:
            return Finding.fail(
                Link.TOKEN, Cause.MISSING, f"Secret `{names.token_secret}` not found in `{names.namespace}`"
            )
        ref = _token_ref(self._secret_store())
        key = ref.get("key") or "token"
        note = ""
        if ref.get("name") and ref["name"] != names.token_secret:
            note = f" (the SecretStore reads Secret `{ref['name']}`)"
        values = _decoded(secret)
        if key not in values:
            keys = ", ".join(f"`{k}`" for k in values) or "none"
            return Finding.fail(Link.TOKEN, Cause.EMPTY, f"no key `{key}` (keys: {keys}){note}")
        if PLACEHOLDER in values[key]:
            return Finding.fail(
                Link.TOKEN, Cause.PLACEHOLDER, f"key `{key}` still holds the `{PLACEHOLDER}` placeholder"
            )
        if not values[key].strip():
            return Finding.fail(Link.TOKEN, Cause.EMPTY, f"key `{key}` is empty{note}")
        return Finding.ok(Link.TOKEN, f"key `{key}` set{note}")

    def service_account(self) -> Finding:
        names = self.names
        if self.kube.service_account(names.namespace, names.service_account) is None:
            return Finding.fail(
                Link.SERVICE_ACCOUNT, Cause.MISSING, f"`{names.service_account}` not found in `{names.namespace}`"
            )
        return Finding.ok(Link.SERVICE_ACCOUNT, f"`{names.service_account}` exists")

    # Status messages and events are redacted before the pure code shortens them: a secret cut in half
    # by an ellipsis would no longer match its exact value at the Slack edge.
    def store(self) -> Finding:
        return store_finding(REDACTOR(self._secret_store()), self.names)

    def external_secret(self) -> Finding:
        es = self._eso_object("externalsecrets", self.names.external_secret)
        return external_secret_finding(REDACTOR(es), self.names, self.ctx.clock())

    def docker_secret(self) -> Finding:
        return docker_secret_finding(self._docker_secret(), self.names, self.names.registry)

    def registry(self, image: ImageRef | None = None, *, quick: bool = False) -> Finding:
        """The manifest of `image` (the test image) as a runtime would fetch it, with the docker Secret's
        credentials, from plate-bot's own pod (`quick`: a 3 s budget, for the watcher's diagnosis)."""
        image = image or self.image
        creds = docker_config(self._docker_secret() or {}, image.host)
        base_url = self.names.registry_url if image.host == self.image.host else f"https://{image.host}"
        result = check_pull(base_url, image, creds.username, creds.password, quick=quick)
        finding = registry_finding(result.cause, result.detail, self.names)
        if finding.state is State.PASS and result.digest:
            return Finding.ok(Link.REGISTRY, f"{result.detail}, digest `{result.digest[:19]}…`")
        return finding

    def pod(self) -> Finding:
        names, kube = self.names, self.kube
        removed = self._clean_leftovers()
        name = f"plate-harbor-verify-{self.ctx.request.id[:8]}-{secrets.token_hex(3)}"
        timeout = self.ctx.env.harbor.pod_timeout
        kube.create_pod(names.namespace, self._pod_body(name, timeout))
        try:
            finding = self._await_pod(name, timeout)
        finally:
            try:
                kube.delete_pod(names.namespace, name)
            except KubeError as exc:
                self.details.append(f":warning: could not delete the test pod `{name}`: {exc.message}")
        if removed:
            finding = Finding(finding.link, finding.state, f"{finding.evidence} · {removed}", finding.cause)
        return finding

    # --- the test pod --------------------------------------------------------------------------------------
    def _pod_body(self, name: str, timeout: int) -> dict[str, Any]:
        req = self.ctx.request
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": self.names.namespace,
                "labels": {LABEL: "true", "plate-bot/request": req.id},
                "annotations": {"plate-bot/requested-by": req.requester},
            },
            "spec": {
                "restartPolicy": "Never",
                "imagePullSecrets": [{"name": self.names.docker_secret}],
                "automountServiceAccountToken": False,
                # The cluster stops it even if this worker dies before deleting it.
                "activeDeadlineSeconds": timeout + LEFTOVER_MARGIN,
                "terminationGracePeriodSeconds": 0,
                "containers": [
                    {
                        "name": "pull-test",
                        "image": self.names.image,
                        # Always: a node's cached copy must not hide broken credentials.
                        "imagePullPolicy": "Always",
                        "resources": {
                            "requests": {"cpu": "10m", "memory": "16Mi"},
                            "limits": {"cpu": "100m", "memory": "128Mi"},
                        },
                    }
                ],
            },
        }

    def _clean_leftovers(self) -> str:
        """Test pods of earlier runs that died before their cleanup. Younger ones may belong to a check
        running right now (harbor-verify takes no lock), so they are left to their own run."""
        ns, now = self.names.namespace, self.ctx.clock()
        limit = self.ctx.env.harbor.pod_timeout + LEFTOVER_MARGIN
        removed = 0
        for pod in self.kube.pods(ns, f"{LABEL}=true"):
            meta, phase = pod.get("metadata") or {}, (pod.get("status") or {}).get("phase")
            if (meta.get("labels") or {}).get(LABEL) != "true":
                continue
            born = parse_time(meta.get("creationTimestamp"))
            stale = phase in ("Succeeded", "Failed") or born is None or now - born > limit
            if stale and self.kube.delete_pod(ns, meta.get("name", "")):
                removed += 1
        return f"removed {removed} leftover test pod(s) of an earlier run" if removed else ""

    def _await_pod(self, name: str, timeout: int) -> Finding:
        ns = self.names.namespace
        deadline = time.monotonic() + timeout
        reason, wait = "Pending", POD_POLL[0]
        while True:
            pod = self.kube.pod(ns, name)
            if pod is None:
                return Finding.fail(Link.POD, Cause.ERROR, f"test pod `{name}` disappeared (deleted or evicted)")
            progress, reason = pod_progress(pod)
            if progress is PodProgress.PULLED:
                return Finding.ok(
                    Link.POD,
                    f"test pod `{name}` {reason}: `{self.names.image}` pulled with `{self.names.docker_secret}`",
                )
            if progress is PodProgress.FAILED or time.monotonic() >= deadline:
                return self._pod_failed(name, reason, timed_out=progress is not PodProgress.FAILED, timeout=timeout)
            self.sleep(min(wait, max(0.0, deadline - time.monotonic())))
            wait = min(wait * 2, POD_POLL[1])

    def _pod_failed(self, name: str, reason: str, *, timed_out: bool, timeout: int) -> Finding:
        ns = self.names.namespace
        try:
            events = [
                e
                for e in self.kube.events(ns, f"involvedObject.name={name}")
                if (e.get("involvedObject") or {}).get("name") == name
            ]
        except KubeError as exc:
            events = []
            self.details.append(f"(could not read the test pod's events: {exc.message})")
        events = REDACTOR(sorted(events, key=describe.event_time))
        cause, why = pod_failure(
            reason, [str(e.get("message", "")) for e in events], timed_out=timed_out, timeout=timeout
        )
        excerpt = describe.event_excerpt(events, self.ctx.clock(), limit=6)
        if excerpt:
            self.details += [f"*Events of the test pod* `{name}`", *excerpt]
        return Finding.fail(Link.POD, cause, f"`{reason}`: {why}" if why != reason else f"`{reason}`")


def _token_ref(store: dict[str, Any] | None) -> dict[str, str]:
    """The SecretStore's `tokenSecretRef` (vault/OpenBao provider, token auth), if it has one."""
    provider = ((store or {}).get("spec") or {}).get("provider") or {}
    vault = provider.get("vault") or provider.get("openbao") or {}
    return dict((vault.get("auth") or {}).get("tokenSecretRef") or {})


def report(ctx: JobContext, key: str, finding: Finding) -> None:
    if finding.state is State.PASS:
        ctx.report.done(key, finding.evidence)
    elif finding.state is State.FAIL:
        ctx.report.fail(key, finding.evidence)
    elif finding.state is State.WARN:
        ctx.report.warn(key, finding.evidence)
    else:
        ctx.report.skip(key, finding.evidence)


def conclude(checks: Checks, findings: list[Finding], prefix: str = "") -> str:
    """The one verdict line; a broken chain fails the job with the chain walked backwards in the thread."""
    end = conclusion(findings, checks.names, prefix, checks.details)
    if end.ok:
        return end.line
    raise StepFailed(end.line, list(end.thread))


@procedure("harbor-verify", "harbor-verify", VERIFY_STEPS)
def harbor_verify(ctx: JobContext) -> str:
    checks = Checks(ctx)
    return conclude(checks, checks.run(CHAIN))


# --- harbor-bootstrap ------------------------------------------------------------------------------------


def load_manifests(directory: Path) -> tuple[dict[str, dict[str, Any] | None], list[str]]:
    """The required manifests and the Application, parsed (None: missing), plus YAML problems. Values of
    the token manifest are registered with the redaction layer as soon as they are read."""
    docs: dict[str, dict[str, Any] | None] = {}
    problems = []
    for file in [*REQUIRED_MANIFESTS, APPLICATION_MANIFEST]:
        path = directory / file
        if not path.is_file():
            docs[file] = None
            continue
        try:
            found = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if isinstance(d, dict)]
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            problems.append(f"`{file}` is not valid YAML" + (f" (line {mark.line + 1})" if mark else ""))
            docs[file] = {}
            continue
        docs[file] = found[0] if found else {}
        if file == TOKEN_MANIFEST and found:
            REDACTOR.add(*[v for v in secret_values(found[0]) if PLACEHOLDER not in v])
    return docs, problems


def _apply_application(ctx: JobContext, names: Names, manifest: dict[str, Any]) -> str:
    ns = ctx.env.argocd_namespace
    body = copy.deepcopy(manifest)
    meta = body.setdefault("metadata", {})
    meta["namespace"] = ns
    meta.setdefault("annotations", {})["plate-bot/applied-by"] = f"{ctx.request.id} ({ctx.request.requester})"
    live = ctx.kube.custom_object("applications", ns, names.argocd_app)
    group, _, version = str(body.get("apiVersion")).partition("/")
    if live is None:
        ctx.kube.create_custom_object(group, version, ns, "applications", body)
        return f"Application `{names.argocd_app}` created in `{ns}`"
    ctx.kube.patch_custom_object(group, version, ns, "applications", names.argocd_app, application_patch(live, body))
    return f"Application `{names.argocd_app}` updated in `{ns}`"


def _sync(ctx: JobContext, names: Names, sleep: Callable[[float], None] = time.sleep) -> tuple[bool, str]:
    """Trigger a sync as `argocd app sync` does (or await the one already running, e.g. automated) and
    wait for its result: operation phase, sync status, health."""
    kube, ns, name = ctx.kube, ctx.env.argocd_namespace, names.argocd_app
    app = kube.custom_object("applications", ns, name)
    if app is None:
        return False, f"Application `{name}` vanished after it was applied"
    op = (app.get("status") or {}).get("operationState") or {}
    if app.get("operation") or op.get("phase") in ("Running", "Terminating"):
        how = "awaited the sync already running"
        previous = op.get("startedAt") if app.get("operation") else None
    else:
        how = "sync triggered"
        previous = op.get("startedAt")
        group, _, version = str(app.get("apiVersion", "argoproj.io/v1alpha1")).partition("/")
        reason = f"plate-bot {ctx.request.id} by {ctx.request.requester}"
        kube.patch_custom_object(group, version, ns, "applications", name, sync_operation(app, "plate-bot", reason))
    timeout = ctx.env.harbor.sync_timeout
    deadline = time.monotonic() + timeout
    while True:
        app = kube.custom_object("applications", ns, name) or {}
        progress, line = sync_progress(REDACTOR(app), previous)
        if progress is SyncProgress.SUCCEEDED:
            return True, f"{how}: {line}"
        if progress is SyncProgress.FAILED:
            return False, f"{how}: {line}"
        if time.monotonic() >= deadline:
            return False, f"{how}, no result after {timeout}s: {line}"
        sleep(SYNC_POLL)


@procedure("harbor-bootstrap", "harbor-bootstrap", BOOTSTRAP_STEPS, mutating=True)
def harbor_bootstrap(ctx: JobContext) -> str:
    checks = Checks(ctx)
    names = checks.names
    # Read-only preconditions first: a failure here changes nothing.
    directory = ctx.env.harbor.manifests_dir
    with ctx.step("manifests") as note:
        if directory is None:
            raise StepFailed("no `harbor.manifests_dir` is configured for this environment")
        docs, problems = load_manifests(directory)
        problems += manifest_problems(docs, names)
        if problems:
            raise StepFailed("; ".join(problems[:3]) + ("" if len(problems) <= 3 else f" (+{len(problems) - 3} more)"))
        note.text = f"{len(docs)} manifests in `{directory}`"
    with ctx.step("placeholder") as note:
        lines = placeholder_lines((directory / TOKEN_MANIFEST).read_text(encoding="utf-8"))
        if lines:
            where = ", ".join(str(n) for n in lines[:5])
            raise StepFailed(f"`{TOKEN_MANIFEST}` still has the `{PLACEHOLDER}` placeholder on line {where}")
        note.text = f"`{TOKEN_MANIFEST}` holds a token"
    findings = checks.run([Link.ESO])
    if findings[0].state is State.FAIL:
        raise StepFailed(f"External Secrets Operator is not running: {findings[0].evidence}; nothing was changed")
    with ctx.step("namespaces") as note:
        created = []
        for ns in names.namespaces:
            try:
                if ctx.kube.namespace(ns) is None and ctx.kube.create_namespace(ns):
                    created.append(ns)
            except KubeError as exc:
                if exc.status == 403:
                    raise StepFailed(f"plate-bot may not create namespace `{ns}` (403): create it by hand") from None
                raise
        note.text = "created " + ", ".join(f"`{n}`" for n in created) if created else "all exist"
        findings.append(Finding.ok(Link.NAMESPACES, note.text))
    with ctx.step("apply") as note:
        note.text = _apply_application(ctx, names, docs[APPLICATION_MANIFEST] or {})
    ctx.report.start("sync")
    try:
        synced, line = _sync(ctx, names)
    except KubeError as exc:
        synced, line = False, exc.message
    (ctx.report.done if synced else ctx.report.fail)("sync", line)
    findings += checks.run(CHAIN[2:])
    prefix = "" if synced else f"Argo CD sync of `{names.argocd_app}` did not succeed"
    return conclude(checks, findings, prefix)
