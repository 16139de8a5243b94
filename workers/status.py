"""A release's state as the cluster shows it: the `/plate status <env>` procedure (helm status plus the
namespace's pods, services, ingresses and HPAs), and the evidence a failed deploy or rollback adds to its
report (pods not Ready with their container states, and the recent warning events of the release's pods).

Events are matched by time and by pod name, not only by the pods alive now: after `--atomic` rolled a
release back, the failed pods are gone but their events (kept about an hour) still say why.
"""

from __future__ import annotations

from config.freeze import describe as freeze_note
from workers import bookkeeping, describe
from workers.errors import KubeError
from workers.procedures import JobContext, procedure


@procedure(
    "status",
    "status",
    [("helm", "helm status"), ("workloads", "Pods, services, ingresses, HPAs"), ("summary", "Summary")],
)
def status(ctx: JobContext) -> str:
    env = ctx.env
    with ctx.step("helm") as note:
        release = ctx.helm.status(env.release)
        bookkeeping.record_release(ctx.store, env.key, release)
        note.text = (
            f"revision {release.get('version')}, {release.get('info', {}).get('status')}"
            if release
            else "not installed"
        )
    with ctx.step("workloads") as note:
        kube, sel = ctx.kube, ctx.app_selector
        pods = kube.pods(env.namespace, sel)
        services = kube.services(env.namespace, sel)
        ingresses = kube.ingresses(env.namespace, sel)
        hpas = kube.hpas(env.namespace, sel)
        note.text = f"{sum(describe.is_ready(p) for p in pods)}/{len(pods)} pods ready"
    with ctx.step("summary"):
        lines = describe.status_report(release, pods, services, ingresses, hpas)
        if (freeze := freeze_note(env.freeze, ctx.clock())) is not None:
            lines.insert(1, f":snowflake: {freeze}")
        unready = describe.unready_pods(pods)
        if unready:
            events = kube.events(env.namespace)
            names = {describe.name_of(p) for p in unready}
            related = [e for e in events if (e.get("involvedObject") or {}).get("name") in names]
            excerpt = describe.event_excerpt(related, ctx.clock(), limit=6)
            if excerpt:
                lines += ["*Recent warning events of pods not ready*", *excerpt]
        ctx.report.reply("\n".join(lines))
    if unready:
        return f"{len(unready)} of {len(pods)} pods not ready in `{env.namespace}`"
    return f"all {len(pods)} pods ready in `{env.namespace}`"


EVENT_SLACK = 60.0  # seconds before the job started that still count as "this job's" events


def _ours(event: dict, release: str, names: set[str], since: float | None) -> bool:
    obj = event.get("involvedObject") or {}
    if obj.get("kind") != "Pod":
        return False
    name = str(obj.get("name", ""))
    if name in names:
        return True
    return since is not None and name.startswith(f"{release}-") and describe.event_time(event) >= since - EVENT_SLACK


def unready_pods_report(
    ctx: JobContext, *, since: float | None = None, limit_pods: int = 6, limit_events: int = 8
) -> list[str]:
    """Lines for the thread; empty when nothing is wrong. Never raises for API trouble: evidence is a best
    effort on top of a failure that is already being reported."""
    env = ctx.env
    try:
        pods = ctx.kube.pods(env.namespace, ctx.release_selector)
        unready = describe.unready_pods(pods)
        names = {describe.name_of(p) for p in unready}
        events = [e for e in ctx.kube.events(env.namespace) if _ours(e, env.release, names, since)]
    except KubeError as exc:
        return [f"(could not read pods or events: {exc.message})"]
    lines: list[str] = []
    if unready:
        lines.append(f"*Pods not Ready* ({len(unready)} of {len(pods)})")
        lines += [describe.pod_line(p) for p in unready[:limit_pods]]
        if len(unready) > limit_pods:
            lines.append(f"… and {len(unready) - limit_pods} more")
    excerpt = describe.event_excerpt(events, ctx.clock(), limit=limit_events)
    if excerpt:
        lines += ["*Pod events*", *excerpt]
    return lines
