"""The seed's production deploy procedure (deploy-prod.sh) as jobs: `plan` before approval, `deploy`
after it. Each step of the script is a checklist line in the thread.

The approval binds to the plan's digest; the deploy renders again and refuses to run if the change is
no longer the one approved.

The steps a rollback shares with the deploy live here too: cluster check, approval (digest) check,
backup, rollout verification, status summary and helm's failure report.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from core import messages
from core.backupkeys import BackupKeyError, backup_policy
from core.errors import Conflict
from workers import bookkeeping, describe
from workers.errors import HelmError, KubeError, StepFailed
from workers.images import (
    Resolution,
    blocking,
    card_lines,
    images_in,
    parse,
    pins,
    policy_violations,
    repush_refusal,
    repushed,
    warnings,
)
from workers.kube import context_cluster
from workers.plan import Plan, compute_plan, effective_values, parse_stream
from workers.procedures import JobContext, procedure
from workers.safety import check_cluster
from workers.status import unready_pods_report

PLAN_STEPS = [
    ("chart", "Chart.yaml and helm lint"),
    ("render", "helm template and the live manifest"),
    ("images", "Image tags resolved to digests"),
    ("diff", "Diff and digest"),
]


# --- steps shared with rollback ----------------------------------------------------------------------

# A change (deploy or rollback) checks the cluster, checks the approval, backs the release up, runs helm,
# then verifies the rollout and summarises the release. These are the steps both name alike.
CLUSTER_STEP = ("cluster", "Cluster check")
BACKUP_STEP = ("backup", "Backup of the current release")
FINAL_STEPS = [("rollout", "Rollout verification"), ("summary", "Status summary")]


def verify_cluster(ctx: JobContext) -> str:
    env = ctx.env
    cluster_name = None
    found = True
    if env.kube_context:
        cluster_name = context_cluster(env.kubeconfig_or(ctx.settings.kubeconfig), env.kube_context)
        found = cluster_name is not None
    uid = None
    if env.cluster_uid and found:
        ns = ctx.kube.namespace("kube-system")
        uid = (ns or {}).get("metadata", {}).get("uid")
    return check_cluster(env, cluster_name=cluster_name or None, context_found=found, cluster_uid=uid)


def check_approved(ctx: JobContext, what: str, digest: str, now: str, refusal: str) -> None:
    """The approval binds to the digest of the `what` (plan, check) approved: refuse when the digest
    computed now differs, saying which was approved and what there is `now`."""
    req = ctx.request
    if req.plan_digest and digest != req.plan_digest:
        raise StepFailed(refusal, [f"approved {what} `{req.plan_digest[:12]}`, {now}"])


def backup_step(ctx: JobContext, *, dry: bool) -> None:
    with ctx.step("backup") as note:
        note.text = "dry run: no backup needed" if dry else backup_release(ctx)


def backup_release(ctx: JobContext) -> str:
    """`helm get values --all` and `helm get manifest` of the live release, kept in Redis by revision,
    encrypted with PLATE_BACKUP_KEY (core.backupkeys), in plaintext only where that was chosen, or not
    at all with PLATE_BACKUPS=off."""
    env = ctx.env
    try:
        policy = backup_policy(ctx.settings)
    except BackupKeyError as exc:
        raise StepFailed(f"no backup taken, nothing changed: {exc}") from None
    if policy.mode == "off":
        return "backups are off (PLATE_BACKUPS=off): nothing stored"
    live = ctx.helm.status(env.release)
    if live is None:
        return "first install: nothing to back up"
    revision = int(live["version"])
    values = ctx.helm.get_values(env.release)
    manifest = ctx.helm.get_manifest(env.release)
    meta = {
        "chart": _chart_of(live),
        "app_version": (live.get("chart") or {}).get("metadata", {}).get("appVersion"),
        "request": ctx.request.id,
        "status": (live.get("info") or {}).get("status"),
    }
    sealed = policy.mode == "encrypted"
    ctx.store.save_backup(
        env.key, revision, values=values, manifest=manifest, meta=meta, seal=policy.seal if sealed else None
    )
    how = "encrypted" if sealed else "in plaintext (PLATE_BACKUPS=plaintext or embedded Redis)"
    return f"revision {revision} saved {how} ({len(manifest.splitlines())} manifest lines)"


def verify_rollout(ctx: JobContext, workloads: tuple[str, ...]) -> str:
    """Every Deployment/StatefulSet of the release at its new generation with updated == ready ==
    desired, then every pod of the release Ready. helm --wait already waited: this confirms it through
    the API, within the environment's `rollout_timeout`."""
    env = ctx.env
    timeout = env.rollout_timeout
    deadline = time.monotonic() + timeout
    while True:
        pending = _rollout_pending(ctx, workloads)
        if not pending:
            pods = ctx.kube.pods(env.namespace, ctx.release_selector)
            unready = describe.unready_pods(pods)
            if not unready:
                return f"{len(workloads)} workload(s) rolled out, {len(pods)} pods Ready"
            pending = [f"pod {describe.name_of(p)} not Ready" for p in unready]
        if time.monotonic() >= deadline:
            raise StepFailed(
                f"rollout not complete after {int(timeout)}s: {'; '.join(pending[:3])}",
                unready_pods_report(ctx, since=ctx.started),
            )
        time.sleep(ctx.settings.plate_rollout_poll)


def _rollout_pending(ctx: JobContext, workloads: tuple[str, ...]) -> list[str]:
    env = ctx.env
    live = {f"Deployment/{describe.name_of(d)}": d for d in ctx.kube.deployments(env.namespace)}
    if any(w.startswith("StatefulSet/") for w in workloads):
        live.update({f"StatefulSet/{describe.name_of(s)}": s for s in ctx.kube.statefulsets(env.namespace)})
    pending = []
    for ref in workloads:
        obj = live.get(ref)
        if obj is None:
            pending.append(f"{ref} not found")
            continue
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        generation = int((obj.get("metadata") or {}).get("generation") or 1)
        desired = int(spec.get("replicas", status.get("replicas", 1)) or 0)
        observed = int(status.get("observedGeneration") or 0)
        updated, ready = int(status.get("updatedReplicas") or 0), int(status.get("readyReplicas") or 0)
        if observed < generation or not updated == ready == desired:
            pending.append(f"{ref} {ready}/{desired} ready, {updated} updated (generation {observed}/{generation})")
    return pending


def finish_change(ctx: JobContext, workloads: tuple[str, ...], *, dry: bool) -> str | None:
    """The last two steps of a change (deploy or rollback): skipped after a dry run (None); otherwise
    rollout verification, then the status summary as a reply. Returns the revision now live."""
    if dry:
        ctx.report.skip("rollout", "dry run")
        ctx.report.skip("summary", "dry run")
        return None
    with ctx.step("rollout") as note:
        try:
            note.text = verify_rollout(ctx, workloads)
        except KubeError as exc:
            raise StepFailed(f"cannot verify the rollout: {exc.message}") from None
    with ctx.step("summary"):
        release, lines = status_summary(ctx)
        ctx.report.reply("\n".join(lines))
    return str((release or {}).get("version", "?"))


def status_summary(ctx: JobContext) -> tuple[dict[str, Any] | None, list[str]]:
    env = ctx.env
    release = ctx.helm.status(env.release)
    bookkeeping.record_release(ctx.store, env.key, release)
    sel = ctx.release_selector
    kube = ctx.kube
    lines = describe.status_report(
        release,
        kube.pods(env.namespace, sel),
        kube.services(env.namespace, sel),
        kube.ingresses(env.namespace, sel),
        kube.hpas(env.namespace, sel),
    )
    return release, lines


def helm_failure(ctx: JobContext, exc: HelmError, action: str) -> StepFailed:
    """Plain words for a failed upgrade/rollback, helm's stderr tail, the atomic rollback if any, pods."""
    env = ctx.env
    cause = describe.helm_cause(exc.stderr) if exc.stderr else exc.message
    details = [f":x: *{action} failed*: {cause}"]
    if exc.stderr:
        details.append(f"helm said:\n```{exc.stderr}```")
    try:
        history = ctx.helm.history(env.release, 3)
    except HelmError:
        history = []
    with contextlib.suppress(HelmError):  # if unreadable, Home keeps the last state it knew
        bookkeeping.record_release(ctx.store, env.key, ctx.helm.status(env.release))  # what is live now
    if history and "rolled back" in exc.stderr:
        live = history[-1]
        details.append(
            f":leftwards_arrow_with_hook: `--atomic` rolled the release back: revision {live.get('revision')} "
            f"({live.get('chart')}, {live.get('status')}) is live now."
        )
    details += unready_pods_report(ctx, since=ctx.started)
    return StepFailed(f"{action} failed: {cause}", details)


# --- planning ----------------------------------------------------------------------------------------


def _chart_of(status: dict[str, Any]) -> str:
    meta = (status.get("chart") or {}).get("metadata") or {}
    return f"{meta.get('name')}-{meta.get('version')}"


def _chart_yaml(chart: Path) -> dict[str, Any]:
    path = chart / "Chart.yaml"
    if not path.is_file():
        raise StepFailed(f"`Chart.yaml` not found in the chart directory `{chart.name}`")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError:
        raise StepFailed("`Chart.yaml` is not valid YAML") from None
    if not isinstance(data, dict) or not data.get("name") or not data.get("version"):
        raise StepFailed("`Chart.yaml` has no name or version")
    return data


def _values_layers(ctx: JobContext) -> list[dict[str, Any]]:
    layers = []
    defaults = ctx.chart.path / "values.yaml"
    for path in [defaults, *ctx.env.values]:
        if path.is_file():
            layers.append(yaml.safe_load(path.read_text()) or {})
        elif path != defaults:
            raise StepFailed(f"values file `{path.name}` not found")
    return layers


def validate_chart(ctx: JobContext) -> str:
    chart = ctx.chart
    meta = _chart_yaml(chart.path)
    ctx.helm.lint(chart.path, ctx.env.values, ctx.request.args.get("image_tag"))
    pinned = f" ({chart.describe()})" if chart.pin else ""
    return f"{meta['name']}-{meta['version']} lints clean{pinned}"


@dataclass(frozen=True)
class Rendered:
    plan: Plan
    images: list[Resolution]  # every image of the manifests, resolved where a registry could say
    image_digest: str | None  # set when the chart takes `image.digest`: the deploy runs by digest


def _digest_for(values: dict[str, Any], images: list[Resolution], app_version: object) -> str | None:
    """The chart's main image's digest, when its values have an `image.digest` key to put it in (its tag:
    `image.tag`, else the chart's appVersion, as charts made by `helm create` default it)."""
    image = values.get("image")
    if not isinstance(image, dict) or "digest" not in image or not image.get("repository"):
        return None
    wanted = parse(f"{image['repository']}:{image.get('tag') or app_version or 'latest'}")
    return next((r.digest for r in images if (r.image.name, r.image.tag) == (wanted.name, wanted.tag)), None)


def render_plan(ctx: JobContext) -> Rendered:
    """Render, resolve every image to its digest (and render again by digest where the chart can), diff."""
    env, tag, chart = ctx.env, ctx.request.args.get("image_tag"), ctx.chart
    meta = _chart_yaml(chart.path)
    rendered = ctx.helm.template(env.release, chart.path, env.values, tag)
    resolved = ctx.resolve_images(images_in(parse_stream(rendered)))
    values = effective_values(_values_layers(ctx), tag)
    image_digest = _digest_for(values, resolved, meta.get("appVersion"))
    if image_digest is not None:
        rendered = ctx.helm.template(env.release, chart.path, env.values, tag, image_digest)
        values = effective_values([values, {"image": {"digest": image_digest}}], None)
    live = ctx.helm.get_manifest(env.release) if ctx.helm.status(env.release) is not None else None
    name = f"{meta['name']}-{meta['version']}"
    lines = (*card_lines(resolved, ctx.clock()), *warnings(resolved))
    result = compute_plan(rendered, live, name, values, chart.pin, chart.describe(), pins(resolved), lines)
    return Rendered(result, resolved, image_digest)


IMAGE_POLICY = "image policy: "  # the note that asked one more approval for it


def check_images(ctx: JobContext, rendered: Rendered, *, planning: bool) -> tuple[str, tuple[str, ...]]:
    """A tag that does not exist, or a registry that refused plate-bot: fail now, before anyone is asked
    (or, at run time, before helm waits out its timeout); an image re-pushed since approval: refuse. Then
    the image policy: refuse, or (before approval) the note that asks one more approval. Returns the step's
    text and those notes."""
    env, req = ctx.env, ctx.request
    reason = blocking(rendered.images, env.name)
    if reason:
        raise StepFailed(reason)
    if req.images:
        changes = repushed(req.images, pins(rendered.images))
        if changes:
            raise StepFailed(repush_refusal(changes))
    found = policy_violations(env.image_policy, rendered.images)
    extra: tuple[str, ...] = ()
    if found:
        listed = "; ".join(found)
        if env.image_policy.on_violation == "refuse":
            raise StepFailed(f"the image policy refuses this deploy: {listed}")
        if planning:  # before approval: ask for one more
            extra = (f"{IMAGE_POLICY}{listed} (one more approval needed)",)
        elif not any(note.startswith(IMAGE_POLICY) for note in req.notes):
            raise StepFailed(f"the image policy needs one more approval than this request had: {listed}")
    resolved = len(pins(rendered.images))
    by_digest = " · deploying by digest" if rendered.image_digest else ""
    return f"{resolved} of {len(rendered.images)} image(s) resolved{by_digest}", extra


@procedure("plan", "plan for deploy", PLAN_STEPS)
def plan(ctx: JobContext) -> str:
    """Before approval: validate, render, diff; then put the plan on the card (or close it: no change)."""
    req = ctx.request
    try:
        with ctx.step("chart") as note:
            note.text = validate_chart(ctx)
        with ctx.step("render") as note:
            rendered = render_plan(ctx)
            result = rendered.plan
            note.text = "first install" if result.first_install else "live manifest read"
        with ctx.step("images") as note:
            note.text, extra = check_images(ctx, rendered, planning=True)
        with ctx.step("diff") as note:
            note.text = f"digest `{result.short_digest}`"
    except StepFailed as exc:
        _close_request(ctx, f"the plan failed: {exc.message}")
        raise
    if result.is_empty:
        _close_request(ctx, "nothing would change: the rendered chart equals the live release")
        return "nothing would change; no approval needed"
    ctx.report.reply("*Diff* (rendered vs live)\n" + result.diff_text())
    try:
        images = pins(rendered.images)
        plan_of = lambda r: r.with_plan(result.digest, result.summary(), images=images, extra=extra)  # noqa: E731
        ctx.audit.transition(*ctx.store.transition(req.id, plan_of))
    except Conflict:
        return "the request was closed while planning"
    _refresh_card(ctx)
    return " · ".join(result.summary()[:1])


def _close_request(ctx: JobContext, reason: str) -> None:
    """Close a pending request without asking anyone (shared with the rollback check)."""
    try:
        ctx.audit.transition(*ctx.store.transition(ctx.request.id, lambda r: r.with_nothing_to_do(ctx.clock(), reason)))
    except Conflict:
        return
    _refresh_card(ctx)


def _refresh_card(ctx: JobContext) -> None:
    request = ctx.store.get(ctx.request.id)
    if request is None or request.message_ts is None:
        return
    text, blocks = messages.card(request, ctx.env)
    ctx.slack.update(request.channel, request.message_ts, text, blocks)


# --- deploy ------------------------------------------------------------------------------------------


DEPLOY_STEPS = [
    CLUSTER_STEP,
    ("chart", "Chart validation, plan and digest check"),
    BACKUP_STEP,
    ("upgrade", "helm upgrade --install --atomic --wait"),
    *FINAL_STEPS,
]


@procedure("deploy", "deploy", DEPLOY_STEPS, mutating=True)
def deploy(ctx: JobContext) -> str:
    env, req = ctx.env, ctx.request
    tag, dry = req.args.get("image_tag"), bool(req.args.get("dry_run"))
    with ctx.step("cluster") as note:
        note.text = verify_cluster(ctx)
    with ctx.step("chart") as note:
        validate_chart(ctx)
        rendered = render_plan(ctx)
        result = rendered.plan
        images, _ = check_images(ctx, rendered, planning=False)
        refusal = "the change approved is no longer what would be deployed; request again"
        check_approved(ctx, "plan", result.digest, f"the chart now renders `{result.short_digest}`", refusal)
        note.text = f"plan `{result.short_digest}`" + (" matches the approval" if req.plan_digest else "")
        note.text += f" · {images}" if rendered.images else ""
    if not req.plan_digest:
        ctx.report.reply("\n".join(result.summary()) + "\n" + result.diff_text())
    if result.is_empty and not dry:
        for key in ("backup", "upgrade", "rollout", "summary"):
            ctx.report.skip(key)
        return "nothing would change; helm was not run"
    backup_step(ctx, dry=dry)
    with ctx.step("upgrade") as note:
        try:
            out = ctx.helm.upgrade(
                env.release,
                ctx.chart.path,
                env.values,
                image_tag=tag,
                image_digest=rendered.image_digest,
                timeout=env.helm_timeout,
                dry_run=dry,
                description=f"plate-bot {req.id} by {req.requester}",
            )
        except HelmError as exc:
            raise helm_failure(ctx, exc, "helm upgrade") from None
        note.text = "dry run accepted by the API server" if dry else _revision_line(out.stdout)
    revision = finish_change(ctx, result.workloads, dry=dry)
    if revision is None:
        return f"dry run: {len(result.changes)} resource(s) would change; nothing was changed"
    return f"revision {revision} deployed ({result.image_after or result.chart})"


def _revision_line(stdout: str) -> str:
    for line in stdout.splitlines():
        if line.startswith("REVISION:"):
            return "revision " + line.split(":", 1)[1].strip()
    return "done"
