"""What a failure looks like from the cluster: pods not Ready with their container states, and the
recent warning events of the release's pods. Shared by status, deploy and rollback.

Events are matched by time and by pod name, not only by the pods alive now: after `--atomic` rolled a
release back, the failed pods are gone but their events (kept about an hour) still say why.
"""

from __future__ import annotations

from workers import summary
from workers.errors import KubeError
from workers.procedures import JobContext

EVENT_SLACK = 60.0  # seconds before the job started that still count as "this job's" events


def _ours(event: dict, release: str, names: set[str], since: float | None) -> bool:
    obj = event.get("involvedObject") or {}
    if obj.get("kind") != "Pod":
        return False
    name = str(obj.get("name", ""))
    if name in names:
        return True
    return since is not None and name.startswith(f"{release}-") and summary.event_time(event) >= since - EVENT_SLACK


def unready_pods_report(
    ctx: JobContext, *, since: float | None = None, limit_pods: int = 6, limit_events: int = 8
) -> list[str]:
    """Lines for the thread; empty when nothing is wrong. Never raises for API trouble: evidence is a best
    effort on top of a failure that is already being reported."""
    env = ctx.env
    try:
        pods = ctx.kube.pods(env.namespace, ctx.release_selector)
        unready = summary.unready_pods(pods)
        names = {summary.name_of(p) for p in unready}
        events = [e for e in ctx.kube.events(env.namespace) if _ours(e, env.release, names, since)]
    except KubeError as exc:
        return [f"(could not read pods or events: {exc.message})"]
    lines: list[str] = []
    if unready:
        lines.append(f"*Pods not Ready* ({len(unready)} of {len(pods)})")
        lines += [summary.pod_line(p) for p in unready[:limit_pods]]
        if len(unready) > limit_pods:
            lines.append(f"… and {len(unready) - limit_pods} more")
    excerpt = summary.event_excerpt(events, ctx.clock(), limit=limit_events)
    if excerpt:
        lines += ["*Pod events*", *excerpt]
    return lines
