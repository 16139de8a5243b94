"""What a failure looks like from the cluster: pods not Ready with their container states, and the
last warning events of those pods. Shared by status, deploy and rollback."""

from __future__ import annotations

from workers import summary
from workers.errors import KubeError
from workers.procedures import JobContext


def unready_pods_report(ctx: JobContext, *, limit_pods: int = 6, limit_events: int = 8) -> list[str]:
    """Lines for the thread; empty when every pod of the release is Ready. Never raises for API trouble:
    evidence is a best effort on top of a failure that is already being reported."""
    try:
        pods = ctx.kube.pods(ctx.env.namespace, ctx.release_selector)
        unready = summary.unready_pods(pods)
        if not unready:
            return []
        names = {summary.name_of(p) for p in unready}
        events = [
            e for e in ctx.kube.events(ctx.env.namespace) if (e.get("involvedObject") or {}).get("name") in names
        ]
    except KubeError as exc:
        return [f"(could not read pods or events: {exc.message})"]
    lines = [f"*Pods not Ready* ({len(unready)} of {len(pods)})"]
    lines += [summary.pod_line(p) for p in unready[:limit_pods]]
    if len(unready) > limit_pods:
        lines.append(f"… and {len(unready) - limit_pods} more")
    excerpt = summary.event_excerpt(events, ctx.clock(), limit=limit_events)
    if excerpt:
        lines += ["*Pod events*", *excerpt]
    return lines
