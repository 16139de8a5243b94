"""plate-bot's RQ worker: RQ's forking `Worker`, tuned so a lost job is reported in seconds, that runs
nothing but plate-bot's own jobs and rides out a short Redis outage.

RQ marks a running job abandoned only when its heartbeat lapses, and sizes that lapse as
`min(job timeout, job_monitoring_interval) + 60` seconds (30 s interval by default: 90 s), after which
someone must still run `StartedJobRegistry.cleanup()` (RQ's own maintenance: every 10 minutes). Here the
main process heartbeats every `heartbeat` seconds and a job is abandoned after three missed beats; the
bot's Housekeeper runs the cleanup every few seconds, so "worker lost" reaches the thread within
about `3 × heartbeat + housekeeping interval`.

Gaps RQ leaves are closed as well:
- a work-horse that dies while its worker lives (OOM killer) fails the job without calling
  `on_failure`: `work_horse_killed_handler` reports it and frees the lock;
- a worker SIGKILLed as a whole leaves its horse (own process group) running: the horse asks the
  kernel to die with its parent (workers.lifetime), and helm dies with the horse;
- RQ imports and runs whatever a job hash names: jobs are JSON, and a job that is not one of
  plate-bot's entry points (core.queue.refusal) is failed in this process, before any fork, and
  logged on `plate.security`; its thread (if it has one) is told;
- a heartbeat that cannot reach Redis made RQ's worker quit, which killed the horse and helm (and
  `--atomic` rolled production back) over a 2 s Redis blip. Heartbeats are now retried every second;
  the job keeps running while Redis is away for less than the lost-job threshold (3 beats since the
  last one that landed). Past it the job counts as lost: the horse (and so helm) is stopped and the
  worker exits, as before. A job that someone reported lost meanwhile is stopped too, so a "worker
  lost" report is never contradicted by a helm that goes on.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis
from rq import Queue, Worker
from rq.job import Job
from rq.utils import now
from rq.worker import WorkerStatus

from core.probes import Check, Health
from core.queue import PlateJob, refusal, worker_options
from core.store import Store

# Imported here, in the worker's main process, so every forked horse starts with the job code, the
# kubernetes client and the procedures loaded: importing them in each horse cost ~1 s per job
# (bench/click_to_thread.py).
from workers import jobs, lost
from workers.lifetime import die_with_parent

log = logging.getLogger("plate.worker")
security = logging.getLogger("plate.security")
MISSED_BEATS = 3  # heartbeats a job may miss before it counts as abandoned
RETRY_BEAT = 1  # seconds between heartbeat attempts while Redis is away


class WorkHorseKilled(Exception):
    """The process running the job died (signal or crash) while its worker lived."""


class RedisAway(Exception):
    """Redis was unreachable for longer than the lost-job threshold while a job ran."""


class PlateWorker(Worker):
    # An idle worker that lost Redis retries with RQ's exponential backoff; RQ lets the wait grow to 60 s, so
    # a worker could sleep most of a minute after Redis was back while approved jobs waited. 5 s at most.
    max_connection_wait_time = 5.0

    def __init__(self, queues: Sequence[Queue], connection: redis.Redis, *, heartbeat: int = 5, **kw: Any) -> None:
        super().__init__(
            queues,
            connection=connection,
            job_monitoring_interval=max(1, int(heartbeat)),
            work_horse_killed_handler=self._horse_killed,
            **{**worker_options(), **kw},
        )
        for queue in self.queues:
            # A queue built elsewhere must not hand the worker pickles or unrestricted jobs either.
            queue.serializer, queue.job_class = self.serializer, PlateJob
        self._main_pid = os.getpid()
        self._beat = max(1, int(heartbeat))
        self._last_beat = time.monotonic()
        self._away_since: float | None = None

    # --- what runs ---------------------------------------------------------------------------------
    def execute_job(self, job: Job, queue: Queue) -> None:
        reason = refusal(job)
        if reason is None:
            self._last_beat, self._away_since = time.monotonic(), None
            super().execute_job(job, queue)
            return
        self._refuse(job, queue, reason)

    def _refuse(self, job: Job, queue: Queue, reason: str) -> None:
        """Fail `job` without forking or importing anything it names; tell its thread if it has one."""
        unreadable = reason.startswith("its payload")
        try:
            name = "<unreadable>" if unreadable else str(job.func_name)[:200]
        except Exception:
            name = "<unreadable>"
        security.warning(
            "job refused, nothing run", extra={"job": job.id, "function": name, "reason": reason, "origin": job.origin}
        )
        job.ended_at = now()
        self.connection.lrem(queue.intermediate_queue_key, 1, job.id)
        self.handle_job_failure(job, queue, exc_string=f"Refused by plate-bot: {reason}")
        try:
            lost.report_refused(self.connection, job.id, reason, unreadable=unreadable)
        except Exception:
            log.exception("could not tell the thread of a refused job", extra={"job": job.id})

    # --- heartbeats --------------------------------------------------------------------------------
    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        """How long the started-job registry trusts the last heartbeat (RQ: up to interval + 60 s)."""
        interval = self._beat
        beat = interval
        if job.timeout and job.timeout > 0:
            # Near the job's own timeout RQ shortens the beat so a hung horse is noticed right after it.
            beat = max(1, min(interval, int(job.timeout - working_time)))
        return beat + (MISSED_BEATS - 1) * interval

    def maintain_heartbeats(self, job: Job, execution: Any) -> None:
        try:
            super().maintain_heartbeats(job, execution)
            lost_meanwhile = Store(self.connection).job_state(job.id).get("outcome") == "lost"
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            self._redis_away(job, exc)
            return
        if self._away_since is not None:
            log.warning(
                "redis is back; the job went on",
                extra={"job": job.id, "away_seconds": round(time.monotonic() - self._away_since, 1)},
            )
            self._away_since = None
            self.job_monitoring_interval = self._beat
        self._last_beat = time.monotonic()
        if lost_meanwhile:
            # Reported lost (and its lock freed) while this worker could not heartbeat: make it so.
            log.error("the job was reported lost meanwhile; stopping it", extra={"job": job.id})
            self.kill_horse()

    def _redis_away(self, job: Job, exc: Exception) -> None:
        since_beat = time.monotonic() - self._last_beat
        if self._away_since is None:
            self._away_since = time.monotonic()
            log.warning("redis unreachable; the job goes on, heartbeats are retried", extra={"job": job.id})
            # Retry every second instead of every heartbeat interval (RQ's death penalty takes whole seconds).
            self.job_monitoring_interval = RETRY_BEAT
        if since_beat < MISSED_BEATS * self._beat:
            return
        log.error(
            "redis unreachable past the lost-job threshold; stopping the job",
            extra={"job": job.id, "seconds_since_heartbeat": round(since_beat, 1)},
        )
        self.job_monitoring_interval = self._beat
        self.kill_horse()
        self.wait_for_horse()
        raise RedisAway(f"Redis unreachable for {since_beat:.0f}s while job {job.id} ran") from exc

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        if pipeline is not None or self._horse_pid == 0 or self.is_horse:
            super().heartbeat(timeout, pipeline)
            return
        # The worker's own beat while a horse runs (RQ sends one when a signal interrupts the wait):
        # Redis being away must not end the job; the job's beats above decide.
        try:
            super().heartbeat(timeout, pipeline)
        except (redis.ConnectionError, redis.TimeoutError):
            log.warning("redis unreachable for the worker's own heartbeat")

    # --- the horse ---------------------------------------------------------------------------------
    def main_work_horse(self, job: Job, queue: Queue) -> None:
        # In the forked horse: never outlive the worker that monitors (and heartbeats for) this job.
        die_with_parent(signal.SIGKILL, self._main_pid)
        super().main_work_horse(job, queue)

    def _horse_killed(self, job: Job, retpid: int, ret_val: int, _rusage: Any) -> None:
        reason = f"signal {os.WTERMSIG(ret_val)}" if ret_val and os.WIFSIGNALED(ret_val) else f"status {ret_val}"
        try:
            jobs.on_failure(job, self.connection, WorkHorseKilled, WorkHorseKilled(reason), None)
        except Exception:
            log.exception("could not report the lost job %s", job.id)


def worker_health(worker: Worker, ping: Callable[[], bool], clock: Callable[[], float] = time.time) -> Health:
    """The worker's /healthz: its own heartbeat is recent (RQ beats at least every `worker_ttl - 15` s, idle
    or not) and Redis answers. While a job runs, Redis being away is reported but not judged: the job rides
    out the outage (see `maintain_heartbeats`), and a restart by the kubelet would kill helm mid-upgrade."""

    def heartbeat_age() -> float | None:
        beat = worker.last_heartbeat
        return None if beat is None else round(clock() - beat.timestamp(), 1)

    def redis_ok() -> bool:
        try:
            return bool(ping())
        except Exception:
            return False

    def ok() -> bool:
        age = heartbeat_age()
        fresh = age is not None and age < worker.worker_ttl + 60
        return fresh and (redis_ok() or worker.get_state() == WorkerStatus.BUSY)

    return Health(
        [
            Check("ok", ok),
            Check("redis", redis_ok, expect=None),
            Check("heartbeat_age_seconds", heartbeat_age, expect=None),
            Check("busy", lambda: worker.get_state() == WorkerStatus.BUSY, expect=None),
        ],
        summary=False,
    )
