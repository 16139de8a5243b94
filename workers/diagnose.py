"""`/plate diagnose <env> [pod-or-workload]` and `/plate argocd <app>`: the incident watcher's diagnosis, on
demand, into the request's thread. Read-only: no approval, no lock.

Without a target, every unhealthy workload of the environment is diagnosed (the first few in full);
with one, the named pod or workload.
"""

from __future__ import annotations

from core.text import clip
from workers import describe
from workers.errors import KubeError, StepFailed
from workers.procedures import JobContext, procedure
from workers.watcher.classify import (
    CUSTOM_KINDS,
    Reason,
    Workload,
    app_problems,
    owning_workload,
    pod_problems,
    secret_problem,
)
from workers.watcher.gather import ReplicaSets, diagnose_application, diagnose_workload, recent_change
from workers.watcher.render import change_message, diagnosis_messages

DETAILED = 3  # workloads diagnosed in full; the rest are listed
_KINDS = {
    "deployment": "Deployment",
    "deploy": "Deployment",
    "statefulset": "StatefulSet",
    "sts": "StatefulSet",
    "job": "Job",
    "pod": "Pod",
    "po": "Pod",
}


def resolve_target(ctx: JobContext, target: str) -> Workload:
    """`deploy/web`, `sts/db`, `pod/web-x` or a bare name (a pod first, then a Deployment or StatefulSet)."""
    kind_word, _, name = target.rpartition("/")
    ns, kube = ctx.env.namespace, ctx.kube
    if kind_word:
        return Workload(_KINDS[kind_word], name, ns)
    if kube.pod(ns, name) is not None:
        return Workload("Pod", name, ns)
    if any(describe.name_of(d) == name for d in kube.deployments(ns)):
        return Workload("Deployment", name, ns)
    if any(describe.name_of(s) == name for s in kube.statefulsets(ns)):
        return Workload("StatefulSet", name, ns)
    raise StepFailed(f"no pod, Deployment or StatefulSet called `{name}` in `{ns}`")


def unhealthy(ctx: JobContext, rs: ReplicaSets) -> dict[Workload, list[Reason]]:
    """Workloads with a pod not Ready or showing a problem; ExternalSecrets/SecretStores not Ready; the
    environment's Argo CD Application failing. Reasons may be empty (not Ready, cause unknown yet)."""
    env, now = ctx.env, ctx.clock()
    found: dict[Workload, list[Reason]] = {}
    for pod in ctx.kube.pods(env.namespace, ctx.app_selector):
        reasons = [r for r, _d, _s in pod_problems(pod, now)]
        if reasons or not describe.is_ready(pod):
            bucket = found.setdefault(owning_workload(pod, rs), [])
            bucket += [r for r in reasons if r not in bucket]
    for plural in ("secretstores", "externalsecrets"):
        try:
            items, _rv = ctx.kube.list_kind(plural, env.namespace)
        except KubeError:
            continue  # ESO not installed here: nothing of it can be unhealthy
        for obj in items:
            problem = secret_problem(plural, obj)
            if problem:
                found[Workload(CUSTOM_KINDS[plural], describe.name_of(obj), env.namespace)] = [problem[0]]
    if env.argocd_app:
        app = ctx.kube.custom_object("applications", env.argocd_namespace, env.argocd_app)
        problems = app_problems(app) if app else []
        if problems:
            found[Workload("Application", env.argocd_app, env.argocd_namespace)] = [r for r, _d in problems]
    return found


def _post_change(ctx: JobContext, lines: list[str], rollback_env: str | None) -> None:
    text, blocks = change_message(lines, rollback_env)
    ctx.slack.post(ctx.request.channel, text, blocks, thread_ts=ctx.request.message_ts)


@procedure(
    "diagnose",
    "diagnose",
    [("scan", "Unhealthy workloads"), ("diagnose", "Pods, events, logs and checks"), ("change", "What changed")],
)
def diagnose(ctx: JobContext) -> str:
    rs = ReplicaSets(ctx.kube)
    target = ctx.request.args.get("target")
    with ctx.step("scan") as note:
        if target:
            workloads: dict[Workload, list[Reason]] = {resolve_target(ctx, str(target)): []}
            note.text = f"`{next(iter(workloads))}`"
        else:
            workloads = unhealthy(ctx, rs)
            note.text = f"{len(workloads)} unhealthy" if workloads else "all healthy"
    with ctx.step("diagnose") as note:
        chosen = sorted(workloads)[:DETAILED]
        for workload in chosen:
            reasons = workloads[workload]
            if workload.kind == "Application":
                d = diagnose_application(ctx, workload.name, with_change=False)
            else:
                d = diagnose_workload(ctx, workload, reasons[0] if reasons else None, rs, with_change=False)
            for text, _blocks in diagnosis_messages(d):
                ctx.report.reply(text)
        rest = sorted(workloads)[DETAILED:]
        if rest:
            ctx.report.reply("Also unhealthy: " + ", ".join(f"`{w}`" for w in rest))
        note.text = f"{len(chosen)} diagnosed" if chosen else "nothing to diagnose"
    with ctx.step("change") as note:
        lines, rollback_env = recent_change(ctx)
        _post_change(ctx, lines, rollback_env if workloads else None)
        note.text = lines[0] if lines else ""
    if not workloads:
        return f"every workload in `{ctx.env.namespace}` is healthy"
    described = "; ".join(
        f"`{w}`" + (f" ({', '.join(r.label.lower() for r in workloads[w])})" if workloads[w] else "")
        for w in sorted(workloads)[:DETAILED]
    )
    return f"{len(workloads)} to look at: {described}"


@procedure("argocd", "Argo CD check", [("app", "Procedure 4: source, credentials, policy"), ("change", "What changed")])
def argocd(ctx: JobContext) -> str:
    # `app` is what requests queued before apps existed called the Argo CD application.
    args = ctx.request.args
    name = str(args.get("argocd_app") or args.get("app") or ctx.env.argocd_app or "")
    if not name:
        raise StepFailed(f"`{ctx.env.label}` names no Argo CD application")
    with ctx.step("app") as note:
        d = diagnose_application(ctx, name, with_change=False)
        for text, _blocks in diagnosis_messages(d):
            ctx.report.reply(text)
        lines = d.sections[0][1] if d.sections else []
        cause = next((line for line in lines if line.startswith(":point_right:")), None)
        headline = clip((cause or (lines[0] if lines else name)).replace("*", ""), 200)
        note.text = headline.removeprefix(":point_right: ")
    with ctx.step("change"):
        lines, rollback_env = recent_change(ctx)
        _post_change(ctx, lines, rollback_env)
    return note.text
