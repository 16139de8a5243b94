"""PURE. The Harbor pull-secret chain (the seed's verify-harbor-auth.sh and the openbao-secrets-manager
chart): classifying what each check saw, and walking the chain backwards to the first broken link.

    ESO running -> namespaces -> Secret openbao-token -> ServiceAccount -> SecretStore (OpenBao + token)
    -> ExternalSecret (remoteRef, refreshInterval) -> Secret harbor-docker-secret (.dockerconfigjson)
    -> registry auth (v2 API) -> the kubelet's pull in a test pod

A break anywhere shows up at the end as an image pull failure, so the verdict names the earliest link
that failed and what to do about it. Check results in, verdict out: no I/O here.

The registry check runs from plate-bot's own pod, which is not the path a pull takes (the kubelet pulls
from the node; the chart's NetworkPolicy limits plate-bot's egress). So it is evidence, not a gate: a
registry plate-bot cannot reach (DNS, connect, TLS, timeout, an answer that is not a registry's) is a
warning with a hint, while the answers of a reachable registry about the credentials or the image (401,
403, 404) still fail the registry link. The pull decides whether the chain works.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from config.environments import Environment
from core.text import age, clip

Obj = Mapping[str, Any]
LABEL = "plate-bot/harbor-verify"
PLACEHOLDER = "REPLACE"
DOCKER_CONFIG_TYPE = "kubernetes.io/dockerconfigjson"
MANIFEST_ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)


class Link(StrEnum):
    """The chain, in order: each link depends on the ones before it."""

    ESO = "eso"
    NAMESPACES = "namespaces"
    TOKEN = "token"  # noqa: S105 - a name, not a secret
    SERVICE_ACCOUNT = "service-account"
    STORE = "secret-store"
    EXTERNAL_SECRET = "external-secret"  # noqa: S105 - a name, not a secret
    DOCKER_SECRET = "docker-secret"  # noqa: S105 - a name, not a secret
    REGISTRY = "registry"
    POD = "pod"


CHAIN = tuple(Link)


class State(StrEnum):
    PASS = "pass"  # noqa: S105 - a name, not a secret
    FAIL = "fail"
    SKIP = "skip"
    WARN = "warn"  # checked, could not tell, and nothing is broken because of it (the registry from plate-bot)


class Cause(StrEnum):
    OK = "ok"
    MISSING = "missing"
    API_ERROR = "api-error"
    NOT_RUNNING = "not-running"
    PLACEHOLDER = "placeholder"
    EMPTY = "empty"
    TOKEN_SECRET_MISSING = "token-secret-missing"  # noqa: S105 - a name, not a secret
    TOKEN_REJECTED = "token-rejected"  # noqa: S105 - a name, not a secret
    OPENBAO_UNREACHABLE = "openbao-unreachable"
    STORE_NOT_READY = "store-not-ready"
    REMOTE_KEY_MISSING = "remote-key-missing"
    POLICY_DENIED = "policy-denied"
    NOT_READY = "not-ready"
    WRONG_TYPE = "wrong-type"
    NO_HOST = "no-host"
    NO_CREDENTIALS = "no-credentials"
    MALFORMED = "malformed"
    UNREACHABLE = "unreachable"
    DNS = "dns"
    TLS = "tls"
    UNAUTHORIZED = "unauthorized"
    DENIED = "denied"
    NOT_FOUND = "not-found"
    TIMEOUT = "timeout"
    PULL_FAILED = "pull-failed"
    ERROR = "error"


@dataclass(frozen=True)
class Finding:
    """What one check saw: a line of evidence for the checklist and a classified cause for the verdict."""

    link: Link
    state: State
    evidence: str
    cause: Cause = Cause.OK

    @classmethod
    def ok(cls, link: Link, evidence: str) -> Finding:
        return cls(link, State.PASS, evidence)

    @classmethod
    def fail(cls, link: Link, cause: Cause, evidence: str) -> Finding:
        return cls(link, State.FAIL, evidence, cause)

    @classmethod
    def skip(cls, link: Link, evidence: str) -> Finding:
        return cls(link, State.SKIP, evidence, Cause.OK)

    @classmethod
    def warn(cls, link: Link, cause: Cause, evidence: str) -> Finding:
        return cls(link, State.WARN, evidence, cause)


@dataclass(frozen=True)
class Names:
    """The environment's names for the chain (HarborChecks, with the namespace resolved)."""

    env: str
    namespace: str
    namespaces: tuple[str, ...]
    eso_namespace: str
    token_secret: str
    service_account: str
    secret_store: str
    external_secret: str
    docker_secret: str
    registry: str
    image: str
    argocd_app: str
    registry_url: str = ""  # where plate-bot asks the v2 API: `harbor.registry_url`, else https://<image host>

    @classmethod
    def of(cls, env: Environment) -> Names:
        h = env.harbor
        ns = h.namespace or env.namespace
        return cls(
            env=env.name,
            namespace=ns,
            namespaces=tuple(dict.fromkeys([env.namespace, ns, *h.namespaces])),
            eso_namespace=h.eso_namespace,
            token_secret=h.token_secret,
            service_account=h.service_account,
            secret_store=h.secret_store,
            external_secret=h.external_secret,
            docker_secret=h.docker_secret,
            registry=h.registry,
            image=h.test_image,
            argocd_app=h.argocd_app,
            registry_url=registry_url(h.registry_url, h.test_image),
        )


# --- small parsers ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageRef:
    host: str
    repository: str
    reference: str  # a tag or a sha256 digest

    def __str__(self) -> str:
        sep = "@" if self.reference.startswith("sha256:") else ":"
        return f"{self.host}/{self.repository}{sep}{self.reference}"


def parse_image(image: str) -> ImageRef:
    """`host[:port]/repo/name:tag` or `...@sha256:…` (config validated the shape; no Docker Hub defaults)."""
    host, _, rest = image.partition("/")
    if "@" in rest:
        repo, _, ref = rest.partition("@")
    else:
        repo, _, ref = rest.rpartition(":")
    return ImageRef(host, repo, ref)


def registry_url(configured: str | None, image: str) -> str:
    """The v2 API's base URL: `harbor.registry_url` when set, else https://<the image's host>."""
    return (configured or f"https://{parse_image(image).host}").rstrip("/")


def registry_host(key: str) -> str:
    """A dockerconfigjson `auths` key as a bare host: `https://harbor.example.com/v1/` -> `harbor.example.com`."""
    key = re.sub(r"^[a-z][a-z0-9+.-]*://", "", key.strip(), flags=re.I)
    return key.split("/", 1)[0].lower()


_CHALLENGE_PARAM = re.compile(r'([A-Za-z_][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """`WWW-Authenticate: Bearer realm="…",service="…",scope="…"` -> ("bearer", {realm, service, scope})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {m[1].lower(): (m[2] if m[2] is not None else m[3]) for m in _CHALLENGE_PARAM.finditer(rest)}
    return scheme.lower(), params


def registry_errors(body: str) -> list[str]:
    """Error codes of a registry error body (`{"errors": [{"code": "MANIFEST_UNKNOWN", ...}]}`)."""
    try:
        data = json.loads(body)
    except ValueError:
        return []
    errors = data.get("errors") if isinstance(data, dict) else None
    return [str(e.get("code")) for e in errors or [] if isinstance(e, dict) and e.get("code")]


def _b64(value: object) -> str | None:
    try:
        return base64.b64decode(str(value), validate=True).decode()
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None


@dataclass(frozen=True)
class DockerConfig:
    hosts: tuple[str, ...]
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # never in a repr, a log line or a traceback
    problem: str = ""


def docker_config(secret: Obj, host: str) -> DockerConfig:
    """The `.dockerconfigjson` of a Secret: which registries it names, and the credentials for `host`."""
    encoded = (secret.get("data") or {}).get(".dockerconfigjson")
    if not encoded:
        return DockerConfig((), problem="`.dockerconfigjson` is missing")
    raw = _b64(encoded)
    if raw is None:
        return DockerConfig((), problem="`.dockerconfigjson` is not base64")
    try:
        doc = json.loads(raw)
    except ValueError:
        return DockerConfig((), problem="`.dockerconfigjson` is not JSON")
    auths = doc.get("auths") if isinstance(doc, dict) else None
    if not isinstance(auths, dict):
        return DockerConfig((), problem="`.dockerconfigjson` has no `auths`")
    entries = {registry_host(k): v for k, v in auths.items() if isinstance(v, dict)}
    hosts = tuple(sorted(entries))
    entry = entries.get(host.lower())
    if entry is None:
        return DockerConfig(hosts)
    user, password = entry.get("username"), entry.get("password")
    if not (user and password) and entry.get("auth"):
        decoded = _b64(entry["auth"]) or ""
        user, _, password = decoded.partition(":")
    if not (user and password):
        return DockerConfig(hosts, problem=f"the entry for {host} has no username/password or auth")
    return DockerConfig(hosts, str(user), str(password))


def placeholder_lines(text: str) -> list[int]:
    """Line numbers (1-based) still holding the `REPLACE` placeholder; the lines themselves are never shown."""
    return [i for i, line in enumerate(text.splitlines(), 1) if PLACEHOLDER in line]


# --- conditions and times ----------------------------------------------------------------------------------


def condition(obj: Obj | None, ctype: str = "Ready") -> Obj | None:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if isinstance(cond, dict) and cond.get("type") == ctype:
            return cond
    return None


# --- classification --------------------------------------------------------------------------------------

_NET = r"no such host|server misbehaving|connection refused|i/o timeout|dial tcp|no route to host|deadline exceeded"

# (cause, pattern) tables, first match wins.
STORE_CAUSES: list[tuple[Cause, str]] = [
    (Cause.TOKEN_SECRET_MISSING, r"cannot get kubernetes secret|secrets? \"?[a-z0-9.-]+\"? not found"),
    (Cause.TOKEN_REJECTED, r"permission denied|invalid token|bad token|invalid vault credentials|code: 40[13]\b"),
    (Cause.OPENBAO_UNREACHABLE, _NET + r"|x509|certificate|tls"),
]
EXTERNAL_SECRET_CAUSES: list[tuple[Cause, str]] = [
    (Cause.STORE_NOT_READY, r"secretstore.*(not ready|not found)|could not get secretstore|store .*not ready"),
    (Cause.POLICY_DENIED, r"permission denied|code: 403"),
    (Cause.REMOTE_KEY_MISSING, r"not found|no secret|does not exist|code: 404"),
]
PULL_CAUSES: list[tuple[Cause, str]] = [
    (Cause.DNS, r"no such host|server misbehaving|lookup \S+ on "),
    (Cause.TLS, r"x509|certificate|tls:|handshake"),
    (Cause.UNREACHABLE, r"connection refused|i/o timeout|no route to host|network is unreachable|deadline exceeded"),
    (Cause.UNAUTHORIZED, r"\b401\b|unauthorized|authentication required|no basic auth credentials"),
    (Cause.DENIED, r"\b403\b|forbidden|denied|insufficient_scope"),
    (Cause.NOT_FOUND, r"manifest unknown|name unknown|not found|\b404\b"),
    (Cause.MALFORMED, r"invalidimagename|invalid reference format"),
]


def classify(text: str, table: Sequence[tuple[Cause, str]], default: Cause) -> Cause:
    low = text.lower()
    for cause, pattern in table:
        if re.search(pattern, low):
            return cause
    return default


def store_finding(store: Obj | None, names: Names) -> Finding:
    subject = f"SecretStore `{names.secret_store}`"
    if store is None:
        return Finding.fail(Link.STORE, Cause.MISSING, f"{subject} not found in `{names.namespace}`")
    cond = condition(store)
    api = str(store.get("apiVersion", "")).rpartition("/")[2]
    if cond is None:
        return Finding.fail(Link.STORE, Cause.NOT_READY, f"{subject} ({api}) has no Ready condition yet")
    message = clip(str(cond.get("message") or cond.get("reason") or ""))
    if cond.get("status") == "True":
        return Finding.ok(Link.STORE, f"Ready ({api}): {message}" if message else f"Ready ({api})")
    cause = classify(str(cond.get("message") or ""), STORE_CAUSES, Cause.NOT_READY)
    return Finding.fail(Link.STORE, cause, f"not Ready ({cond.get('reason') or 'no reason'}): {message}")


def external_secret_finding(es: Obj | None, names: Names, now: float) -> Finding:
    subject = f"ExternalSecret `{names.external_secret}`"
    if es is None:
        return Finding.fail(Link.EXTERNAL_SECRET, Cause.MISSING, f"{subject} not found in `{names.namespace}`")
    spec, status = es.get("spec") or {}, es.get("status") or {}
    refreshed = status.get("refreshTime")
    facts = [f"last sync {age(refreshed, now)} ago ({refreshed})" if refreshed else "never synced"]
    facts.append(f"refreshInterval {spec.get('refreshInterval') or '1h (default)'}")
    store_ref = (spec.get("secretStoreRef") or {}).get("name")
    if store_ref and store_ref != names.secret_store:
        facts.append(f"reads SecretStore `{store_ref}`, not `{names.secret_store}`")
    cond = condition(es)
    if cond is not None and cond.get("status") == "True":
        return Finding.ok(Link.EXTERNAL_SECRET, "synced · " + " · ".join(facts))
    message = clip((cond or {}).get("message") or (cond or {}).get("reason") or "no Ready condition")
    cause = classify(str((cond or {}).get("message") or ""), EXTERNAL_SECRET_CAUSES, Cause.NOT_READY)
    if store_ref and store_ref != names.secret_store:
        cause = Cause.MALFORMED
    return Finding.fail(Link.EXTERNAL_SECRET, cause, f"not synced: {message} · " + " · ".join(facts))


def docker_secret_finding(secret: Obj | None, names: Names, host: str) -> Finding:
    if secret is None:
        return Finding.fail(Link.DOCKER_SECRET, Cause.MISSING, f"Secret `{names.docker_secret}` not found")
    kind = secret.get("type")
    if kind != DOCKER_CONFIG_TYPE:
        return Finding.fail(Link.DOCKER_SECRET, Cause.WRONG_TYPE, f"type is `{kind}`, not `{DOCKER_CONFIG_TYPE}`")
    config = docker_config(secret, host)
    if config.problem and not config.hosts:
        return Finding.fail(Link.DOCKER_SECRET, Cause.MALFORMED, config.problem)
    if host.lower() not in config.hosts:
        named = ", ".join(config.hosts) or "no registry"
        return Finding.fail(Link.DOCKER_SECRET, Cause.NO_HOST, f"does not name {host} (names: {named})")
    if config.problem:
        return Finding.fail(Link.DOCKER_SECRET, Cause.NO_CREDENTIALS, config.problem)
    return Finding.ok(Link.DOCKER_SECRET, f"`{DOCKER_CONFIG_TYPE}` with credentials for {host}")


def pods_running(pods: Sequence[Obj]) -> tuple[int, list[str]]:
    """(running and ready count, lines for the others) of the ESO namespace's pods."""
    bad = []
    for pod in pods:
        name = (pod.get("metadata") or {}).get("name", "?")
        phase = (pod.get("status") or {}).get("phase")
        ready = (condition(pod) or {}).get("status") == "True"
        if phase != "Running" or not ready:
            waiting = [
                ((c.get("state") or {}).get("waiting") or {}).get("reason")
                for c in (pod.get("status") or {}).get("containerStatuses") or []
            ]
            why = next((w for w in waiting if w), phase or "unknown")
            bad.append(f"{name} {why}")
    return len(pods) - len(bad), bad


# --- the test pod ------------------------------------------------------------------------------------------

TERMINAL_WAITING = frozenset({"ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"})


class PodProgress(StrEnum):
    PULLED = "pulled"
    FAILED = "failed"
    WAITING = "waiting"


def pod_progress(pod: Obj) -> tuple[PodProgress, str]:
    """Where the test pod is: the image pulled (a container ran or runs), a pull failure the kubelet only
    retries with back-off, or still on its way. The reason is the phase or the waiting reason."""
    status = pod.get("status") or {}
    phase = str(status.get("phase") or "Pending")
    containers = status.get("containerStatuses") or []
    if phase in ("Running", "Succeeded"):
        return PodProgress.PULLED, phase
    for c in containers:
        state = c.get("state") or {}
        if "running" in state or "terminated" in state or c.get("imageID"):
            return PodProgress.PULLED, phase
    reasons = [((c.get("state") or {}).get("waiting") or {}).get("reason") for c in containers]
    reason = next((r for r in reasons if r), "")
    if reason in TERMINAL_WAITING or phase == "Failed":
        return PodProgress.FAILED, reason or phase
    return PodProgress.WAITING, reason or phase


def pod_failure(reason: str, event_messages: Iterable[str], *, timed_out: bool, timeout: int) -> tuple[Cause, str]:
    """Why the kubelet could not pull: the events' words first, then the waiting reason."""
    messages = [m for m in event_messages if m]
    pull_errors = [m for m in messages if re.search(r"failed to pull|pull|image", m, re.I)]
    for text in (*pull_errors, *messages, reason):
        cause = classify(text, PULL_CAUSES, Cause.OK)
        if cause is not Cause.OK:
            return cause, clip(text, 260)
    if timed_out:
        stuck = reason or "Pending"
        return Cause.TIMEOUT, f"not Running after {timeout}s ({stuck}{'; no events' if not messages else ''})"
    return Cause.PULL_FAILED, clip(pull_errors[-1] if pull_errors else reason or "pull failed", 260)


# --- the pods' own pull (an incident's diagnosis: no test pod) -------------------------------------------

PULL_WAITING = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"})


def failing_pull(pods: Sequence[Obj]) -> tuple[str, str]:
    """(image, waiting reason) of the first container the kubelet cannot pull; ("", "") if none shows it."""
    for pod in pods:
        status = pod.get("status") or {}
        for c in [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]:
            reason = ((c.get("state") or {}).get("waiting") or {}).get("reason")
            if reason in PULL_WAITING:
                return str(c.get("image") or ""), str(reason)
    return "", ""


def on_registry(image: str, names: Names) -> bool:
    return image.lower().startswith(names.registry.lower() + "/")


def kubelet_finding(pods: Sequence[Obj], event_messages: Iterable[str], names: Names) -> Finding:
    """The pods' pull as the chain's last link: the kubelet's words for why (the events first, as for the
    test pod), and pods of the registry's images that do not name the docker Secret in imagePullSecrets."""
    image, reason = failing_pull(pods)
    cause, why = pod_failure(reason, event_messages, timed_out=False, timeout=0)
    evidence = f"`{reason}`: {why}" if reason and why != reason else f"`{reason or 'pull failing'}`: {why}"
    used = sorted({str(s.get("name")) for p in pods for s in (p.get("spec") or {}).get("imagePullSecrets") or []})
    if pods and names.docker_secret not in used and (not image or on_registry(image, names)):
        listed = ", ".join(f"`{u}`" for u in used) or "none"
        return Finding.fail(Link.POD, Cause.NO_CREDENTIALS, f"imagePullSecrets: {listed} · {evidence}")
    return Finding.fail(Link.POD, cause, evidence)


# --- the verdict -------------------------------------------------------------------------------------------

_BOOTSTRAP = "apply the chain again with `/plate harbor-bootstrap {env}` (Argo CD app `{argocd_app}`)"
_REACH_HINT = "pulls do not take this path (the pull judges the chain); to check it from plate-bot too, "

# (link, cause) -> (what is wrong, what to do); (link, None) is the fallback for the link.
# Deliberately a table: its rows share a shape, not logic, and `duplicates` pairs them. Each row
# is its own advice in its own words; built from parts, the texts would be harder to read and to grep for.
ADVICE: dict[tuple[Link, Cause | None], tuple[str, str]] = {
    (Link.ESO, Cause.MISSING): (
        "External Secrets Operator has no pods in `{eso_namespace}`",
        "install ESO (helm chart external-secrets) before anything else",
    ),
    (Link.ESO, None): (
        "External Secrets Operator is not running in `{eso_namespace}`",
        "look at the operator's pods (`/plate diagnose` there) and its logs",
    ),
    (Link.NAMESPACES, None): (
        "a namespace of the chain is missing",
        "create it, or run `/plate harbor-bootstrap {env}`",
    ),
    (Link.TOKEN, Cause.PLACEHOLDER): (
        "Secret `{token_secret}` still holds the `REPLACE` placeholder",
        "put a real OpenBao token in it (in OpenBao: `bao token create -policy=harbor-read`)",
    ),
    (Link.TOKEN, Cause.EMPTY): ("Secret `{token_secret}` has no token", "put a real OpenBao token in it"),
    (Link.TOKEN, None): ("Secret `{token_secret}` is missing", "create it with an OpenBao token, then " + _BOOTSTRAP),
    (Link.SERVICE_ACCOUNT, None): ("ServiceAccount `{service_account}` is missing", _BOOTSTRAP),
    (Link.STORE, Cause.TOKEN_REJECTED): (
        "SecretStore `{secret_store}` not Ready: OpenBao rejected the token",
        "check Secret `{token_secret}` (expired or revoked token, or a policy without read on the Harbor path)",
    ),
    (Link.STORE, Cause.TOKEN_SECRET_MISSING): (
        "SecretStore `{secret_store}` not Ready: it cannot read its token Secret",
        "check Secret `{token_secret}` and the store's `tokenSecretRef`",
    ),
    (Link.STORE, Cause.OPENBAO_UNREACHABLE): (
        "SecretStore `{secret_store}` not Ready: OpenBao is unreachable",
        "check the store's server URL and the network path from `{eso_namespace}` to OpenBao",
    ),
    (Link.STORE, Cause.MISSING): ("SecretStore `{secret_store}` is missing", _BOOTSTRAP),
    (Link.STORE, None): (
        "SecretStore `{secret_store}` not Ready",
        "read its status message above; then check Secret `{token_secret}` and the OpenBao server",
    ),
    (Link.EXTERNAL_SECRET, Cause.MISSING): ("ExternalSecret `{external_secret}` is missing", _BOOTSTRAP),
    (Link.EXTERNAL_SECRET, Cause.REMOTE_KEY_MISSING): (
        "ExternalSecret `{external_secret}` not synced: the Harbor credentials are not at its remoteRef in OpenBao",
        "write the robot account's credentials at that path, or fix the remoteRef key",
    ),
    (Link.EXTERNAL_SECRET, Cause.POLICY_DENIED): (
        "ExternalSecret `{external_secret}` not synced: OpenBao denied reading the Harbor credentials",
        "grant the token's policy read on the remoteRef path",
    ),
    (Link.EXTERNAL_SECRET, Cause.MALFORMED): (
        "ExternalSecret `{external_secret}` reads the wrong SecretStore",
        "point `spec.secretStoreRef.name` at `{secret_store}`",
    ),
    (Link.EXTERNAL_SECRET, None): (
        "ExternalSecret `{external_secret}` not synced",
        "read its status message above; ESO retries every refreshInterval",
    ),
    (Link.DOCKER_SECRET, Cause.MISSING): (
        "Secret `{docker_secret}` is missing although the ExternalSecret looks synced",
        "check the ExternalSecret's `spec.target.name` and ESO's logs",
    ),
    (Link.DOCKER_SECRET, Cause.NO_HOST): (
        "Secret `{docker_secret}` does not name the registry {registry}",
        "fix the registry host in the ExternalSecret's template (or in OpenBao)",
    ),
    (Link.DOCKER_SECRET, None): (
        "Secret `{docker_secret}` is not a usable pull secret",
        "fix the ExternalSecret's template: type `kubernetes.io/dockerconfigjson` with auths for {registry}",
    ),
    # The registry as plate-bot's own pod sees it: not the path pulls take, so these are warnings (REACH).
    (Link.REGISTRY, Cause.UNREACHABLE): (
        "plate-bot's pod cannot reach the registry API at {registry_url}",
        _REACH_HINT + "allow egress from the plate-bot pod (the chart's NetworkPolicy) or fix `harbor.registry_url`",
    ),
    (Link.REGISTRY, Cause.DNS): (
        "plate-bot's pod cannot resolve the registry API at {registry_url}",
        _REACH_HINT + "check DNS from the plate-bot pod and `harbor.registry_url`",
    ),
    (Link.REGISTRY, Cause.TIMEOUT): (
        "the registry API at {registry_url} did not answer plate-bot's pod in time",
        _REACH_HINT + "allow egress from the plate-bot pod (the chart's NetworkPolicy) or fix `harbor.registry_url`",
    ),
    (Link.REGISTRY, Cause.TLS): (
        "plate-bot's pod does not trust the TLS certificate of {registry_url}",
        _REACH_HINT + "give plate-bot the registry's CA, or fix `harbor.registry_url`",
    ),
    (Link.REGISTRY, Cause.ERROR): (
        "the registry API at {registry_url} did not answer plate-bot's pod as a registry",
        _REACH_HINT + "check `harbor.registry_url` (a proxy on plate-bot's egress may answer instead)",
    ),
    (Link.REGISTRY, Cause.UNAUTHORIZED): (
        "Harbor rejected the credentials in `{docker_secret}` (401)",
        "the robot account's secret in OpenBao is wrong or expired: renew it in Harbor, store it in OpenBao,"
        " and let ESO refresh (or re-sync the ExternalSecret)",
    ),
    (Link.REGISTRY, Cause.DENIED): (
        "the credentials in `{docker_secret}` may not pull `{image}` (403)",
        "give the robot account pull permission on the Harbor project",
    ),
    (Link.REGISTRY, Cause.NOT_FOUND): (
        "`{image}` does not exist in the registry (404)",
        "push the image or fix `harbor.test_image`",
    ),
    (Link.REGISTRY, None): ("the registry check failed", "read the registry's answer above"),
    (Link.POD, Cause.DNS): ("the node cannot resolve {registry}", "check the cluster's DNS for the registry host"),
    (Link.POD, Cause.UNREACHABLE): ("the node cannot reach {registry}", "check the nodes' network path to Harbor"),
    (Link.POD, Cause.TLS): ("the node does not trust {registry}'s certificate", "add Harbor's CA to the nodes"),
    (Link.POD, Cause.UNAUTHORIZED): (
        "the kubelet's pull was unauthorized",
        "check that the pod's `imagePullSecrets` names `{docker_secret}` and its auths key matches {registry}",
    ),
    (Link.POD, Cause.DENIED): ("the kubelet's pull was denied", "give the robot account pull permission"),
    (Link.POD, Cause.NO_CREDENTIALS): (
        "the pods do not use `{docker_secret}`",
        "add it to the pods' `imagePullSecrets` (the chart's values)",
    ),
    (Link.POD, Cause.NOT_FOUND): ("`{image}` was not found by the kubelet", "push the image or fix the tag"),
    (Link.POD, Cause.TIMEOUT): (
        "the test pod did not start in time",
        "look at the node capacity and the pod's events; raise `harbor.pod_timeout` for large images",
    ),
    (Link.POD, None): ("the test pod could not pull `{image}`", "read the pod's events above"),
}
ADVICE_API = (
    "plate-bot could not check the {what}: the Kubernetes API refused or failed",
    "see the evidence above; plate-bot's ServiceAccount may lack a permission (the chart's RBAC)",
)
# link -> (its title in the walk, what plate-bot could not check when the API failed on it)
LINK_NAMES: dict[Link, tuple[str, str]] = {
    Link.ESO: ("ESO", "ESO pods"),
    Link.NAMESPACES: ("namespaces", "namespaces"),
    Link.TOKEN: ("Secret {token_secret}", "token Secret"),
    Link.SERVICE_ACCOUNT: ("ServiceAccount {service_account}", "ServiceAccount"),
    Link.STORE: ("SecretStore {secret_store}", "SecretStore"),
    Link.EXTERNAL_SECRET: ("ExternalSecret {external_secret}", "ExternalSecret"),
    Link.DOCKER_SECRET: ("Secret {docker_secret}", "docker Secret"),
    Link.REGISTRY: ("registry auth", "registry"),
    Link.POD: ("pod pull", "test pod"),
}
_ICON = {State.PASS: ":white_check_mark:", State.FAIL: ":x:", State.SKIP: ":heavy_minus_sign:", State.WARN: ":warning:"}
# What plate-bot's registry check can say about the chain: a reachable registry's answers about the
# credentials or the image. Anything else (REACH) is about plate-bot's own network path.
REGISTRY_ANSWERS = frozenset({Cause.UNAUTHORIZED, Cause.DENIED, Cause.NOT_FOUND})
REACH = frozenset({Cause.UNREACHABLE, Cause.DNS, Cause.TLS, Cause.TIMEOUT, Cause.ERROR})


@dataclass(frozen=True)
class Verdict:
    ok: bool
    line: str  # the one line for the status message
    link: Link | None = None
    cause: Cause | None = None
    walk: tuple[str, ...] = ()  # the chain walked backwards, for the thread
    warnings: tuple[str, ...] = ()  # what could not be told, and breaks nothing (the registry from plate-bot)


def advice(link: Link, cause: Cause, names: Names) -> tuple[str, str]:
    fields = {**names.__dict__, "what": LINK_NAMES[link][1]}
    if cause is Cause.API_ERROR:
        problem, todo = ADVICE_API
    else:
        problem, todo = ADVICE.get((link, cause)) or ADVICE[(link, None)]
    return problem.format(**fields), todo.format(**fields)


def link_title(link: Link, names: Names) -> str:
    return LINK_NAMES[link][0].format(**names.__dict__)


def registry_finding(cause: Cause, detail: str, names: Names) -> Finding:
    """What plate-bot's registry check says about the chain: a readable manifest passes; a reachable
    registry's answer about the credentials or the image fails the link; not reaching it (DNS, connect,
    TLS, timeout, not a registry's answer) is a warning carrying its reason and what to do."""
    if cause is Cause.OK:
        return Finding.ok(Link.REGISTRY, detail)
    if cause in REGISTRY_ANSWERS:
        return Finding.fail(Link.REGISTRY, cause, detail)
    _problem, todo = advice(Link.REGISTRY, cause, names)
    return Finding.warn(Link.REGISTRY, cause if cause in REACH else Cause.ERROR, f"{detail} · {todo}")


def _pod_beside(pod: Finding | None, names: Names) -> str:
    """The test pod's result, shown beside a failed registry link."""
    if pod is None:
        return ""
    if pod.state is State.PASS:
        return f" · test pod: pulled `{names.image}` all the same"
    if pod.state is State.FAIL:
        return f" · test pod: its pull failed too ({advice(Link.POD, pod.cause, names)[0]})"
    return f" · test pod: not run ({pod.evidence})"


def verdict(findings: Iterable[Finding], names: Names) -> Verdict:
    """Walk the chain backwards from the pull to the first broken link; one line naming it and the fix.
    Warnings break nothing: with the pull passing and no link failed, the chain works."""
    by_link = {f.link: f for f in findings}
    walk = []
    for link in reversed(CHAIN):
        f = by_link.get(link)
        if f is None:
            continue
        title = link_title(link, names)
        # " — " as the checklist uses: "Secret x: `…`" would read as a `secret: value` pair to the redactor.
        walk.append(f"{_ICON[f.state]} {title} — {f.evidence}")
    warnings = tuple(
        advice(link, by_link[link].cause, names)[0]
        for link in CHAIN
        if link in by_link and by_link[link].state is State.WARN
    )
    broken = next((by_link[link] for link in CHAIN if link in by_link and by_link[link].state is State.FAIL), None)
    if broken is None:
        checked = sum(1 for f in by_link.values() if f.state is State.PASS)
        skipped = [link_title(f.link, names) for f in by_link.values() if f.state is State.SKIP]
        pulled = by_link.get(Link.POD) is not None and by_link[Link.POD].state is State.PASS
        not_checked = f"; not checked: {', '.join(skipped)}" if skipped else ""
        if not pulled and (skipped or warnings):
            line = f"no broken link found ({checked} checks passed{not_checked})"
        elif skipped or warnings:  # the pull proves the chain; what was not told is said after it
            line = f"chain works: {checked} checks passed, `{names.image}` pulls{not_checked}"
        else:
            line = f"chain healthy: {checked} checks passed, `{names.image}` pulls"
        if warnings:
            line += " · warning: " + "; ".join(warnings)
        return Verdict(True, line, walk=tuple(walk), warnings=warnings)
    problem, todo = advice(broken.link, broken.cause, names)
    line = f"{problem}; {todo}"
    if broken.link is Link.REGISTRY:
        line += _pod_beside(by_link.get(Link.POD), names)
    line = line[0].upper() + line[1:]
    return Verdict(False, line, broken.link, broken.cause, tuple(walk), warnings)


@dataclass(frozen=True)
class Conclusion:
    """How a harbor job ends: ok (the job succeeds) with its one line, or not with the thread's walk."""

    ok: bool
    line: str  # the status message's summary and App Home's last-operation line
    thread: tuple[str, ...] = ()  # posted under the status message when the job fails


def conclusion(findings: Iterable[Finding], names: Names, prefix: str = "", details: Sequence[str] = ()) -> Conclusion:
    """The verdict as a job's end: a `prefix` (an earlier failure, e.g. harbor-bootstrap's sync) fails the
    job whatever the chain says; a broken link fails it with the walk and the first broken link."""
    result = verdict(findings, names)
    line = f"{prefix} · {result.line}" if prefix else result.line
    if result.ok and not prefix:
        return Conclusion(True, line)
    walk = ["*The chain, walked back from the pull*", *result.walk]
    if not result.ok:
        walk.append(f"*First broken link:* {result.line}")
    return Conclusion(False, line, (*walk, *details))


# --- harbor-bootstrap manifests -------------------------------------------------------------------------------

REQUIRED_MANIFESTS = {
    "openbao-token-secret.yaml": ("Secret", "token_secret"),
    "secret-store.yaml": ("SecretStore", "secret_store"),
    "external-secret.yaml": ("ExternalSecret", "external_secret"),
    "serviceaccount.yaml": ("ServiceAccount", "service_account"),
}
APPLICATION_MANIFEST = "application.yaml"
TOKEN_MANIFEST = "openbao-token-secret.yaml"  # noqa: S105 - a name, not a secret


def manifest_problems(docs: Mapping[str, Obj | None], names: Names) -> list[str]:
    """What is wrong with the manifests (None: file missing): each must hold the kind and the name the
    environment's checks look for, and the Application must be the one named in `harbor.argocd_app`."""
    problems = []
    wanted = {**REQUIRED_MANIFESTS, APPLICATION_MANIFEST: ("Application", "argocd_app")}
    for file, (kind, key) in wanted.items():
        doc = docs.get(file)
        if doc is None:
            problems.append(f"`{file}` is missing")
            continue
        name = getattr(names, key)
        got_kind, got_name = doc.get("kind"), (doc.get("metadata") or {}).get("name")
        if got_kind != kind or got_name != name:
            problems.append(f"`{file}` holds {got_kind} `{got_name}`, expected {kind} `{name}`")
    app = docs.get(APPLICATION_MANIFEST)
    if app is not None and not str(app.get("apiVersion", "")).startswith("argoproj.io/"):
        problems.append(f"`{APPLICATION_MANIFEST}` is not an argoproj.io Application")
    if app is not None and not (app.get("spec") or {}).get("destination"):
        problems.append(f"`{APPLICATION_MANIFEST}` has no spec.destination")
    return problems


def application_patch(live: Obj, desired: Obj) -> dict[str, Any]:
    """A merge patch making the live Application's spec, labels and annotations the desired ones: spec
    keys the manifest no longer has are removed (null), not left behind."""
    live_spec, spec = live.get("spec") or {}, dict(desired.get("spec") or {})
    for key in live_spec:
        spec.setdefault(key, None)
    meta = desired.get("metadata") or {}
    patch: dict[str, Any] = {"spec": spec}
    extra = {k: meta[k] for k in ("labels", "annotations") if meta.get(k)}
    if extra:
        patch["metadata"] = extra
    return patch


class SyncProgress(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


def sync_progress(app: Obj, previous_start: str | None) -> tuple[SyncProgress, str]:
    """Where the sync we triggered (or awaited) is: the operation is gone from `operation`, and
    `status.operationState` is a newer one than before (startedAt changed) in a final phase."""
    status = app.get("status") or {}
    op = status.get("operationState") or {}
    phase = str(op.get("phase") or "")
    sync, health = (status.get("sync") or {}).get("status"), (status.get("health") or {}).get("status")
    line = f"operation {phase or 'pending'}, sync {sync or 'Unknown'}, health {health or 'Unknown'}"
    if op.get("message"):
        line += f": {clip(op['message'], 160)}"
    ours = not app.get("operation") and phase and op.get("startedAt") != previous_start
    if not ours or phase in ("Running", "Terminating"):
        return SyncProgress.RUNNING, line
    if phase == "Succeeded":
        if health == "Progressing":
            return SyncProgress.RUNNING, line
        return SyncProgress.SUCCEEDED, line
    return SyncProgress.FAILED, line


def sync_operation(app: Obj, who: str, reason: str) -> dict[str, Any]:
    """The `operation` `argocd app sync` writes: sync the target revision with the default hook strategy."""
    source = (app.get("spec") or {}).get("source") or {}
    sync: dict[str, Any] = {"syncStrategy": {"hook": {}}}
    if source.get("targetRevision"):
        sync["revision"] = source["targetRevision"]
    info = [{"name": "Reason", "value": reason}]
    return {"operation": {"initiatedBy": {"username": who}, "info": info, "sync": sync}}
