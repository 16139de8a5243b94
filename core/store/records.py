"""Records that outlive a request: backups taken before a change, the audit trail, and plate-bot's
record of its own changes (joined with helm history by `/plate history`). Keys:

    plate:backup:<env>:<revision>  HASH helm values + manifest taken before a change  (BACKUP_RETENTION)
    plate:backups:<env>   ZSET revision -> taken_at, trimmed to BACKUPS_KEPT
    plate:audit           STREAM the audit trail, append-only, trimmed to about AUDIT_MAXLEN entries
    plate:change:<id>     JSON plate-bot's record of one mutating job (who, approvals, digest, outcome)
    plate:changes:<env>   ZSET request id -> job start, trimmed to CHANGES_KEPT (history's join)
    plate:image:<digest>  JSON what Harbor said of an image when a plan resolved it (approval_ttl)
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from core.audit import AuditRecord
from core.store.base import StorePart, fields, text, texts

BACKUP_RETENTION = 30 * 86400
BACKUPS_KEPT = 20
BACKUP_FORMAT = 2  # plate:backup records: 2 = `v` and optional `enc` fields; none = plaintext before 0.2
AUDIT = "plate:audit"
AUDIT_MAXLEN = 10_000
CHANGES_KEPT = 500
CHANGE_RETENTION = 180 * 86400


class RecordStore(StorePart):
    # --- what registries said of an image, by digest, while its approval lives -------------------------
    def cache_images(self, facts: dict[str, dict[str, Any]], ttl: int) -> None:
        with self.redis.pipeline(transaction=False) as pipe:
            for digest, data in facts.items():
                pipe.set(f"plate:image:{digest}", json.dumps(data), ex=max(1, int(ttl)))
            pipe.execute()

    def cached_images(self, digests: list[str]) -> dict[str, dict[str, Any]]:
        """Digest -> what was cached for it; anything unreadable counts as not cached."""
        if not digests:
            return {}
        found: dict[str, dict[str, Any]] = {}
        for digest, raw in zip(digests, self.redis.mget([f"plate:image:{d}" for d in digests]), strict=True):
            try:
                data = json.loads(raw) if raw else None
            except ValueError:
                continue
            if isinstance(data, dict):
                found[digest] = data
        return found

    # --- backups taken before a change ----------------------------------------------------------------
    def save_backup(
        self,
        env: str,
        revision: int,
        *,
        values: str,
        manifest: str,
        meta: dict[str, Any],
        seal: Callable[[str], str] | None = None,
    ) -> None:
        """Keep a backup; `seal` (core.backupkeys) encrypts values and manifest, marked `enc: fernet`.
        Records are versioned (`v`); one without `v` or `enc` (before 0.2) is plaintext."""
        key, index = f"plate:backup:{env}:{revision}", f"plate:backups:{env}"
        now = time.time()
        record: dict[str, Any] = {"v": BACKUP_FORMAT, "meta": json.dumps(meta), "taken_at": now}
        if seal is not None:
            record.update(values=seal(values), manifest=seal(manifest), enc="fernet")
        else:
            record.update(values=values, manifest=manifest)
        with self.redis.pipeline() as pipe:
            pipe.delete(key)  # a plaintext field must not outlive an encrypted rewrite of the same revision
            pipe.hset(key, mapping=dict[Any, Any](record))
            pipe.expire(key, BACKUP_RETENTION)
            pipe.zadd(index, {str(revision): revision})
            pipe.zremrangebyrank(index, 0, -BACKUPS_KEPT - 1)
            pipe.expire(index, BACKUP_RETENTION)
            pipe.execute()

    def backup(self, env: str, revision: int, open_: Callable[[str], str] | None = None) -> dict[str, Any] | None:
        """A backup with values and manifest in clear: `open_` (core.backupkeys) decrypts an encrypted one
        (without it, reading one raises ValueError); plaintext records, old or new, are read as they are."""
        raw = self.redis.hgetall(f"plate:backup:{env}:{revision}")
        if not raw:
            return None
        data = fields(raw)
        if data.pop("enc", None) == "fernet":
            if open_ is None:
                raise ValueError(f"backup {env}:{revision} is encrypted; a key is needed to read it")
            data["values"], data["manifest"] = open_(data["values"]), open_(data["manifest"])
        return {**data, "meta": json.loads(data["meta"]), "taken_at": float(data["taken_at"])}

    def backup_revisions(self, env: str) -> list[int]:
        return sorted(int(r) for r in texts(self.redis.zrange(f"plate:backups:{env}", 0, -1)))

    # --- the audit trail (append and read only: nothing here edits or deletes an entry) ---------------
    def append_audit(self, record: dict[str, str]) -> str:
        """XADD one record; the stream is trimmed (approximately, which is cheap) to AUDIT_MAXLEN."""
        return text(self.redis.xadd(AUDIT, dict[Any, Any](record), maxlen=AUDIT_MAXLEN, approximate=True))

    def audit_entries(self, count: int = 100, *, request: str | None = None) -> list[dict[str, str]]:
        """The newest `count` records, newest first, each with its stream `id`; optionally only one request's."""
        raw = self.redis.xrevrange(AUDIT, count=count)
        out = []
        for entry_id, entry in raw or ():
            record = AuditRecord.model_validate(fields(entry)).fields()
            record["id"] = text(entry_id)
            if request is None or record.get("request") == request:
                out.append(record)
        return out

    def audit_range(self, start: str = "-", count: int = 1000) -> list[dict[str, str]]:
        """Up to `count` records from stream id `start` on, oldest first, each with its `id`. `start` is an
        XRANGE bound: `-` (the oldest), `<ms>-<seq>` or `<ms>` (inclusive), `(<id>` (exclusive)."""
        out = []
        for entry_id, entry in self.redis.xrange(AUDIT, min=start, max="+", count=count) or ():
            record = AuditRecord.model_validate(fields(entry)).fields()
            out.append({"id": text(entry_id), **record})
        return out

    # --- plate-bot's record of its own changes, joined with helm history ------------------------------
    def save_change(self, env: str, record: dict[str, Any]) -> None:
        """Create or update the record of one mutating job (`record['request']` is its id)."""
        index = f"plate:changes:{env}"
        with self.redis.pipeline() as pipe:
            pipe.set(f"plate:change:{record['request']}", json.dumps(record), ex=CHANGE_RETENTION)
            pipe.zadd(index, {record["request"]: float(record.get("started") or time.time())})
            pipe.zremrangebyrank(index, 0, -CHANGES_KEPT - 1)
            pipe.expire(index, CHANGE_RETENTION)
            pipe.execute()

    def change(self, request_id: str) -> dict[str, Any] | None:
        raw = self.redis.get(f"plate:change:{request_id}")
        return json.loads(raw) if raw else None

    def changes(self, env: str, limit: int = 200) -> list[dict[str, Any]]:
        """The newest `limit` records of `env`, newest first."""
        ids = self.redis.zrevrange(f"plate:changes:{env}", 0, limit - 1)
        raws = self.redis.mget([f"plate:change:{i}" for i in texts(ids)]) if ids else []
        return [json.loads(r) for r in raws if r]
