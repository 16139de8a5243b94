"""Prometheus metrics for serve, worker and watch (each process exposes its own /metrics: core.probes).

Two kinds: series of what *this process* did or is (commands, acks, approvals, its own Slack calls,
watch leadership, build info, the process and Python runtime collectors), and cluster-wide series. RQ
forks a work-horse per job and the horse's in-memory counters die with it, so jobs add their outcome,
duration and Slack trouble to a stats hash in Redis (`job_increments` -> `Store.record_stats`), and
`SharedCollector` reads that hash, the queue, the workers, pending approvals and held locks at scrape time.
Cluster-wide series are exported by one process only (the watcher's leader; serve when it runs alone with
embedded Redis: `cluster_exporter`), so `sum` over pods counts them once. No `*_created` series.
"""

from __future__ import annotations

import logging
import platform
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import metadata

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

log = logging.getLogger("plate.metrics")

_ACK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_JOB_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800)
_JOB_LE = tuple(str(float(b)) for b in _JOB_BUCKETS)  # "le" labels as prometheus_client writes them
# `*_created` doubles every counter's series and no dashboard or rule here reads it.
disable_created_metrics()  # type: ignore[no-untyped-call]


def build_version() -> str:
    try:
        return metadata.version("plate-bot")
    except metadata.PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True)
class ClusterState:
    """What the cluster-wide series show, read from Redis at scrape time (core.queue.cluster_state)."""

    stats: Mapping[str, float] = field(default_factory=dict)
    queued: int = 0
    running: int = 0  # in RQ's started registry: a job a worker is running now
    workers: int = 0
    busy: int = 0
    pending: int = 0  # requests waiting for approval
    locks: Mapping[str, int] = field(default_factory=dict)  # environment -> locks held (its apps', its own)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        # The standard process_* (CPU, memory, fds, start time), python_info and python_gc_* series.
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        self.build_info = Gauge(
            "plate_build_info", "Always 1: the running plate-bot's version", ["version", "python"], registry=r
        )
        self.build_info.labels(build_version(), platform.python_version()).set(1)
        self.watch_leader = Gauge(
            "plate_watch_leader", "1 while this watch process holds the leader lease (0 on standbys)", registry=r
        )
        self.commands = Counter(
            "plate_commands_total", "Slash commands by verb and outcome", ["verb", "outcome"], registry=r
        )
        self.ack_seconds = Histogram("plate_ack_seconds", "Time from request to ack", buckets=_ACK_BUCKETS, registry=r)
        self.approvals = Counter("plate_approvals_total", "Requests decided, by outcome", ["outcome"], registry=r)
        self.time_to_decide = Histogram(
            "plate_time_to_decision_seconds", "Request to decision", buckets=(5, 30, 60, 300, 900, 3600), registry=r
        )
        self.lock_waits = Counter(
            "plate_lock_conflicts_total", "Requests refused because an env was locked", registry=r
        )
        self.slack_errors = Counter("plate_slack_errors_total", "Slack API errors by code", ["code"], registry=r)
        self.slack_ratelimited = Counter(
            "plate_slack_ratelimited_total",
            "Slack 429 answers retried after Retry-After, by method",
            ["method"],
            registry=r,
        )
        self.http_refused = Counter(
            "plate_http_refused_total",
            "Requests on /slack/events refused before Bolt, by reason (unverified, malformed, unhandled)",
            ["reason"],
            registry=r,
        )
        self.incidents = Counter("plate_incidents_total", "Watcher incidents by event", ["event"], registry=r)
        self._shared: SharedCollector | None = None

    def command(self, verb: str, outcome: str, seconds: float) -> None:
        self.commands.labels(verb, outcome).inc()
        self.ack_seconds.observe(seconds)
        if outcome == "locked":
            self.lock_waits.inc()

    def approval(self, outcome: str, seconds: float) -> None:
        self.approvals.labels(outcome).inc()
        self.time_to_decide.observe(max(seconds, 0.0))

    def refused(self, reason: str) -> None:
        self.http_refused.labels(reason).inc()

    def slack_error(self, code: str) -> None:
        self.slack_errors.labels(code).inc()

    def slack_retry(self, method: str) -> None:
        self.slack_ratelimited.labels(method).inc()

    def slack_counts(self) -> dict[str, float]:
        """This process's Slack error and 429 counts, as `job_increments` wants them (see `jobs.py`)."""
        out: dict[str, float] = {}
        for counter, template in (
            (self.slack_errors, "job_slack_errors|{}"),
            (self.slack_ratelimited, "job_slack_429|{}"),
        ):
            for metric in counter.collect():
                for sample in metric.samples:
                    if sample.name.endswith("_total"):
                        out[template.format(next(iter(sample.labels.values())))] = sample.value
        return out

    def share(self, read: Callable[[], ClusterState], when: Callable[[], bool] = lambda: True) -> None:
        """Expose the cluster-wide series read from Redis while `when()` holds (this process is the one
        exporter); a second call replaces the first."""
        if self._shared is not None:
            self.registry.unregister(self._shared)
        self._shared = SharedCollector(read, when)
        self.registry.register(self._shared)


METRICS = Metrics()


def job_increments(
    kind: str,
    outcome: str,
    seconds: float,
    slack: Mapping[str, float] | None = None,
    app: tuple[str, str] | None = None,
) -> dict[str, float]:
    """The stats-hash fields one finished job adds (`Store.record_stats`); `slack` is the job's own
    Slack error/429 counts (`Metrics.slack_counts()` after minus before); `app` its (environment, app)."""
    le = next((label for b, label in zip(_JOB_BUCKETS, _JOB_LE, strict=True) if seconds <= b), "+Inf")
    fields = {
        f"jobs|{kind}|{outcome}": 1.0,
        f"job_seconds_sum|{kind}": max(seconds, 0.0),
        f"job_seconds_count|{kind}": 1.0,
        f"job_seconds_bucket|{kind}|{le}": 1.0,
    }
    if app is not None:  # a field of its own: readers from before apps count `jobs|…` as they did
        fields[f"app_jobs|{app[0]}|{app[1]}|{kind}|{outcome}"] = 1.0
    fields.update({k: v for k, v in (slack or {}).items() if v > 0})
    return fields


def cluster_exporter(mode: str, *, process: str, embedded: bool) -> bool | None:
    """Whether `process` (serve, worker, watch) exports the cluster-wide series: True, False, or None for
    "while it leads" (watch). `mode` is PLATE_CLUSTER_METRICS: auto | always | never."""
    if mode == "always":
        return True
    if mode == "never":
        return False
    if process == "watch":
        return None
    return process == "serve" and embedded  # alone with its embedded Redis: nobody else would


class SharedCollector:
    """The cluster-wide series, read from Redis at scrape time while this process is the exporter."""

    def __init__(self, read: Callable[[], ClusterState], when: Callable[[], bool]) -> None:
        self.read = read
        self.when = when

    def describe(self) -> list[Metric]:
        return list(self._families(ClusterState(), up=False))

    def collect(self) -> Iterator[Metric]:
        if not self.when():
            return
        try:
            state, up = self.read(), True
        except Exception:  # a scrape must not fail because Redis is away: say so instead
            log.warning("could not read the cluster-wide metrics from Redis", exc_info=True)
            state, up = ClusterState(), False
        yield from self._families(state, up=up)

    @staticmethod
    def _families(state: ClusterState, *, up: bool) -> Iterator[Metric]:
        stats = state.stats
        jobs = CounterMetricFamily(
            "plate_jobs", "Jobs finished, by kind and outcome (all workers)", labels=["kind", "outcome"]
        )
        per_app = CounterMetricFamily(
            "plate_app_jobs",
            "Jobs finished, by environment, app, kind and outcome (all workers)",
            labels=["env", "app", "kind", "outcome"],
        )
        errors = CounterMetricFamily("plate_job_slack_errors", "Slack API errors in jobs, by code", labels=["code"])
        retries = CounterMetricFamily(
            "plate_job_slack_ratelimited", "Slack 429s retried in jobs, by method", labels=["method"]
        )
        last = GaugeMetricFamily(
            "plate_last_success_timestamp_seconds",
            "When a job of this kind last succeeded, by environment and app (Unix time)",
            labels=["env", "app", "kind"],
        )
        sums: dict[str, float] = {}
        counts: dict[str, float] = {}
        buckets: dict[str, dict[str, float]] = {}
        for key, value in sorted(stats.items()):
            name, _, rest = key.partition("|")
            parts = rest.split("|")
            if name == "jobs" and len(parts) == 2:
                jobs.add_metric(parts, value)
            elif name == "app_jobs" and len(parts) == 4:
                per_app.add_metric(parts, value)
            elif name == "last_success" and len(parts) == 3:
                last.add_metric(parts, value)
            elif name == "job_slack_errors":
                errors.add_metric([rest], value)
            elif name == "job_slack_429":
                retries.add_metric([rest], value)
            elif name == "job_seconds_sum":
                sums[rest] = value
            elif name == "job_seconds_count":
                counts[rest] = value
            elif name == "job_seconds_bucket" and len(parts) == 2:
                buckets.setdefault(parts[0], {})[parts[1]] = value
        seconds = HistogramMetricFamily("plate_job_seconds", "Job duration (all workers)", labels=["kind"])
        for kind in sorted(counts):
            cumulative, running = [], 0.0
            for bound in [*_JOB_LE, "+Inf"]:
                running += buckets.get(kind, {}).get(bound, 0.0)
                cumulative.append((bound, running))
            seconds.add_metric([kind], cumulative, sums.get(kind, 0.0))
        yield from (jobs, per_app, seconds, errors, retries, last)
        gauges = [
            GaugeMetricFamily("plate_queue_depth", "Jobs waiting in the plate queue"),
            GaugeMetricFamily("plate_jobs_running", "Jobs a worker is running now"),
            GaugeMetricFamily("plate_workers", "RQ workers registered on the plate queue"),
            GaugeMetricFamily("plate_workers_busy", "RQ workers running a job"),
            GaugeMetricFamily("plate_pending_approvals", "Requests waiting for approval"),
        ]
        if up:
            values = (state.queued, state.running, state.workers, state.busy, state.pending)
            for family, value in zip(gauges, values, strict=True):
                family.add_metric([], value)
        locks = GaugeMetricFamily("plate_locks_held", "Change locks held, by environment", labels=["env"])
        for env, count in sorted(state.locks.items()):
            locks.add_metric([env], count)
        stats_up = GaugeMetricFamily("plate_stats_up", "1 if the cluster-wide state could be read from Redis")
        stats_up.add_metric([], 1.0 if up else 0.0)
        yield from (*gauges, locks, stats_up)
