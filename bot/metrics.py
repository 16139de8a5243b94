"""Prometheus metrics for serve, worker and watch (each process exposes its own /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_ACK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_JOB_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.commands = Counter(
            "plate_commands_total", "Slash commands by verb and outcome", ["verb", "outcome"], registry=r
        )
        self.ack_seconds = Histogram("plate_ack_seconds", "Time from request to ack", buckets=_ACK_BUCKETS, registry=r)
        self.approvals = Counter("plate_approvals_total", "Requests decided, by outcome", ["outcome"], registry=r)
        self.time_to_decide = Histogram(
            "plate_time_to_decision_seconds", "Request to decision", buckets=(5, 30, 60, 300, 900, 3600), registry=r
        )
        self.jobs = Counter("plate_jobs_total", "Jobs finished, by kind and outcome", ["kind", "outcome"], registry=r)
        self.job_seconds = Histogram("plate_job_seconds", "Job duration", ["kind"], buckets=_JOB_BUCKETS, registry=r)
        self.queue_depth = Gauge("plate_queue_depth", "Jobs waiting in the plate queue", registry=r)
        self.lock_waits = Counter(
            "plate_lock_conflicts_total", "Requests refused because an env was locked", registry=r
        )
        self.slack_errors = Counter("plate_slack_errors_total", "Slack API errors by code", ["code"], registry=r)
        self.incidents = Counter("plate_incidents_total", "Watcher incidents by event", ["event"], registry=r)

    def command(self, verb: str, outcome: str, seconds: float) -> None:
        self.commands.labels(verb, outcome).inc()
        self.ack_seconds.observe(seconds)
        if outcome == "locked":
            self.lock_waits.inc()

    def approval(self, outcome: str, seconds: float) -> None:
        self.approvals.labels(outcome).inc()
        self.time_to_decide.observe(max(seconds, 0.0))

    def job(self, kind: str, outcome: str, seconds: float) -> None:
        self.jobs.labels(kind, outcome).inc()
        self.job_seconds.labels(kind).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


METRICS = Metrics()
