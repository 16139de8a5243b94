"""`/plate status <env>`: helm status plus the namespace's pods, services, ingresses and HPAs."""

from __future__ import annotations

from config.freeze import describe
from workers import observe, summary
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
        observe.record_release(ctx.store, env.name, release)
        note.text = (
            f"revision {release.get('version')}, {release.get('info', {}).get('status')}"
            if release
            else "not installed"
        )
    with ctx.step("workloads") as note:
        kube = ctx.kube
        pods = kube.pods(env.namespace)
        services = kube.services(env.namespace)
        ingresses = kube.ingresses(env.namespace)
        hpas = kube.hpas(env.namespace)
        note.text = f"{sum(summary.is_ready(p) for p in pods)}/{len(pods)} pods ready"
    with ctx.step("summary"):
        lines = summary.status_report(release, pods, services, ingresses, hpas)
        if (freeze := describe(env.freeze, ctx.clock())) is not None:
            lines.insert(1, f":snowflake: {freeze}")
        unready = summary.unready_pods(pods)
        if unready:
            events = kube.events(env.namespace)
            names = {summary.name_of(p) for p in unready}
            related = [e for e in events if (e.get("involvedObject") or {}).get("name") in names]
            excerpt = summary.event_excerpt(related, ctx.clock(), limit=6)
            if excerpt:
                lines += ["*Recent warning events of pods not ready*", *excerpt]
        ctx.report.reply("\n".join(lines))
    if unready:
        return f"{len(unready)} of {len(pods)} pods not ready in `{env.namespace}`"
    return f"all {len(pods)} pods ready in `{env.namespace}`"
