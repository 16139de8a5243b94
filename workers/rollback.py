"""The seed's `deploy-prod.sh rollback [revision]` as jobs: `rollback-plan` before approval, `rollback`
after it.

The check reads helm's history: the target must exist, be kept by helm and not be the live revision;
without a revision it is the last successfully deployed one before the live one. The card then shows
live → target (chart, app version, image, when, who deployed the target, whether plate-bot backed it up)
and, when the environment's Argo CD Application syncs automatically, offers to pause it: otherwise Argo
CD puts git's version straight back. The approval binds to a digest of (live revision, target revision,
target manifest); the job recomputes it and refuses if the release moved meanwhile.

The card also shows what the target's pods will pull, asked of the registries the environment can read
(workers.revisions, "the target's images now"): a revision deployed by digest runs that digest (the card
says if its tag moved or went since); a tag-only revision pulls what the tag points at now, and the approval
binds to that digest (the job refuses if the tag moved after the approval). A pinned digest the registry no
longer has refuses the rollback before anyone is asked; everything else is a warning.

The job reuses the deploy's steps: cluster check, approval (digest) check, backup, rollout verification,
status summary and the failure report (helm's stderr, pods not Ready, their events).
"""

from __future__ import annotations

import dataclasses
import json

from core.audit import Event
from core.errors import Conflict
from core.requests import PAUSE_AUTOSYNC
from core.slack import SlackError
from workers.deploy import (
    BACKUP_STEP,
    CLUSTER_STEP,
    FINAL_STEPS,
    _close_request,
    _refresh_card,
    backup_step,
    check_approved,
    finish_change,
    helm_failure,
    verify_cluster,
)
from workers.errors import HelmError, KubeError, StepFailed
from workers.procedures import JobContext, procedure
from workers.revisions import (
    HISTORY_MAX,
    ArgoSync,
    InvalidTarget,
    Revision,
    RollbackPlan,
    TargetImage,
    choose_target,
    image_of,
    image_queries,
    image_tag,
    images_of,
    origin_of,
    parse_history,
    rollback_digest,
    target_image_lines,
    target_image_pins,
    target_images,
    target_images_blocking,
    target_images_moved,
    workloads_of,
)

CHECK_STEPS = [
    ("history", "helm history and the target revision"),
    ("details", "Both revisions, plate-bot's records and backups"),
    ("images", "The target's images in the registry"),
    ("argocd", "Argo CD auto-sync"),
]
ROLLBACK_STEPS = [
    CLUSTER_STEP,
    ("target", "Target revision and approval check"),
    BACKUP_STEP,
    ("argocd", "Argo CD auto-sync"),
    ("rollback", "helm rollback --wait"),
    *FINAL_STEPS,
]


def argo_sync(ctx: JobContext) -> ArgoSync | None:
    env = ctx.env
    if not env.argocd_app:
        return None
    try:
        app = ctx.kube.argocd_application(env.argocd_namespace, env.argocd_app)
    except KubeError as exc:
        return ArgoSync(env.argocd_app, env.argocd_namespace, error=exc.message)
    if app is None:
        return ArgoSync(env.argocd_app, env.argocd_namespace, found=False)
    automated = ((app.get("spec") or {}).get("syncPolicy") or {}).get("automated")
    return ArgoSync(env.argocd_app, env.argocd_namespace, automated=automated)


def find_target(ctx: JobContext) -> tuple[Revision, Revision]:
    """(live, target) from helm history; InvalidTarget when the rollback cannot go where it was asked to."""
    revs = parse_history(ctx.helm.history(ctx.env.release, HISTORY_MAX))
    return choose_target(revs, ctx.request.args.get("revision"))


def describe(ctx: JobContext, live: Revision, target: Revision, argo: ArgoSync | None) -> RollbackPlan:
    """What both revisions run, who made the target, whether plate-bot backed it up, and the digest."""
    env = ctx.env
    live_manifest = ctx.helm.get_manifest(env.release, live.number)
    target_manifest = ctx.helm.get_manifest(env.release, target.number)
    return RollbackPlan(
        release=env.release,
        live=live,
        target=target,
        live_image=image_of(live_manifest),
        target_image=image_of(target_manifest),
        target_origin=origin_of(target, ctx.store.changes(env.key)),
        backup=target.number in ctx.store.backup_revisions(env.key),
        workloads=workloads_of(target_manifest),
        digest=rollback_digest(live, target, target_manifest),
        argo=argo,
        images=images_of(target_manifest),
    )


def resolve_target_images(ctx: JobContext, plan: RollbackPlan) -> tuple[list[TargetImage], RollbackPlan]:
    """Ask the registries about the target's images (recorded digests, and where their tags point now);
    the plan comes back with the card's image lines."""
    queries = image_queries(plan.images)
    answers = dict(zip(queries, ctx.resolve_images(queries), strict=True))
    targets = target_images(plan.images, answers)
    lines = target_image_lines(targets, plan.target.number, ctx.env.name)
    return targets, dataclasses.replace(plan, image_lines=lines)


def _images_note(targets: list[TargetImage]) -> str:
    if not targets:
        return "no container images in the target's manifest"
    resolved = sum(1 for t in targets if t.pulled.digest)
    pinned = sum(1 for t in targets if t.pinned)
    return f"{resolved} of {len(targets)} image(s) found in the registry, {pinned} pinned by digest"


def _tell_requester(ctx: JobContext, text: str) -> None:
    req = ctx.request
    try:
        ctx.slack.ephemeral(req.channel, req.requester, text)
    except SlackError:
        ctx.report.reply(text)  # not in the channel any more: the thread still says it


class _Refused(StepFailed):
    """The target is invalid: the request is closed with this reason, not as a failed check."""


@procedure("rollback-plan", "check rollback", CHECK_STEPS)
def rollback_plan(ctx: JobContext) -> str:
    """Before approval: validate the target against helm history, then put live → target and the buttons
    on the card, or close the request telling the requester why and what they could pick instead."""
    req = ctx.request
    try:
        with ctx.step("history") as note:
            try:
                live, target = find_target(ctx)
            except InvalidTarget as exc:
                _close_request(ctx, exc.reason)
                _tell_requester(ctx, exc.text(ctx.env.name))
                raise _Refused(exc.reason) from None
            note.text = f"revision {live.number} (live) → {target.number}"
        with ctx.step("details") as note:
            argo = argo_sync(ctx)
            result = describe(ctx, live, target, argo)
            note.text = f"target image `{image_tag(result.target_image)}`, " + (
                "plate-bot backup exists" if result.backup else "no plate-bot backup"
            )
        with ctx.step("images") as note:
            targets, result = resolve_target_images(ctx, result)
            reason = target_images_blocking(targets, target.number)
            if reason:
                _close_request(ctx, reason)
                _tell_requester(ctx, f":warning: I cannot roll back `{ctx.env.name}`: {reason}. Nothing was run.")
                raise _Refused(reason)
            note.text = _images_note(targets)
    except _Refused:
        raise
    except StepFailed as exc:
        _close_request(ctx, f"the check failed: {exc.message}")
        raise
    if argo is None:
        ctx.report.skip("argocd", "no Argo CD Application configured")
    else:
        with ctx.step("argocd") as note:
            note.text = "auto-sync is on: offering to pause it" if argo.active else "nothing to pause"
    pins, summary = target_image_pins(targets), result.summary()
    try:
        ctx.audit.transition(
            *ctx.store.transition(req.id, lambda r: r.with_plan(result.digest, summary, result.offers, images=pins))
        )
    except Conflict:
        return "the request was closed while checking"
    _refresh_card(ctx)
    return f"rollback to revision {target.number} awaits approval"


def _argocd_step(ctx: JobContext, *, pause: bool) -> str:
    """Pause auto-sync if an approver chose it (re-reading the Application now); otherwise say what it does."""
    argo = argo_sync(ctx)
    if argo is None:
        return "no Argo CD Application configured"
    if pause and argo.error:
        # The approver wanted auto-sync paused first: rolling back without it would be undone at once.
        raise StepFailed(f"cannot pause auto-sync as approved: {argo.error}; nothing was rolled back")
    if not argo.active:
        return argo.lines()[0].removeprefix(":warning: ")
    if not pause:
        why = "as approved" if ctx.request.needs_approval() else "pausing is offered on approval cards only"
        ctx.report.reply(
            f":warning: Argo CD Application `{argo.app}` still syncs automatically (not paused, {why}): "
            "it may redeploy git's version over this rollback."
        )
        return "auto-sync left on"
    before = json.dumps(argo.automated, sort_keys=True)
    ctx.kube.pause_auto_sync(argo.namespace, argo.app, argo.automated or {})
    restore = json.dumps({"spec": {"syncPolicy": {"automated": argo.automated}}}, sort_keys=True)
    ctx.report.reply(
        f":double_vertical_bar: Paused auto-sync of Argo CD Application `{argo.app}` before the rollback, as "
        f"approved. Its previous `spec.syncPolicy.automated` was:\n```{before}```\n"
        f"To turn auto-sync back on once git has the fix:\n"
        f"```kubectl -n {argo.namespace} patch application {argo.app} --type merge -p '{restore}'```"
    )
    ctx.audit.record(Event.AUTOSYNC_PAUSED, request=ctx.request, user="plate-bot", detail=f"{argo.app}: {before}")
    return "auto-sync paused (previous setting in the thread)"


@procedure("rollback", "rollback", ROLLBACK_STEPS, mutating=True)
def rollback(ctx: JobContext) -> str:
    env, req = ctx.env, ctx.request
    dry = bool(req.args.get("dry_run"))
    with ctx.step("cluster") as note:
        note.text = verify_cluster(ctx)
    with ctx.step("target") as note:
        try:
            live, target = find_target(ctx)
        except InvalidTarget as exc:
            _tell_requester(ctx, exc.text(env.name))
            raise StepFailed(exc.reason, [exc.text(env.name)]) from None
        plan = describe(ctx, live, target, None)  # Argo CD is read again in its own step
        refusal = "the release changed since the approval; request the rollback again"
        check_approved(ctx, "check", plan.digest, f"now `{plan.short_digest}` (live {plan.live.number})", refusal)
        # The registry again: a pinned digest deleted, or a tag-only image's tag moved, since the approval.
        targets, plan = resolve_target_images(ctx, plan)
        reason = target_images_blocking(targets, plan.target.number) or target_images_moved(req.images, targets)
        if reason:
            raise StepFailed(reason)
        note.text = f"revision {plan.live.number} → {plan.target.number}" + (", as approved" if req.plan_digest else "")
        note.text += f" · {_images_note(targets)}" if targets else ""
    if not req.plan_digest:
        ctx.report.reply("\n".join(plan.summary()))
    backup_step(ctx, dry=dry)
    if dry:
        ctx.report.skip("argocd", "dry run")
    else:
        with ctx.step("argocd") as note:
            note.text = _argocd_step(ctx, pause=PAUSE_AUTOSYNC in req.chosen)
    with ctx.step("rollback") as note:
        try:
            ctx.helm.rollback(env.release, plan.target.number, timeout=env.helm_timeout, dry_run=dry)
        except HelmError as exc:
            raise helm_failure(ctx, exc, "helm rollback") from None
        note.text = f"dry run of the rollback to {plan.target.number} accepted" if dry else "done"
    now = finish_change(ctx, plan.workloads, dry=dry)
    if now is None:
        return f"dry run: helm would roll `{env.release}` back to revision {plan.target.number}; nothing was changed"
    return f"rolled back to revision {plan.target.number} (now revision {now}, image `{image_tag(plan.target_image)}`)"
