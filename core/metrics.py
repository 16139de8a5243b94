"""Prometheus metrics for serve, worker and watch (each process exposes its own /metrics: core.probes).

Two kinds: counters of what *this process* did (commands, acks, approvals, its own Slack calls), and
job metrics, which are cluster-wide. RQ forks a work-horse per job and the horse's in-memory counters die
with it, so jobs add their outcome, duration and Slack trouble to a stats hash in Redis
(`job_increments` -> `Store.record_stats`), and `SharedCollector` reads that hash, plus the queue length,
at scrape time in every process. Query those with `max without (instance, pod)`, not `sum`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

log = logging.getLogger("plate.metrics")

_ACK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_JOB_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800)
_JOB_LE = tuple(str(float(b)) for b in _JOB_BUCKETS)  # "le" labels as prometheus_client writes them


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
        for counter, field in (
            (self.slack_errors, "job_slack_errors|{}"),
            (self.slack_ratelimited, "job_slack_429|{}"),
        ):
            for metric in counter.collect():
                for sample in metric.samples:
                    if sample.name.endswith("_total"):
                        out[field.format(next(iter(sample.labels.values())))] = sample.value
        return out

    def share(self, stats: Callable[[], Mapping[str, float]], queue_depth: Callable[[], int]) -> None:
        """Expose the cluster-wide job metrics read from Redis (once per process; a second call replaces)."""
        if self._shared is not None:
            self.registry.unregister(self._shared)
        self._shared = SharedCollector(stats, queue_depth)
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


class SharedCollector:
    """Job metrics from the Redis stats hash and the queue length, read at scrape time."""

    def __init__(self, stats: Callable[[], Mapping[str, float]], queue_depth: Callable[[], int]) -> None:
        self.stats = stats
        self.queue_depth = queue_depth

    def describe(self) -> list[Metric]:
        return list(self._families({}, None))

    def collect(self) -> Iterator[Metric]:
        try:
            stats, depth = dict(self.stats()), self.queue_depth()
        except Exception:  # a scrape must not fail because Redis is away: say so instead
            log.warning("could not read job stats from Redis", exc_info=True)
            stats, depth = {}, None
        yield from self._families(stats, depth)

    @staticmethod
    def _families(stats: Mapping[str, float], depth: int | None) -> Iterator[Metric]:
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
        sums: dict[str, float] = {}
        counts: dict[str, float] = {}
        buckets: dict[str, dict[str, float]] = {}
        for field, value in sorted(stats.items()):
            name, _, rest = field.partition("|")
            parts = rest.split("|")
            if name == "jobs" and len(parts) == 2:
                jobs.add_metric(parts, value)
            elif name == "app_jobs" and len(parts) == 4:
                per_app.add_metric(parts, value)
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
        yield from (jobs, per_app, seconds, errors, retries)
        queue = GaugeMetricFamily("plate_queue_depth", "Jobs waiting in the plate queue")
        up = GaugeMetricFamily("plate_stats_up", "1 if the job stats and queue could be read from Redis")
        if depth is not None:
            queue.add_metric([], depth)
        up.add_metric([], 1.0 if depth is not None else 0.0)
        yield from (queue, up)
