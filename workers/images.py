"""PURE. The images a plan would run: which they are, which registries plate-bot can ask about them, what
the answers mean for the card, and whether what runs now is what was approved.

A manifest names an image by tag and tags move; the plan resolves each tag it can to its manifest digest
(workers.registry.resolve_image), the digests join the plan digest, and the deploy resolves again: an
image re-pushed after the approval refuses the run with both digests named.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from config.environments import Environment, ImagePolicy
from core.text import age

Obj = Mapping[str, Any]
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
# What a platform entry must at least cover to be worth showing; others are shown only if present.
PLATFORMS = ("linux/amd64", "linux/arm64")
NEAREST = 5


def short_digest(digest: str | None) -> str:
    """`sha256:abcdef123456…` as cards show a digest; "unresolved" when there is none."""
    return f"{digest[:19]}…" if digest else "unresolved"


@dataclass(frozen=True)
class Image:
    """`host/repository[:tag][@sha256:…]` as a pod spec names it."""

    host: str
    repository: str
    tag: str | None
    digest: str | None = None

    @property
    def reference(self) -> str:
        """What the registry is asked for: the digest when the spec pins one, else the tag."""
        return self.digest or self.tag or "latest"

    @property
    def name(self) -> str:
        return f"{self.host}/{self.repository}"

    def __str__(self) -> str:
        return self.name + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")


def parse(image: str) -> Image:
    """A pod spec's image string. A first component without a dot, colon or `localhost` is Docker Hub's
    (`nginx:1.25` is `docker.io/library/nginx:1.25`), as container runtimes read it."""
    rest, _, digest = image.partition("@")
    first, sep, remainder = rest.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        host, path = first.lower(), remainder
    else:
        host, path = "docker.io", rest if sep else f"library/{rest}"
    tag: str | None = None
    last = path.rsplit("/", 1)[-1]
    if ":" in last:
        path, _, tag = path.rpartition(":")
    return Image(host, path, tag, digest or None)


def _pod_specs(obj: Obj) -> Iterable[Obj]:
    kind, spec = obj.get("kind"), obj.get("spec") or {}
    if kind == "Pod":
        yield spec
    elif kind == "CronJob":
        yield ((((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}).get("spec")) or {}
    elif isinstance(spec.get("template"), dict):
        yield spec["template"].get("spec") or {}


def images_in(rendered: Mapping[str, Obj]) -> list[str]:
    """Every container and init container image of the rendered objects, each once, in manifest order."""
    seen: dict[str, None] = {}
    for key in sorted(rendered):
        for spec in _pod_specs(rendered[key]):
            for container in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
                if isinstance(container, dict) and isinstance(container.get("image"), str):
                    seen.setdefault(container["image"], None)
    return list(seen)


@dataclass(frozen=True)
class Source:
    """A registry plate-bot may ask: where its API answers and which Secret holds its credentials."""

    host: str
    url: str
    secret: str  # docker-config Secret name
    namespace: str


def sources(env: Environment) -> dict[str, Source]:
    """Registry host -> how to reach it: the environment's Harbor (at `harbor.registry_url` when set) and
    its `registries:`; the Harbor pull secret unless a registry names its own."""
    harbor = env.harbor
    chain_ns = harbor.namespace or env.namespace
    url = (harbor.registry_url or f"https://{harbor.registry}").rstrip("/")
    out = {harbor.registry.lower(): Source(harbor.registry.lower(), url, harbor.docker_secret, chain_ns)}
    for reg in env.registries:
        secret, ns = (reg.pull_secret, env.namespace) if reg.pull_secret else (harbor.docker_secret, chain_ns)
        out[reg.host.lower()] = Source(reg.host.lower(), (reg.url or f"https://{reg.host}").rstrip("/"), secret, ns)
    return out


# Harbor's native scan report (api/v2.0/swagger.yaml: Artifact.scan_overview -> NativeReportSummary).
SEVERITIES = ("Critical", "High", "Medium", "Low")
COSIGN = "signature.cosign"  # Harbor's accessory type for a cosign signature


@dataclass(frozen=True)
class Scan:
    status: str  # Harbor's scan_status: Success, Running, Error, …
    counts: tuple[int, int, int, int] = (0, 0, 0, 0)  # critical, high, medium, low
    scanner: str = ""  # "Trivy v0.50.1"
    finished: str | None = None  # end_time, ISO 8601


@dataclass(frozen=True)
class Artifact:
    """What Harbor knows of an image beyond the registry: when it was pushed, its scan, its signatures."""

    pushed: str | None = None
    scan: Scan | None = None  # None: never scanned
    signed: bool = False


def parse_artifact(doc: Obj) -> Artifact:
    """Harbor's Artifact JSON (GET …/artifacts/{digest}?with_scan_overview=true&with_accessory=true)."""
    scan = None
    overview = doc.get("scan_overview") or {}
    report = next((v for v in overview.values() if isinstance(v, dict)), None) if isinstance(overview, dict) else None
    if report is not None and report.get("scan_status"):
        counts = ((report.get("summary") or {}).get("summary")) or {}
        scanner = report.get("scanner") or {}
        scan = Scan(
            status=str(report["scan_status"]),
            counts=tuple(int(counts.get(level) or 0) for level in SEVERITIES),  # type: ignore[arg-type]
            scanner=" ".join(str(scanner[k]) for k in ("name", "version") if scanner.get(k)),
            finished=report.get("end_time"),
        )
    accessories = doc.get("accessories") or []
    signed = any(isinstance(a, dict) and a.get("type") == COSIGN for a in accessories)
    return Artifact(pushed=doc.get("push_time"), scan=scan, signed=signed)


def artifact_record(artifact: Artifact) -> dict[str, Any]:
    """As kept in Redis for the approval's lifetime (`artifact_from_record` reads it back)."""
    scan = artifact.scan
    return {
        "v": 1,
        "pushed": artifact.pushed,
        "signed": artifact.signed,
        "scan": None if scan is None else {"status": scan.status, "counts": list(scan.counts),
                                           "scanner": scan.scanner, "finished": scan.finished},
    }  # fmt: skip


def artifact_from_record(data: Obj) -> Artifact | None:
    """None for a record this version cannot read (written by a newer one, or damaged): ask Harbor again."""
    try:
        raw = data.get("scan")
        scan = None
        if raw is not None:
            counts = tuple(int(c) for c in raw["counts"])
            if len(counts) != len(SEVERITIES):
                return None
            scan = Scan(str(raw["status"]), counts, str(raw.get("scanner") or ""), raw.get("finished"))  # type: ignore[arg-type]
        return Artifact(pushed=data.get("pushed"), scan=scan, signed=bool(data.get("signed")))
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def harbor_line(artifact: Artifact, now: float) -> str:
    """`pushed 3d ago · Trivy v0.50 2h ago: 0 critical, 2 high, 5 medium · signed`."""
    parts = [f"pushed {age(artifact.pushed, now)} ago"] if artifact.pushed else []
    scan = artifact.scan
    if scan is None:
        parts.append("not scanned")
    elif scan.status != "Success":
        parts.append(f"scan {scan.status.lower()}")
    else:
        crit, high, medium, _low = scan.counts
        when = f" {age(scan.finished, now)} ago" if scan.finished else ""
        parts.append(f"{scan.scanner or 'scan'}{when}: {crit} critical, {high} high, {medium} medium")
    parts.append("signed" if artifact.signed else "not signed")
    return " · ".join(parts)


def policy_violations(policy: ImagePolicy, results: Sequence[Resolution]) -> list[str]:
    """What the environment's image_policy finds wrong with the resolved images (Harbor's images; an image
    Harbor does not hold counts as unscanned and unsigned)."""
    out = []
    for r in results:
        if r.outcome is not Outcome.RESOLVED:
            continue
        name = f"`{r.image.name}:{r.image.tag}`" if r.image.tag else f"`{r.image}`"
        art = r.artifact or Artifact()
        scan = art.scan if art.scan is not None and art.scan.status == "Success" else None
        if scan is not None:
            crit, high = scan.counts[0], scan.counts[1]
            if policy.max_critical is not None and crit > policy.max_critical:
                out.append(f"{name} has {crit} critical vulnerabilities (at most {policy.max_critical} allowed)")
            if policy.max_high is not None and high > policy.max_high:
                out.append(f"{name} has {high} high vulnerabilities (at most {policy.max_high} allowed)")
        elif policy.require_scan:
            out.append(f"{name} has no finished vulnerability scan in Harbor (require_scan)")
        if policy.require_signature and not art.signed:
            out.append(f"{name} has no cosign signature in Harbor (require_signature)")
    return out


class Outcome(StrEnum):
    RESOLVED = "resolved"
    MISSING = "missing"  # the tag (or repository) does not exist
    REFUSED = "refused"  # credentials rejected or no pull permission
    UNREACHABLE = "unreachable"  # network, TLS, timeout, not a registry
    NOT_CHECKED = "not-checked"  # a registry plate-bot has no access configured for


@dataclass(frozen=True)
class Resolution:
    image: Image
    outcome: Outcome
    digest: str | None = None
    platforms: tuple[str, ...] = ()
    detail: str = ""
    tags: tuple[str, ...] = ()  # MISSING: the repository's tags, for "did you mean"
    credential: str = ""  # the Secret used (named on a refusal)
    artifact: Artifact | None = None  # what Harbor knows of it, when the registry is Harbor

    @property
    def short(self) -> str:
        return short_digest(self.digest)


def _version_key(tag: str) -> tuple[int, tuple[Any, ...]]:
    """Semantic versions newest first, then everything else."""
    match = re.fullmatch(r"v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:-([0-9A-Za-z.-]+))?(?:\+.*)?", tag)
    if not match:
        return (1, ())
    major, minor, patch, pre = match.groups()
    # A pre-release sorts before its release: (…, 0, pre) < (…, 1, "").
    return (0, (int(major), int(minor or 0), int(patch or 0), 0 if pre else 1, pre or ""))


def nearest_tags(tags: Sequence[str], limit: int = NEAREST) -> list[str]:
    """The tags to offer instead of a missing one: newest semantic versions first; if the repository has no
    semantic versions, the registry's own order from the end (its newest, for most registries)."""
    versions = [t for t in tags if _version_key(t)[0] == 0]
    if versions:
        return sorted(versions, key=lambda t: _version_key(t)[1], reverse=True)[:limit]
    return list(reversed(tags))[:limit]


def card_lines(results: Sequence[Resolution], now: float = 0.0, limit: int = 8) -> list[str]:
    """The plan's image lines: `repo:tag @ sha256:abcd…`, the platforms that matter, and Harbor's word."""
    lines = []
    for r in results[:limit]:
        shown = r.image.name + (f":{r.image.tag}" if r.image.tag else "")
        if r.outcome is Outcome.RESOLVED:
            plats = [p for p in PLATFORMS if p in r.platforms] or list(r.platforms[:2])
            extra = f" · {', '.join(plats)}" if plats else ""
            harbor = f"\n      {harbor_line(r.artifact, now)}" if r.artifact is not None else ""
            lines.append(f"`{shown}` @ `{r.short}`{extra}{harbor}")
        elif r.outcome is Outcome.NOT_CHECKED:
            lines.append(f"`{shown}` · not checked (no access to {r.image.host} configured)")
        else:
            lines.append(f":warning: `{shown}` @ unresolved: {r.detail}")
    if len(results) > limit:
        lines.append(f"… {len(results) - limit} more images")
    return lines


def blocking(results: Sequence[Resolution], env_name: str) -> str | None:
    """Why the plan must fail before anyone is asked, or None: a tag that does not exist, or a registry that
    refused plate-bot's credentials. An unreachable registry is a warning, not a failure."""
    for r in results:
        if r.outcome is Outcome.MISSING:
            shown = f"`{r.image.name}:{r.image.tag}`" if r.image.tag else f"`{r.image}`"
            near = nearest_tags(r.tags)
            offer = f"; the newest tags are {', '.join(f'`{t}`' for t in near)}" if near else ""
            return f"image {shown} does not exist in the registry ({r.detail}){offer}"
        if r.outcome is Outcome.REFUSED:
            return (
                f"the registry refused to show `{r.image}` with the credentials in Secret `{r.credential}` "
                f"({r.detail}); check the pull-secret chain with `/plate harbor-verify {env_name}`"
            )
    return None


def warnings(results: Sequence[Resolution]) -> list[str]:
    hosts = sorted({r.image.host for r in results if r.outcome is Outcome.UNREACHABLE})
    return [
        f":warning: could not reach {host} to resolve image digests: the approval binds to tags only" for host in hosts
    ]


def pins(results: Iterable[Resolution]) -> dict[str, str]:
    """Image (as the spec names it) -> digest, for what was resolved; what the plan digest includes."""
    return {str(r.image): r.digest for r in results if r.digest}


@dataclass(frozen=True)
class Repush:
    image: str
    approved: str
    now: str | None


def repushed(approved: Mapping[str, str], now: Mapping[str, str]) -> list[Repush]:
    """Images whose tag points elsewhere than at approval time (or no longer resolves)."""
    return [Repush(i, d, now.get(i)) for i, d in sorted(approved.items()) if now.get(i) != d]


def repush_refusal(changes: Sequence[Repush]) -> str:
    first = changes[0]
    tag = parse(first.image).tag or first.image
    now = f"now {short_digest(first.now)}" if first.now else "now unresolvable"
    more = f" (and {len(changes) - 1} more image(s))" if len(changes) > 1 else ""
    return f"`{tag}` was re-pushed after approval: approved {short_digest(first.approved)}, {now}{more}; request again"
