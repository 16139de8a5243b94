"""`plate-bot admin`: what an operator does by hand to the state in Redis (docs/redis.md).

    plate-bot admin locks [--format table|jsonl]        the held locks: name, holder request, since, lease
    plate-bot admin break-lock <name> --as <U…> [--reason …]   free a stuck lock (admins only, audited)
    plate-bot admin audit-export [--since …]            the audit stream as JSON lines on stdout

It talks to the Redis of REDIS_URL (or REDIS_SENTINELS) through plate-bot's own store, like serve and
the workers; run it where they run (`kubectl exec deploy/<release>-serve -- plate-bot admin locks`).

Breaking a lock is compare-and-delete: the lock is freed only if the request that held it when it was
looked up still holds it, and is then recorded as `lock.broken` (who, which lock and request, why) in
the audit stream and, when `audit_channel` is set, in Slack. A job of that request still waiting in the
queue is cancelled (it would otherwise run later without the lock it was approved under) and the
request's thread is told; a running job is not stopped. `--as` must name one of the config's
`admins` (a user, or a member of a listed group when the bot token can read it); anyone else is
refused and that is recorded as `lock.break_refused`. `--as` is who answers for the break, not a
login: whoever can run this command can reach Redis directly, so the check keeps honest people from
mistakes and puts a name on every break; access to the pods and the Redis password is the boundary.

Errors are one line on stderr, never a traceback. Exit codes: 0 done, 1 nothing done (Redis
unreachable, no such lock, the lock changed hands), 2 bad usage or configuration, 3 refused (not an
admin).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TextIO

from config.environments import ConfigError, PlateConfig, load_config
from config.settings import Settings
from core import audit
from core.audit import Event
from core.errors import Unavailable

if TYPE_CHECKING:  # the store (and redis) are imported when an admin command runs, not with the CLI
    from core.requests import Request
    from core.store import Store

OK, FAILED, USAGE, REFUSED = 0, 1, 2, 3
EXPORT_BATCH = 1000
USER_ID = re.compile(r"^[UW][A-Z0-9]{2,30}$")
_DURATION = re.compile(r"^(\d+)([smhd])$")
_STREAM_ID = re.compile(r"^\d{10,}(-\d+)?$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class AdminError(Exception):
    """A one-line refusal or failure, with the exit code it ends the command with."""

    def __init__(self, message: str, code: int = FAILED) -> None:
        super().__init__(message)
        self.code = code


def add_parser(sub: Any) -> None:
    """`plate-bot admin …`, on the top-level parser's subcommands."""
    a = sub.add_parser(
        "admin",
        help="held locks, breaking a stuck one, exporting the audit stream (docs/redis.md)",
        description="Operate plate-bot's Redis state: list and break locks, export the audit stream.",
        epilog="Exit codes: 0 done, 1 nothing done, 2 bad usage or configuration, 3 refused (not an admin).",
    )
    commands = a.add_subparsers(dest="admin_command", required=True, metavar="{locks,break-lock,audit-export}")
    locks = commands.add_parser("locks", help="list the held locks: name, holder request, since, lease left")
    locks.add_argument("--format", choices=["table", "jsonl"], default="table")
    brk = commands.add_parser("break-lock", help="free a stuck lock (config admins only; audited as lock.broken)")
    brk.add_argument("name", help="the lock's name as `admin locks` shows it (or its key, plate:lock:<name>)")
    brk.add_argument("--as", dest="user", required=True, metavar="SLACK_USER_ID", help="you, one of the admins")
    brk.add_argument("--reason", default="", help="why it is stuck (kept in the audit record)")
    export = commands.add_parser("audit-export", help="write the audit stream to stdout as JSON lines")
    export.add_argument(
        "--since",
        help="from this point on: an ISO date or time (UTC unless it says), a duration back from now (30m, 24h, "
        "7d) or a stream id (1733220000000-0); default: the oldest record kept",
    )
    export.add_argument("--format", choices=["jsonl"], default="jsonl")
    a.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    try:
        if not settings.redis_url:
            raise AdminError(
                "set REDIS_URL (or REDIS_SENTINELS): without it each process runs an embedded Redis of its "
                "own, which this command cannot reach",
                USAGE,
            )
        store = _store(settings)
        command: Callable[[argparse.Namespace, Settings, Store, TextIO], int] = {
            "locks": _locks,
            "break-lock": _break_lock,
            "audit-export": _audit_export,
        }[args.admin_command]
        return command(args, settings, store, out)
    except AdminError as exc:
        print(f"plate-bot admin: {exc}", file=sys.stderr)
        return exc.code
    except Unavailable as exc:
        print(f"plate-bot admin: {_unreachable(settings, exc)}", file=sys.stderr)
        return FAILED
    except BrokenPipeError:  # `… | head`: the reader has what it wanted; nothing more to flush at exit
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return OK


def _store(settings: Settings) -> Store:
    from core.redisconn import connect
    from core.store import Store

    return Store(connect(settings))


def _unreachable(settings: Settings, exc: Unavailable) -> str:
    from core.redisconn import shown_url

    cause = type(exc.__cause__).__name__ if exc.__cause__ is not None else "error"
    return f"cannot reach Redis at {shown_url(settings.redis_url)} ({cause})"


def _config(settings: Settings) -> PlateConfig:
    try:
        return load_config(settings.plate_config)
    except ConfigError as exc:
        raise AdminError(str(exc), USAGE) from None


# --- locks ------------------------------------------------------------------------------------------------
def _iso(epoch: Any) -> str:
    try:
        return dt.datetime.fromtimestamp(float(epoch), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (TypeError, ValueError, OverflowError):
        return "?"


def _lease(seconds: float | None) -> str:
    if seconds is None:
        return "no expiry"
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _locks(args: argparse.Namespace, _settings: Settings, store: Store, out: TextIO) -> int:
    held = store.locks()
    if args.format == "jsonl":
        for lock in held:
            since = _iso(lock["since"]) if lock.get("since") is not None else None
            out.write(json.dumps({**lock, "since": since}) + "\n")
        return OK
    if not held:
        out.write("no locks held\n")
        return OK
    rows = [("NAME", "REQUEST", "VERB", "USER", "STATE", "SINCE", "LEASE LEFT")]
    for lock in held:
        rows.append(
            (
                lock["name"],
                str(lock.get("request") or "?"),
                str(lock.get("verb") or "?"),
                str(lock.get("user") or "?"),
                str(lock.get("state") or "?"),
                _iso(lock.get("since")),
                _lease(lock.get("lease")),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() + "\n")
    return OK


# --- break-lock -------------------------------------------------------------------------------------------
def _is_admin(config: PlateConfig, settings: Settings, user: str) -> bool:
    """`user` is listed in `admins`, or is a member of a group listed there (read with the bot token;
    without one, or if Slack cannot be asked, groups count as empty: fail closed)."""
    if user in config.admins:
        return True
    groups = [g for g in config.admins if g.startswith("S")]
    if not groups or not settings.slack_bot_token.get_secret_value():
        return False
    from core.slack import SlackGateway

    members = SlackGateway.from_settings(settings).members(groups)
    return any(user in users for users in members.values())


def _break_lock(args: argparse.Namespace, settings: Settings, store: Store, out: TextIO) -> int:
    user = args.user.strip()
    if not USER_ID.match(user):
        raise AdminError(f"--as takes your Slack user id (U…), not {user[:40]!r}", USAGE)
    name = args.name.strip().removeprefix("plate:lock:")
    config = _config(settings)
    if not _is_admin(config, settings, user):
        _audit(
            store,
            config,
            settings,
            audit.entry(Event.LOCK_BREAK_REFUSED, at=time.time(), user=user, detail=f"lock {name} · not an admin"),
        )
        raise AdminError(
            f"{user} is not one of the admins in {settings.plate_config}; the lock was left as it is", REFUSED
        )
    holder = next((lock for lock in store.locks() if lock["name"] == name), None)
    if holder is None:
        raise AdminError(f"no lock named {name!r} is held (plate-bot admin locks lists them)")
    request_id = str(holder.get("request") or "")
    if not request_id:
        raise AdminError(f"the holder of lock {name!r} cannot be read; see docs/redis.md for removing it by hand")
    from core.queue import cancel_queued

    if not store.release_lock(name, request_id):
        raise AdminError(f"lock {name!r} lapsed or changed hands meanwhile; nothing was changed (list the locks again)")
    request = store.get(request_id)
    # A job still waiting would otherwise run later without the lock it was approved under.
    cancelled = request is not None and cancel_queued(request.job_id, store.redis)
    detail = f"lock {name} of request {request_id} ({holder.get('state', '?')} since {_iso(holder.get('since'))})"
    if cancelled:
        detail += " · its queued job was cancelled"
    if args.reason.strip():
        detail += f" · reason: {args.reason.strip()}"
    record = audit.entry(
        Event.LOCK_BROKEN,
        at=time.time(),
        request=request,
        user=user,
        env=None if request else name.split("/", 1)[0],
        job=request.job_id if request else None,
        detail=detail,
    )
    stored = _audit(store, config, settings, record)
    if request is not None:
        _tell_thread(settings, request, name, user, args.reason.strip(), cancelled)
    out.write(
        f"broke lock {name}: held by request {request_id} ({holder.get('verb', '?')} by {holder.get('user', '?')} "
        f"since {_iso(holder.get('since'))}); recorded as lock.broken by {user}\n"
    )
    if cancelled and request is not None:
        out.write(f"its job {request.job_id} was still queued and is cancelled: it will not run\n")
    if not stored:
        raise AdminError("the lock was broken, but its audit record could not be written to Redis")
    return OK


def _tell_thread(settings: Settings, request: Request, name: str, user: str, reason: str, cancelled: bool) -> None:
    """A line in the request's thread, so whoever waits on it knows (best effort, like the audit mirror)."""
    if not (request.channel and request.message_ts and settings.slack_bot_token.get_secret_value()):
        return
    from core.slack import SlackError, SlackGateway

    said = " ".join(reason.split())[:200]
    text = f":unlock: <@{user}> broke the lock on `{name}`" + (f": {said}" if said else "") + "."
    if cancelled:
        text += f" This {request.verb} was still queued and will not run; ask again when ready."
    try:
        SlackGateway.from_settings(settings).post(request.channel, text, thread_ts=request.message_ts)
    except SlackError as exc:
        print(f"plate-bot admin: the request's thread was not told ({exc.code})", file=sys.stderr)


def _audit(store: Store, config: PlateConfig, settings: Settings, record: dict[str, str]) -> bool:
    """Append `record` to the audit stream and mirror it to `audit_channel`; False if Redis refused it."""
    try:
        store.append_audit(record)
        stored = True
    except Unavailable:
        stored = False
    if config.audit_channel and settings.slack_bot_token.get_secret_value():
        from core.slack import SlackError, SlackGateway

        try:
            SlackGateway.from_settings(settings).post(config.audit_channel, audit.line(record))
        except SlackError as exc:
            print(f"plate-bot admin: the audit channel was not told ({exc.code})", file=sys.stderr)
    return stored


# --- audit-export -----------------------------------------------------------------------------------------
def since_bound(since: str | None, now: float | None = None) -> str:
    """`--since` as an XRANGE start: `-`, or `<ms>-<seq>`."""
    if not since:
        return "-"
    text = since.strip()
    if _STREAM_ID.match(text):
        return text
    match = _DURATION.match(text)
    if match:
        seconds = int(match.group(1)) * _UNITS[match.group(2)]
        return f"{int(((now if now is not None else time.time()) - seconds) * 1000)}-0"
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise AdminError(
            f"--since {text[:40]!r}: give an ISO date or time (2026-12-01, 2026-12-01T09:00:00Z), "
            "a duration (30m, 24h, 7d) or a stream id",
            USAGE,
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return f"{int(when.timestamp() * 1000)}-0"


def _records(store: Store, start: str) -> Iterator[dict[str, str]]:
    while True:
        batch = store.audit_range(start, EXPORT_BATCH)
        yield from batch
        if len(batch) < EXPORT_BATCH:
            return
        start = f"({batch[-1]['id']}"


def _audit_export(args: argparse.Namespace, _settings: Settings, store: Store, out: TextIO) -> int:
    for record in _records(store, since_bound(args.since)):
        out.write(json.dumps({"id": record["id"], "time": _iso(record.get("at")), **record}) + "\n")
    out.flush()
    return OK
