"""Release notices (issue 14): every revision of an app's Helm release that plate-bot did not make is
posted once in the environment's deploy channel (its first `channels` entry, else the incident channel).

The watcher follows helm's release records (Secrets of type helm.sh/release.v1, and ConfigMaps for the
configmap driver) with one stream per kind and namespace; this class turns their items into notices. What
is announced, and when, is `releases.verdict`'s (new since the release's first sight, not plate-bot's,
settled, after a grace); this class keeps the state that rule needs:

- in memory, per stream (so per namespace): the records already decided (by name and uid, never decoded
  again until they change identity) and the few revisions still waiting (`Held`);
- in Redis (`WatchStore`): each release's first sight (`release_baseline`), and each notice's claim then
  post (`claim_notice` / `notice_posted`): once per revision across restarts and replicas, like incidents.

Only the leader runs it (the watcher's round), and it checks the lease again before each post.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.slack import SlackError, SlackGateway
from core.store import Store
from workers.watcher.apps import AppIndex, AppRef
from workers.watcher.incidents import SlackBudget
from workers.watcher.releases import (
    CONFIGMAP,
    GRACE,
    SECRET,
    Baseline,
    HelmRevision,
    RecordRef,
    ReleaseRecordError,
    Verdict,
    decode_release,
    is_new,
    made_by_plate_bot,
    notice_id,
    notice_message,
    record_ref,
    release_image_tag,
    verdict,
)
from workers.watcher.store import NOTICE_STALE, WatchStore
from workers.watcher.streams import Change, Item, StreamKey, Sync

log = logging.getLogger("plate.watch")
Obj = dict[str, Any]
DRIVERS = {"helmsecrets": SECRET, "helmconfigmaps": CONFIGMAP}  # stream kind -> helm storage driver


@dataclass
class Held:
    """A revision not decided yet (a few at a time: new ones, for the grace or while helm is at it)."""

    app: AppRef
    rev: HelmRevision
    record: str  # the record's identity in its stream (name/uid)
    stream: StreamKey
    first_seen: float
    doc: Obj | None  # the release JSON, until its image tag is read
    image: str = ""
    next_check: float = 0.0


def _record_id(obj: Obj) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('name', '')}/{meta.get('uid', '')}"


class ReleaseNotices:
    def __init__(
        self,
        index: AppIndex,
        store: Store,
        keys: WatchStore,
        slack: SlackGateway,
        *,
        channel_for: Callable[[str], str | None],
        holder: str,
        grace: float = GRACE,
        check_every: float = 1.0,
    ) -> None:
        self.index, self.store, self.keys, self.slack = index, store, keys, slack
        self.channel_for, self.holder = channel_for, holder
        self.grace, self.check_every = grace, check_every
        self.reset()

    def reset(self) -> None:
        """Forget everything in memory (leadership lost): the next leader lists and decides again."""
        self.baselines: dict[tuple[str, str], Baseline] = {}  # (driver, release key) -> first sight
        self.tops: dict[tuple[str, str], int] = {}  # first lists' newest revisions, not yet in Redis
        self.done: dict[StreamKey, set[str]] = {}  # per stream: records decided
        self.held: dict[str, Held] = {}  # notice id -> the revision waiting

    def stream_keys(self) -> list[StreamKey]:
        """One stream per kind of release record and (cluster, namespace) holding an app's release, for the
        records of those releases only (other releases' records are never listed: they can be large)."""
        keys = []
        for ctx, ns in self.index.namespaces():
            releases = ",".join(sorted(self.index.releases_in(ctx, ns)))
            keys += [StreamKey(ctx, kind, ns, f"name in ({releases})") for kind in DRIVERS]
        return keys

    # --- items from the streams (no I/O: Redis and Slack come in `run`) -------------------------------
    def on_item(self, item: Item, now: float) -> None:
        key = item.key
        driver = DRIVERS[key.kind]
        apps = self.index.releases_in(key.context, key.namespace)
        done = self.done.setdefault(key, set())
        if isinstance(item, Sync):
            refs = [(obj, ref) for obj in item.items if (ref := record_ref(obj, driver)) is not None]
            done.intersection_update({_record_id(obj) for obj, _ref in refs})  # a relist: forget what is gone
            for release, targets in apps.items():
                top = max((ref.revision for _obj, ref in refs if ref.release == release), default=0)
                for app in targets:
                    if (driver, app.key) not in self.baselines:
                        self.tops.setdefault((driver, app.key), top)
            for obj, ref in refs:
                self._consider(key, driver, obj, ref, apps.get(ref.release, []), now)
        elif isinstance(item, Change):
            ref = record_ref(item.obj, driver)
            if ref is None:
                return
            if item.type == "DELETED":
                record = _record_id(item.obj)
                done.discard(record)
                for notice in [n for n, h in self.held.items() if h.stream == key and h.record == record]:
                    del self.held[notice]
                return
            self._consider(key, driver, item.obj, ref, apps.get(ref.release, []), now)

    def _consider(
        self, key: StreamKey, driver: str, obj: Obj, ref: RecordRef, targets: list[AppRef], now: float
    ) -> None:
        record = _record_id(obj)
        if not targets or record in self.done[key]:
            return
        try:
            rev, doc = decode_release(obj, driver)
        except ReleaseRecordError as exc:
            log.warning("skipping a helm release record: %s", exc, extra={"record": record, "namespace": key.namespace})
            self.done[key].add(record)
            return
        if (rev.release, rev.revision) != (ref.release, ref.revision):
            log.warning("skipping a helm release record whose labels and content disagree", extra={"record": record})
            self.done[key].add(record)
            return
        waiting = False
        for app in targets:
            baseline = self.baselines.get((driver, app.key))
            if baseline is not None and not is_new(rev, baseline, now):
                continue  # history: the common case of a relist, decided without Redis
            notice = notice_id(app.key, rev)
            held = self.held.get(notice)
            if held is None:
                self.held[notice] = Held(app, rev, record, key, now, doc)
            else:  # helm moved it on (pending -> deployed): judge the latest state
                held.rev, held.doc = rev, doc if not held.image else None
            waiting = True
        if not waiting:
            self.done[key].add(record)

    # --- each round: decide, then post what is due ------------------------------------------------------
    def run(self, now: float, budget: SlackBudget, leading: Callable[[], bool]) -> None:
        """Record first sights, decide the waiting revisions, post the due notices within the budget.
        Redis trouble (UserError) leaves everything for the next round."""
        for (driver, key), top in list(self.tops.items()):
            revision, at = self.keys.release_baseline(driver, key, top, now)
            self.baselines[(driver, key)] = Baseline(revision, at)
            del self.tops[(driver, key)]
        records: dict[str, list[Obj]] = {}
        for notice, held in list(self.held.items()):
            if now < held.next_check:
                continue
            baseline = self.baselines.get((DRIVERS[held.stream.kind], held.app.key))
            if baseline is None:
                continue
            if not is_new(held.rev, baseline, now):
                self._decided(notice, Verdict.HISTORY)
                continue
            if held.app.key not in records:
                records[held.app.key] = self.store.changes(held.app.key)
            ours = made_by_plate_bot(held.rev, records[held.app.key])
            found = verdict(held.rev, baseline, ours=ours, first_seen=held.first_seen, now=now, grace=self.grace)
            if found is Verdict.OURS or found is Verdict.HISTORY:
                self._decided(notice, found)
                continue
            if held.doc is not None:  # read once, then the release JSON goes
                held.image, held.doc = release_image_tag(held.doc), None
            held.next_check = now + self.check_every
            if found is Verdict.ANNOUNCE:
                if not leading():
                    return  # no longer the leader: the next one posts it
                self._announce(notice, held, now, budget)

    def _announce(self, notice: str, held: Held, now: float, budget: SlackBudget) -> None:
        channel = self.channel_for(held.app.env)
        if channel is None or not budget.may_post(channel, now):
            return
        state = self.keys.claim_notice(notice, self.holder, now)
        if state == "posted":
            self._decided(notice, Verdict.ANNOUNCE)
            return
        if state != "mine":
            return  # another watcher claimed it lately: asked again next time
        text, blocks = notice_message(held.rev, label=held.app.label, image=held.image)
        try:
            ts = self.slack.post(channel, text, blocks)
        except SlackError as exc:
            # Stays claimed; tried again once the claim is stale, like an incident's post.
            log.warning("release notice failed: %s", exc.code, extra={"notice": notice})
            budget.spend_post(channel, now)
            held.next_check = now + NOTICE_STALE
            return
        budget.spend_post(channel, now)
        self.keys.notice_posted(notice, self.holder, ts, now)
        log.info("release notice posted", extra={"notice": notice, "status": held.rev.status})
        self._decided(notice, Verdict.ANNOUNCE)

    def _decided(self, notice: str, found: Verdict) -> None:
        held = self.held.pop(notice)
        if found is not Verdict.ANNOUNCE:
            log.debug("release revision not announced: %s", found.value, extra={"notice": notice})
        if not any(h.stream == held.stream and h.record == held.record for h in self.held.values()):
            self.done.setdefault(held.stream, set()).add(held.record)
