"""PURE. Turn Kubernetes objects (API-shaped dicts) and helm JSON into short lines for the thread."""

from __future__ import annotations

import signal
from typing import Any

from core.text import age, clip, parse_time

Obj = dict[str, Any]


def name_of(obj: Obj) -> str:
    return str(obj.get("metadata", {}).get("name", "?"))


def is_ready(pod: Obj) -> bool:
    status = pod.get("status") or {}
    if status.get("phase") == "Succeeded":
        return True
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


def restarts(pod: Obj) -> int:
    return sum(int(c.get("restartCount") or 0) for c in (pod.get("status") or {}).get("containerStatuses") or [])


def container_problems(pod: Obj) -> list[str]:
    """Why a pod's containers are not running: waiting reasons, last termination, restarts."""
    out = []
    status = pod.get("status") or {}
    for cs in [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]:
        state = cs.get("state") or {}
        name = cs.get("name", "?")
        if "waiting" in state and (state["waiting"] or {}).get("reason") not in (None, "PodInitializing"):
            waiting = state["waiting"]
            message = f": {clip(waiting['message'], 120)}" if waiting.get("message") else ""
            out.append(f"{name} waiting: {waiting.get('reason')}{message}")
        elif "terminated" in state and (state["terminated"] or {}).get("exitCode", 0) != 0:
            term = state["terminated"]
            out.append(f"{name} terminated: {term.get('reason', 'Error')} (exit {term.get('exitCode')})")
        last = (cs.get("lastState") or {}).get("terminated")
        if last and last.get("reason") == "OOMKilled":
            out.append(f"{name} was OOMKilled")
    if not out and status.get("phase") == "Pending":
        for cond in status.get("conditions") or []:
            if cond.get("status") == "False" and cond.get("reason"):
                out.append(f"{cond['reason']}: {clip(cond.get('message', ''), 120)}")
    return out


def _number(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def signal_name(number: int) -> str | None:
    """`SIGKILL` for 9; None for a number this platform does not name."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return None


def last_state_line(cs: Obj, now: float, *, init: bool = False) -> str | None:
    """A container's last termination as `kubectl describe` shows it, or None when it has none:
    `↳ `web` Last State: Terminated, Reason: Error, Exit Code: 137 (SIGKILL), finished 2m ago
    (2024-05-01T10:00:00Z), Message: …`. The reason is shown as given (137 with OOMKilled is the kernel's
    kill); an exit code above 128 names its signal when the number is known. `now` is passed in."""
    term = (cs.get("lastState") or {}).get("terminated")
    if not isinstance(term, dict):
        return None
    parts = ["Last State: Terminated"]
    if term.get("reason"):
        parts.append(f"Reason: {clip(term['reason'], 60)}")
    code = _number(term.get("exitCode"))
    if code is not None:
        named = signal_name(code - 128) if code > 128 else None
        parts.append(f"Exit Code: {code}" + (f" ({named})" if named else ""))
    sig = _number(term.get("signal"))
    if sig and sig > 0 and (code is None or code - 128 != sig):  # not already named by the exit code
        named = signal_name(sig)
        parts.append(f"Signal: {sig}" + (f" ({named})" if named else ""))
    finished = term.get("finishedAt")
    if finished:
        when = parse_time(str(finished))
        parts.append(f"finished {age(str(finished), now)} ago ({finished})" if when is not None else "finished ?")
    if term.get("message"):
        parts.append(f"Message: {clip(term['message'], 160)}")
    who = f"init container `{cs.get('name', '?')}`" if init else f"`{cs.get('name', '?')}`"
    return f"↳ {who} " + ", ".join(parts)


def last_state_lines(pod: Obj, now: float) -> list[str]:
    """The last termination of each of the pod's init and app containers that has one."""
    status = pod.get("status") or {}
    lines = [last_state_line(cs, now, init=True) for cs in status.get("initContainerStatuses") or []]
    lines += [last_state_line(cs, now) for cs in status.get("containerStatuses") or []]
    return [line for line in lines if line]


def pod_line(pod: Obj) -> str:
    status = pod.get("status") or {}
    total = len(status.get("containerStatuses") or (pod.get("spec") or {}).get("containers") or [])
    ready = sum(1 for c in status.get("containerStatuses") or [] if c.get("ready"))
    icon = ":large_green_circle:" if is_ready(pod) else ":red_circle:"
    line = f"{icon} `{name_of(pod)}` {ready}/{total} {status.get('phase', '?')}, restarts {restarts(pod)}"
    problems = container_problems(pod)
    return line + ("" if not problems else " — " + "; ".join(problems))


def unready_pods(pods: list[Obj]) -> list[Obj]:
    return [p for p in pods if not is_ready(p)]


def helm_line(status: Obj | None) -> str:
    if status is None:
        return "Release not installed."
    info = status.get("info") or {}
    meta = (status.get("chart") or {}).get("metadata") or {}
    return (
        f"Release `{status.get('name')}` revision {status.get('version')}: *{info.get('status', '?')}* · "
        f"chart {meta.get('name')}-{meta.get('version')} · app {meta.get('appVersion', '?')} · "
        f"last deployed {info.get('last_deployed', '?')}"
    )


def service_line(svc: Obj) -> str:
    spec = svc.get("spec") or {}
    ports = ", ".join(f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in spec.get("ports") or [])
    return f"`{name_of(svc)}` {spec.get('type', 'ClusterIP')} {spec.get('clusterIP', '')} {ports}".strip()


def ingress_line(ing: Obj) -> str:
    hosts = [r.get("host", "*") for r in (ing.get("spec") or {}).get("rules") or []]
    lb = [
        i.get("ip") or i.get("hostname")
        for i in ((ing.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    ]
    return f"`{name_of(ing)}` hosts {', '.join(hosts) or '-'}" + (f" → {', '.join(filter(None, lb))}" if lb else "")


def hpa_line(hpa: Obj) -> str:
    spec, status = hpa.get("spec") or {}, hpa.get("status") or {}
    return (
        f"`{name_of(hpa)}` {status.get('currentReplicas', '?')} replicas "
        f"(min {spec.get('minReplicas', 1)}, max {spec.get('maxReplicas', '?')}, "
        f"desired {status.get('desiredReplicas', '?')})"
    )


def status_report(
    helm_status: Obj | None, pods: list[Obj], services: list[Obj], ingresses: list[Obj], hpas: list[Obj]
) -> list[str]:
    """The `/plate status` reply: release, then pods (problems first), services, ingresses, HPAs."""
    ready = sum(1 for p in pods if is_ready(p))
    lines = [helm_line(helm_status), f"*Pods* {ready}/{len(pods)} ready"]
    ordered = sorted(pods, key=lambda p: (is_ready(p), name_of(p)))
    lines += [pod_line(p) for p in ordered[:15]]
    if len(pods) > 15:
        lines.append(f"… and {len(pods) - 15} more pods")
    if services:
        lines.append("*Services* " + " · ".join(service_line(s) for s in services[:8]))
    if ingresses:
        lines.append("*Ingresses* " + " · ".join(ingress_line(i) for i in ingresses[:8]))
    if hpas:
        lines.append("*Autoscalers* " + " · ".join(hpa_line(h) for h in hpas[:8]))
    return lines


def event_time(event: Obj) -> float:
    for key in ("lastTimestamp", "eventTime", "firstTimestamp"):
        ts = parse_time(event.get(key))
        if ts is not None:
            return ts
    return parse_time((event.get("metadata") or {}).get("creationTimestamp")) or 0.0


def event_excerpt(events: list[Obj], now: float, limit: int = 8, warnings_only: bool = True) -> list[str]:
    """The last (warning) events: reason, object, count, age, message. Newest first."""
    chosen = [e for e in events if not warnings_only or e.get("type") == "Warning"]
    chosen.sort(key=event_time, reverse=True)
    lines = []
    for event in chosen[:limit]:
        obj = event.get("involvedObject") or {}
        count = int(event.get("count") or (event.get("series") or {}).get("count") or 1)
        when = age(event.get("lastTimestamp") or event.get("eventTime") or event.get("firstTimestamp"), now)
        times = f" ×{count}" if count > 1 else ""
        lines.append(
            f"`{event.get('reason', '?')}`{times} {str(obj.get('kind', '')).lower()}/{obj.get('name', '?')} "
            f"({when} ago): {clip(event.get('message', ''))}"
        )
    if len(chosen) > limit:
        lines.append(f"… {len(chosen) - limit} older events not shown")
    return lines


_HELM_CAUSES = (
    ("another operation", "another helm operation is still in progress on this release"),
    ("has no deployed releases", "the release has no deployed revision to upgrade from"),
    ("unable to build kubernetes objects", "the chart renders objects the cluster does not accept"),
    ("forbidden", "the cluster refused: plate-bot's service account lacks a permission"),
    ("connection refused", "helm could not reach the Kubernetes API"),
    ("no such host", "helm could not reach the Kubernetes API"),
    ("context deadline exceeded", "the new version did not become ready within helm's timeout"),
    ("context canceled", "the job was stopped while helm was running"),
)


def helm_cause(stderr: str) -> str:
    """helm's error in plain words (the raw stderr goes into the thread beside it)."""
    low = stderr.lower()
    causes = [plain for needle, plain in _HELM_CAUSES if needle in low]
    if "has been rolled back" in low:
        causes.append("`--atomic` rolled the release back to the previous revision")
    elif "has been uninstalled" in low:
        causes.append("`--atomic` uninstalled the failed first install")
    if causes:
        return "; ".join(dict.fromkeys(causes))
    first = next((ln.strip() for ln in stderr.splitlines() if ln.strip()), "helm gave no reason")
    return clip(first.removeprefix("Error: "), 200)
