"""The incident watcher's loop.

One replica leads (a Redis lease renewed by its own thread); the others stand by and take over when the
lease lapses. The leader lists and watches the namespaces its environments' apps live in, one stream per
kind and (cluster, namespace) (`streams`), classifies each change into the environment and app it belongs
to (`classify`, `apps`), folds observations into incidents (`incidents`) kept in Redis by compare-and-set,
and sends what each incident still owes Slack within the budget. Helm's release records go to the release
notices instead (`notices`): a revision plate-bot did not make is posted once in the deploy channel. Every
post is claimed in Redis first, so a restarted watcher or a second replica never posts the same thing
twice; what was owed when a leader died is sent by the next one.

    run(stop) ── lease held? ── activate: load incidents, start streams
                     └ run_once: drain queue → process → tick (resolutions) → persist → flush (Slack)
                                 → notices (release revisions: decide, post)
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from config.environments import Environment, PlateConfig
from core.errors import UserError
from core.metrics import METRICS
from core.slack import SlackError, SlackGateway
from core.store import Store
from workers.helm import Helm
from workers.kube import KubeGateway
from workers.secrets import SecretSink, secret_namespaces
from workers.watcher import incidents as core
from workers.watcher import releases
from workers.watcher.apps import AppIndex
from workers.watcher.classify import EnvView, Workload
from workers.watcher.gather import ReplicaSets, WatchSources, diagnose_incident
from workers.watcher.incidents import Effect, Incident, Outcome, Phase, SlackBudget
from workers.watcher.notices import DRIVERS, ReleaseNotices
from workers.watcher.render import diagnosis_messages, reopen_reply, resolution_reply, root_message
from workers.watcher.store import WatchStore
from workers.watcher.streams import Item, Stream, StreamKey, Sync

log = logging.getLogger("plate.watch")
LEASE_NAME = "watch"


@dataclass(frozen=True)
class Tuning:
    """Timings; the defaults are production's, tests shorten them."""

    lease_ttl: float = 15.0
    post_interval: float = 1.0  # Slack: about one message per second per channel
    updates_per_minute: float = 40.0  # chat.update is Tier 3 (~50/min), shared with the bot
    update_burst: float = 10.0
    update_interval: float = core.UPDATE_INTERVAL
    quiet: float = core.QUIET
    reopen_window: float = core.REOPEN_WINDOW
    watch_timeout: int = 240
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    tick: float = 0.2
    batch: int = 2000  # queue items handled per round before Slack gets its turn
    secrets_wait: float = 10.0  # at most this long for the Secrets' first list before the other streams start
    notice_grace: float = releases.GRACE  # an outside-looking revision waits this long for plate-bot's record
    notice_check: float = 1.0  # a waiting revision is judged again at most this often


class Lease:
    """The leader lease (redis-py's Lock, `WatchStore.lease`). A thread renews it every ttl/3, so a slow
    diagnosis cannot let it lapse. `held()` turns false at 80% of the ttl after the last successful
    renewal: before the key can expire and another replica take it, this one has stopped acting."""

    def __init__(self, store: WatchStore, holder: str, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.store, self.holder, self.ttl, self.clock = store, holder, ttl, clock
        self._lock = store.lease(LEASE_NAME, holder, ttl)
        self._valid_until = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def held(self) -> bool:
        return self.clock() < self._valid_until

    def try_once(self) -> bool:
        started = self.clock()
        try:
            ok = self._lock.acquire()
        except UserError:
            ok = False  # Redis unreachable: we cannot know, so we do not lead
        was = self.held()
        self._valid_until = started + self.ttl * 0.8 if ok else 0.0
        if ok != was:
            log.info("leader lease %s", "taken" if ok else "lost", extra={"holder": self.holder})
        return ok

    def start(self) -> None:
        def keep() -> None:
            while not self._stop.is_set():
                try:
                    self.try_once()
                except Exception:  # a dead keeper would leave a leader that believes it leads
                    self._valid_until = 0.0
                    log.exception("leader lease renewal failed")
                self._stop.wait(self.ttl / 3)

        self._thread = threading.Thread(target=keep, name="plate-watch-lease", daemon=True)
        self._thread.start()

    def stop(self, *, release: bool = True) -> None:
        """Stop renewing; with `release`, hand over now instead of after the ttl (SIGTERM)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self._valid_until = 0.0
        if release:
            try:
                self._lock.release()
            except UserError:
                log.warning("could not release the leader lease; it lapses on its own")


class Watcher:
    def __init__(
        self,
        config: PlateConfig,
        store: Store,
        slack: SlackGateway,
        *,
        kube_for: Callable[[Environment], KubeGateway],
        helm_for: Callable[[Environment], Helm],
        tuning: Tuning | None = None,
        clock: Callable[[], float] = time.time,
        identity: str | None = None,
    ) -> None:
        self.config, self.store, self.slack = config, store, slack
        self.keys = WatchStore(store.redis)  # the lease and the incidents
        self.kube_for, self.helm_for = kube_for, helm_for
        self.tuning = tuning or Tuning()
        self.clock = clock
        self.identity = identity or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.lease = Lease(self.keys, self.identity, self.tuning.lease_ttl)
        self.queue: queue.Queue[Item] = queue.Queue()
        t = self.tuning
        self.budget = SlackBudget(t.post_interval, t.updates_per_minute, t.update_burst)
        self.streams: list[Stream] = []
        self.views: dict[tuple[str | None, str], EnvView] = {}  # one per (cluster, namespace)
        self.incidents: dict[str, Incident] = {}
        self.dirty: set[str] = set()
        self.round = core.Round()  # this round's observations, settled before the Slack plan
        self.active = False
        self.heartbeat = time.monotonic()
        envs = [env for env in config.environments.values() if self.channel_of(env) is not None]
        self.apps = AppIndex(envs)  # whose an object is, for incidents
        self.notices = ReleaseNotices(
            AppIndex(env for env in config.environments.values() if self.deploy_channel_of(env) is not None),
            store,
            self.keys,
            slack,
            channel_for=lambda name: self.deploy_channel_of(config.environments[name]),
            holder=self.identity,
            grace=self.tuning.notice_grace,
            check_every=self.tuning.notice_check,
        )
        self._labels = {(ref.env, ref.app): ref.label for ref in self.apps.apps}
        self._routes = self._plan_streams()
        self._gateways: dict[str | None, KubeGateway] = {}
        self._replicasets: dict[str | None, ReplicaSets] = {}

    # --- which environments, which streams -------------------------------------------------------------
    def channel_of(self, env: Environment) -> str | None:
        """Where the environment's incidents go; None: its incidents are not watched."""
        return env.incident_channel or self.config.incident_channel

    def deploy_channel_of(self, env: Environment) -> str | None:
        """Where release notices go: the deploy channel (first of `channels`), else the incident channel."""
        return env.channels[0] if env.channels else self.channel_of(env)

    def _plan_streams(self) -> dict[StreamKey, None]:
        """Every stream, once: per kind and (cluster, namespace) its apps live in, whatever environments and
        apps share it (Applications: the namespaces holding them); helm's release records for the release
        notices. Environments with neither an incident nor a deploy channel are not watched."""
        for env in self.config.environments.values():
            if self.deploy_channel_of(env) is None:
                log.warning("no incident or deploy channel for %s: not watched", env.name)
        kinds = ("pods", "events", "externalsecrets", "secretstores")
        routes = {StreamKey(ctx, kind, ns): None for ctx, ns in self.apps.namespaces() for kind in kinds}
        routes.update({StreamKey(ctx, "applications", ns): None for ctx, ns in self.apps.argocd_namespaces()})
        routes.update({key: None for key in self.notices.stream_keys()})
        return routes

    def _secret_keys(self) -> list[StreamKey]:
        """One Secrets stream per (cluster, namespace) of the watched environments' apps and their Harbor
        chains."""
        keys: dict[StreamKey, None] = {}
        for env in self.config.environments.values():
            if self.deploy_channel_of(env) is not None:
                for view in [env, *(env.for_app(app) for app in env.apps)]:
                    for namespace in secret_namespaces(view):
                        keys[StreamKey(env.kube_context, "secrets", namespace)] = None
        return list(keys)

    def label_of(self, inc: Incident) -> str:
        """How messages name the incident's environment: `prod`, or `prod/plate-api` (Environment.label)."""
        return self._labels.get((inc.env, inc.app), inc.env)

    def _await_secrets(self, streams: list[Stream]) -> None:
        """Until every Secrets stream has listed once or failed once (403: RBAC forbids it; the stream logs
        that and keeps trying), at most `secrets_wait` seconds: then the other streams start."""
        deadline = time.monotonic() + self.tuning.secrets_wait
        while time.monotonic() < deadline:
            if all(s.out.listed.is_set() or s.failures_total for s in streams):  # type: ignore[attr-defined]
                return
            time.sleep(0.01)
        log.warning("Secrets not listed within %.0fs; watching anyway", self.tuning.secrets_wait)

    def gateway(self, context: str | None) -> KubeGateway:
        if context not in self._gateways:
            env = next(e for e in self.config.environments.values() if e.kube_context == context)
            self._gateways[context] = self.kube_for(env)
        return self._gateways[context]

    def replicasets(self, context: str | None) -> ReplicaSets:
        if context not in self._replicasets:
            self._replicasets[context] = ReplicaSets(self.gateway(context))
        return self._replicasets[context]

    # --- the loop ---------------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """Until `stop` is set: lead when the lease is ours, stand by otherwise. Releases the lease on exit."""
        self.lease.start()
        try:
            while not stop.is_set():
                self.heartbeat = time.monotonic()
                if not self.lease.held():
                    if self.active:
                        self.deactivate("leader lease lost")
                    stop.wait(self.tuning.tick)
                    continue
                try:
                    if not self.active:
                        self.activate()
                    self.run_once()
                except UserError as exc:  # Redis unreachable: keep the watches, try again shortly
                    log.warning("watcher round failed: %s", exc.message)
                    stop.wait(1.0)
                except Exception:
                    log.exception("watcher round failed")
                    stop.wait(1.0)
        finally:
            if self.active:
                self.deactivate("stopping")
            self.lease.stop(release=True)

    def activate(self) -> None:
        """Become the leader: what previous leaders left open is loaded (not announced again), then the
        streams list and watch."""
        self.incidents = {}
        for raw in self.keys.active_incidents():
            incident = Incident.from_storage(raw)
            self.incidents[incident.key] = incident
        self.views = {
            (ctx, ns): EnvView("", ns, router=self.apps.router(ctx))
            for ctx, ns in [*self.apps.namespaces(), *self.apps.argocd_namespaces()]
        }
        self.notices.reset()
        t = self.tuning

        def stream(key: StreamKey, out: queue.Queue[Item] | SecretSink) -> Stream:
            gateway = self.gateway(key.context)
            return Stream(key, gateway, out, timeout=t.watch_timeout, backoff_base=t.backoff_base,  # type: ignore[arg-type]
                          backoff_max=t.backoff_max)  # fmt: skip

        # The Secrets first: their values must be known before any cluster text is posted or logged.
        secrets = [stream(key, SecretSink(key.context, key.namespace)) for key in self._secret_keys()]
        for s in secrets:
            s.start()
        self._await_secrets(secrets)
        self.streams = secrets + [stream(key, self.queue) for key in self._routes]
        for s in self.streams[len(secrets) :]:
            s.start()
        self.active = True
        log.info("watching", extra={"streams": len(self.streams), "open_incidents": len(self.incidents)})

    def deactivate(self, why: str) -> None:
        for stream in self.streams:
            stream.stop()
        for stream in self.streams:
            stream.join(5)
        self.streams = []
        self.queue = queue.Queue()
        self.views, self.incidents, self.dirty, self.round = {}, {}, set(), core.Round()
        self.notices.reset()
        self.active = False
        log.info("standing by: %s", why)

    def run_once(self, wait: float | None = None) -> None:
        """One round: handle what the streams delivered, resolve what recovered, save, send."""
        timeout = self.tuning.tick if wait is None else wait
        try:
            items = [self.queue.get(timeout=timeout)]
        except queue.Empty:
            items = []
        while items and len(items) < self.tuning.batch:
            try:
                items.append(self.queue.get_nowait())
            except queue.Empty:
                break
        for item in items:
            self.process(item)
        self.settle()
        self.tick()
        self.persist()
        self.flush()
        self.notices.run(self.clock(), self.budget, self.lease.held)

    # --- from objects to incidents ----------------------------------------------------------------------
    def process(self, item: Item) -> None:
        now = self.clock()
        key = item.key
        if key.kind in DRIVERS:
            self.notices.on_item(item, now)
            return
        view = self.views.get((key.context, key.namespace))
        if view is None:
            return
        rs = self.replicasets(key.context)
        if isinstance(item, Sync):
            observations = view.sync(key.kind, item.items, now, rs)
        else:
            observations = view.apply(key.kind, item.type, item.obj, now, rs)
        for obs in observations:
            self.round.add(obs, now)

    def settle(self) -> None:
        """The round's observations into incidents: one transition per incident key (core.on_seen). Redis
        away (UserError) leaves the unsettled keys for the next round; anything else drops that key's
        observations, so one bad record cannot stall every later round."""
        for key, seen in self.round.pending():
            try:
                outcome = self._settle(key, seen)
            except UserError:
                raise
            except Exception:
                log.exception("could not settle incident observations", extra={"incident": key})
                self.round.done(key)
                continue
            self.round.done(key)
            METRICS.incidents.labels(outcome.value).inc()
            if seen.times > 1:
                METRICS.incidents.labels(Outcome.DEDUPLICATED.value).inc(seen.times - 1)
            if outcome is not Outcome.DEDUPLICATED:
                log.info("incident %s", outcome.value, extra={"incident": key, "detail": seen.first.detail})

    def _settle(self, key: str, seen: core.Seen) -> Outcome:
        env = self.config.environments[seen.first.env]
        current = self.incidents.get(key)
        if current is None:
            raw = self.keys.incident(key)
            current = Incident.from_storage(raw) if raw else None
        incident, outcome = core.on_seen(
            current,
            seen,
            channel=str(self.channel_of(env)),
            production=env.is_production,
            reopen_window=self.tuning.reopen_window,
        )
        self.incidents[key] = incident
        self.dirty.add(key)
        return outcome

    def tick(self) -> None:
        """Resolve open incidents whose workload is healthy again and quiet long enough; forget old ones."""
        now = self.clock()
        for key, inc in list(self.incidents.items()):
            env = self.config.environments.get(inc.env)
            view = self.views.get((env.kube_context, inc.namespace)) if env else None
            if view is None:
                continue
            if inc.phase is Phase.OPEN:
                rs = self.replicasets(env.kube_context if env else None)
                healthy = view.healthy(Workload(inc.kind, inc.name, inc.namespace), inc.reason, rs)
                if core.due_resolution(inc, healthy, now, self.tuning.quiet):
                    self.incidents[key] = inc.resolved(now)
                    self.dirty.add(key)
                    METRICS.incidents.labels(Outcome.RESOLVED.value).inc()
                    log.info("incident resolved", extra={"incident": key})
            elif not inc.active and inc.resolved_at is not None and now - inc.resolved_at > self.tuning.reopen_window:
                del self.incidents[key]  # still in Redis until its retention ends; loaded again if it recurs

    def persist(self) -> None:
        for key in sorted(self.dirty):
            inc = self.incidents.get(key)
            if inc is not None:
                self._save(inc)
        self.dirty.clear()

    def _save(self, inc: Incident) -> Incident | None:
        """Compare-and-set into Redis. Losing means another watcher wrote it: take its version, send nothing."""
        stored = inc.evolve(v=inc.v + 1)
        if self.keys.save_incident(inc.key, stored.for_storage(), expected=inc.v, active=stored.active):
            self.incidents[inc.key] = stored
            return stored
        raw = self.keys.incident(inc.key)
        if raw:
            self.incidents[inc.key] = Incident.from_storage(raw)
        else:
            self.incidents.pop(inc.key, None)
        log.info("incident changed by another watcher; reloaded", extra={"incident": inc.key})
        return None

    # --- Slack --------------------------------------------------------------------------------------------
    def flush(self) -> None:
        now = self.clock()
        due = core.next_sends(list(self.incidents.values()), now, self.budget, self.tuning.update_interval)
        for effect, inc in due:
            if not self.lease.held():
                return  # no longer the leader: the next one sends it
            self.perform(effect, inc, now)

    def perform(self, effect: Effect, inc: Incident, now: float) -> None:
        if effect.posts:
            claimed = self._save(inc.claimed(effect, now))
            if claimed is None:
                return
            inc = claimed
        try:
            ts, sent = self._send(effect, inc)
        except SlackError as exc:
            # A post stays claimed and is tried again once the claim is stale; an edit simply next round.
            log.warning("slack %s failed: %s", effect.value, exc.code, extra={"incident": inc.key})
            self.budget.spend(effect, inc.channel, now)
            return
        self.budget.spend(effect, inc.channel, now, sent)
        self._save(self.incidents.get(inc.key, inc).posted(effect, now, ts))

    def _send(self, effect: Effect, inc: Incident) -> tuple[str | None, int]:
        """Send one effect; (root ts when one was posted, number of messages sent)."""
        if effect is Effect.ROOT:
            text, blocks = root_message(inc, self.label_of(inc))
            return self.slack.post(inc.channel, text, blocks), 1
        if effect is Effect.UPDATE:
            text, blocks = root_message(inc, self.label_of(inc))
            self.slack.update(inc.channel, str(inc.root_ts), text, blocks)
            return None, 1
        if effect is Effect.REOPEN:
            self.slack.post(inc.channel, reopen_reply(inc), thread_ts=inc.root_ts)
            return None, 1
        if effect is Effect.RESOLUTION:
            self.slack.post(inc.channel, resolution_reply(inc, self.label_of(inc)), thread_ts=inc.root_ts)
            return None, 1
        return None, self._post_diagnosis(inc)

    def _post_diagnosis(self, inc: Incident) -> int:
        env = self.config.environments.get(inc.env)
        if env is None:
            return 0
        # The environment as the incident's app sees it (its release, namespace, Argo CD Application); a
        # workload that is no app's is read where it lives.
        view = env.for_app(inc.app) if inc.app in env.apps else env
        if inc.reason.pod_level and view.namespace != inc.namespace:
            view = view.model_copy(update={"namespace": inc.namespace})
        try:
            kube = self.gateway(env.kube_context)
            src = WatchSources(view, self.store, self.slack, kube, self.helm_for(view), self.clock)
            messages = diagnosis_messages(diagnose_incident(src, inc, self.replicasets(env.kube_context)))
        except Exception:
            error_id = uuid.uuid4().hex[:8]
            log.exception("diagnosis failed", extra={"incident": inc.key, "error_id": error_id})
            messages = [(f":warning: The diagnosis could not be completed (reference `{error_id}`).", None)]
        sent = 0
        for text, blocks in messages:
            try:
                self.slack.post(inc.channel, text, blocks, thread_ts=inc.root_ts)
                sent += 1
            except SlackError as exc:  # posted parts stay posted; a retry would repeat them
                log.warning("a diagnosis reply failed: %s", exc.code, extra={"incident": inc.key})
        return sent
