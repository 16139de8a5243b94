"""PURE. Checks a diagnosis runs on what was read: Argo CD's Procedure 4 (source, credentials, sync
policy, history limit, last operation), and what changed recently (the latest helm revision and the
plate-bot request that made it). The pull-secret chain is `workers.harbor.chain`'s.

Inputs are API-shaped dicts; repository Secrets arrive as name, kind and URL only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from core.text import age, clip, parse_time
from workers.revisions import Revision, origin_of

Obj = dict[str, Any]
OK, BAD, WARN, INFO = ":white_check_mark:", ":x:", ":warning:", ":information_source:"
DEFAULT_HISTORY_LIMIT = 10  # Argo CD keeps this many sync revisions when revisionHistoryLimit is unset
RECENT = 3600.0  # a helm revision this young is "what changed recently"
PLATE_DESCRIPTION = re.compile(r"^plate-bot (?P<request>[0-9a-z]{6,32}) by (?P<user>[UW][A-Z0-9]{2,30})\b")

# --- Argo CD: Procedure 4 -------------------------------------------------------------------------------

_CAUSES = (
    (
        (
            "authentication required",
            "authentication failed",
            "invalid username or password",
            "permission denied",
            "could not read username",
            "401 unauthorized",
            "403 forbidden",
        ),
        "Argo CD cannot authenticate to the repository: its repository credentials are missing or wrong",
    ),
    (
        ("repository not found", "not a git repository", "no such host", "does not appear to be a git repository"),
        "the repoURL is wrong or the repository does not exist",
    ),
    (
        (
            "unable to resolve",
            "couldn't find remote ref",
            "reference not found",
            "unknown revision",
            "invalid revision",
            "revision not found",
        ),
        "the targetRevision does not exist in the repository",
    ),
    (("app path does not exist", "path does not exist"), "the source path does not exist at that revision"),
)


def argocd_cause(messages: list[str]) -> str | None:
    """Plain words for Argo CD's sync/compare error, from the texts it gives."""
    low = " ".join(messages).lower()
    for needles, plain in _CAUSES:
        if any(n in low for n in needles):
            return plain
    return None


def normalize_repo(url: str) -> str:
    """`https://git.example.com/org/app.git`, `git@git.example.com:org/app` and `ssh://…` compare equal."""
    u = url.strip().lower()
    u = re.sub(r"^[a-z+]+://", "", u)
    u = re.sub(r"^[^@/]+@", "", u)
    u = re.sub(r"^([^/:]+):(?!\d+/)", r"\1/", u)  # scp-like `host:org/repo`
    return u.rstrip("/").removesuffix(".git")


def matching_credentials(repo_url: str, secrets: list[Obj]) -> list[Obj]:
    """`repository` secrets for exactly this URL, and `repo-creds` templates whose URL is its prefix."""
    want = normalize_repo(repo_url)
    out = []
    for secret in secrets:
        have = normalize_repo(str(secret.get("url", "")))
        if not have:
            continue
        if (secret.get("kind") == "repository" and have == want) or (
            secret.get("kind") == "repo-creds" and want.startswith(have)
        ):
            out.append(secret)
    return out


def _sources(app: Obj) -> list[Obj]:
    spec = app.get("spec") or {}
    return [spec["source"]] if spec.get("source") else list(spec.get("sources") or [])


def _repo_lines(source: Obj, secrets: list[Obj], production: bool, auth_failed: bool) -> list[str]:
    repo = str(source.get("repoURL", ""))
    revision = str(source.get("targetRevision") or "")
    where = source.get("path") or (f"chart {source['chart']}" if source.get("chart") else "")
    lines = []
    if not repo:
        lines.append(f"{BAD} no repoURL set")
    elif re.match(r"^(https?://|ssh://|git@|oci://)", repo):
        lines.append(f"{OK} repoURL `{repo}`" + (f" · `{where}`" if where else ""))
    else:
        lines.append(f"{BAD} repoURL `{clip(repo, 120)}` is not an http(s), ssh or oci URL")
    shown = revision or "HEAD"
    if re.fullmatch(r"[0-9a-f]{7,40}", revision):
        lines.append(f"{OK} targetRevision `{shown}` pins a commit")
    elif production and shown in ("HEAD", "main", "master"):
        lines.append(f"{WARN} targetRevision `{shown}`: production follows a moving branch; a tag or commit pins it")
    else:
        lines.append(f"{OK} targetRevision `{shown}`")
    creds = matching_credentials(repo, secrets) if repo else []
    if creds:
        names = ", ".join(f"`{c['name']}` ({c['kind']})" for c in creds)
        icon = WARN if auth_failed else OK
        # No "credentials: `x`" shape: the redaction layer would rightly take the name for a secret value.
        what = "Secret " + names + " matches" if len(creds) == 1 else "Secrets " + names + " match"
        lines.append(f"{icon} repository {what} this URL" + (" — but authentication fails" if auth_failed else ""))
    elif auth_failed:
        lines.append(f"{BAD} no repository credentials match `{clip(repo, 120)}` and the repository refuses access")
    else:
        lines.append(f"{INFO} no repository credentials match this URL (fine only for a public repository)")
    return lines


def _policy_lines(spec: Obj, production: bool) -> list[str]:
    policy = spec.get("syncPolicy") or {}
    automated = policy.get("automated")
    lines = []
    if automated is None:
        lines.append(f"{INFO} sync policy: manual (changes wait for someone to sync)")
    else:
        flags = ", ".join(f"{k} {'on' if automated.get(k) else 'off'}" for k in ("prune", "selfHeal"))
        lines.append(f"{OK} sync policy: automated, {flags}")
    retry = policy.get("retry")
    if not retry:
        lines.append(f"{WARN} no retry policy: one transient failure leaves the sync failed")
    else:
        backoff = retry.get("backoff") or {}
        limit = retry.get("limit")
        detail = ", ".join(
            f"{k} {backoff[k]}" for k in ("duration", "factor", "maxDuration") if backoff.get(k) is not None
        )
        text = f"retry limit {limit if limit is not None else 'unset'}" + (f" (backoff {detail})" if detail else "")
        aggressive = production and (limit is None or int(limit) < 0 or int(limit) > 5)
        if aggressive:
            text += " — production prefers a conservative retry"
        lines.append(f"{WARN if aggressive else OK} {text}")
    limit = spec.get("revisionHistoryLimit")
    kept = DEFAULT_HISTORY_LIMIT if limit is None else int(limit)
    note = " (default)" if limit is None else ""
    icon = WARN if kept < 3 else OK
    lines.append(f"{icon} revisionHistoryLimit {kept}{note}: {kept} revision(s) kept to roll back to")
    return lines


def _operation_lines(status: Obj) -> list[str]:
    op = status.get("operationState") or {}
    lines = []
    if op:
        revision = ((op.get("syncResult") or {}).get("revision") or "")[:12]
        at = f" at `{revision}`" if revision else ""
        lines.append(f"Last operation: *{op.get('phase', '?')}*{at}: {clip(op.get('message', '') or '-', 300)}")
        resources = (op.get("syncResult") or {}).get("resources") or []
        failing = [r for r in resources if r.get("status") == "SyncFailed" or r.get("hookPhase") in ("Failed", "Error")]
        for r in failing[:8]:
            why = clip(r.get("message", "") or r.get("status", ""), 200)
            lines.append(f"{BAD} `{r.get('kind')}/{r.get('name')}`: {why}")
        if len(failing) > 8:
            lines.append(f"… and {len(failing) - 8} more failing resources")
    for cond in (status.get("conditions") or [])[:5]:
        lines.append(f"{WARN} {cond.get('type')}: {clip(cond.get('message', ''), 300)}")
    return lines


def argocd_report(app: Obj, repo_secrets: list[Obj], *, production: bool) -> list[str]:
    """Procedure 4 for one Application: source, credentials, sync policy, history limit, last operation."""
    meta, spec, status = app.get("metadata") or {}, app.get("spec") or {}, app.get("status") or {}
    sync, health = status.get("sync") or {}, status.get("health") or {}
    op = status.get("operationState") or {}
    texts = [str(op.get("message", ""))] + [str(c.get("message", "")) for c in status.get("conditions") or []]
    cause = argocd_cause(texts)
    auth_failed = cause is not None and cause.startswith("Argo CD cannot authenticate")
    lines = [
        f"*Argo CD Application* `{meta.get('name', '?')}`: sync *{sync.get('status', 'Unknown')}*, "
        f"health *{health.get('status', 'Unknown')}*"
    ]
    if cause:
        lines.append(f":point_right: Likely cause: {cause}.")
    lines.append("*Git source*")
    sources = _sources(app)
    if not sources:
        lines.append(f"{BAD} the Application has no source")
    for source in sources:
        lines += _repo_lines(source, repo_secrets, production, auth_failed)
    lines.append("*Sync policy*")
    lines += _policy_lines(spec, production)
    operation = _operation_lines(status)
    if operation:
        lines.append("*Operation and conditions*")
        lines += operation
    return lines


def selfheal_on(app: Obj | None) -> bool:
    automated = ((app or {}).get("spec") or {}).get("syncPolicy", {}).get("automated") or {}
    return bool(automated.get("selfHeal"))


# --- what changed recently ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    revision: int
    chart: str
    status: str
    description: str
    updated: float | None
    request: str | None  # the plate-bot request id in helm's description
    user: str | None

    def recent(self, now: float, window: float = RECENT) -> bool:
        return self.updated is not None and now - self.updated <= window


def latest_change(history: list[Obj]) -> Change | None:
    """The newest revision of `helm history -o json`."""
    if not history:
        return None
    last = max(history, key=lambda r: int(r.get("revision") or 0))
    description = str(last.get("description") or "")
    match = PLATE_DESCRIPTION.match(description)
    return Change(
        revision=int(last.get("revision") or 0),
        chart=str(last.get("chart") or "?"),
        status=str(last.get("status") or "?"),
        description=description,
        updated=parse_time(last.get("updated")),
        request=match["request"] if match else None,
        user=match["user"] if match else None,
    )


def attributed(change: Change | None, records: list[Obj]) -> Change | None:
    """The change with the plate-bot request that made it, by `/plate history`'s own test (origin_of):
    helm writes plate-bot's description only when an upgrade ends, so a revision still pending (the
    deploy still waiting), or an --atomic rollback's, is known by the job running when helm stamped it."""
    if change is None or change.request is not None:
        return change
    rev = Revision(change.revision, change.status, change.chart, updated=change.updated, description=change.description)
    origin = origin_of(rev, records)
    return replace(change, request=origin.request, user=origin.user) if origin.by_plate_bot else change


def change_lines(change: Change | None, now: float, link: str | None = None) -> list[str]:
    if change is None:
        return [f"{INFO} No helm release history."]
    when = age(_iso(change.updated), now) if change.updated is not None else "?"
    line = f"Helm revision {change.revision} ({change.chart}, {change.status}) {when} ago"
    if not change.recent(now):
        return [f"{INFO} Nothing deployed in the last hour. Latest: {line}."]
    if change.request:
        by = f" by <@{change.user}>" if change.user else ""
        thread = f" — <{link}|request thread>" if link else ""
        return [f":rotating_light: {line}: plate-bot request `{change.request}`{by}{thread}"]
    return [f":rotating_light: {line}: {clip(change.description or 'no description', 160)} (not made by plate-bot)"]


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()
