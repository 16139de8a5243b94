"""`/plate history <env> [n]`: helm history joined with plate-bot's own record of its changes.

For each revision: who requested it and who approved it, the plan digest, how the job ended and how long
it took, and a link to the request's Slack thread; revisions made outside plate-bot say so (with helm's
description of them). Read-only: no lock, no approval.
"""

from __future__ import annotations

from workers.procedures import JobContext, procedure
from workers.revisions import HISTORY_MAX, history_lines, origin_of, parse_history

DEFAULT_COUNT = 10
REPLY_CHARS = 2800  # under the reporter's per-reply limit: long histories go out in a few replies


def _links(ctx: JobContext, records: list[dict]) -> dict[str, str]:
    links = {}
    for rec in records:
        if rec.get("channel") and rec.get("thread_ts"):
            link = ctx.slack.permalink(str(rec["channel"]), str(rec["thread_ts"]))
            if link:
                links[str(rec["request"])] = link
    return links


def _chunks(lines: list[str], limit: int = REPLY_CHARS) -> list[str]:
    out, current = [], ""
    for line in lines:
        if current and len(current) + len(line) + 1 > limit:
            out.append(current)
            current = ""
        current = f"{current}\n{line}" if current else line
    return [*out, current] if current else out


@procedure(
    "history",
    "history",
    [("helm", "helm history"), ("records", "plate-bot's records and threads"), ("summary", "History")],
)
def history(ctx: JobContext) -> str:
    env = ctx.env
    count = int(ctx.request.args.get("count") or DEFAULT_COUNT)
    with ctx.step("helm") as note:
        revs = parse_history(ctx.helm.history(env.release, HISTORY_MAX))
        note.text = f"{len(revs)} revision(s) kept" if revs else "not installed"
    shown = list(reversed(revs))[:count]
    with ctx.step("records") as note:
        records = ctx.store.changes(env.key)
        # Only the records the rows shown refer to get a permalink (one Slack call each).
        used = {id(o.record): o.record for rev in shown if (o := origin_of(rev, records)).record is not None}
        links = _links(ctx, list(used.values()))
        ours = sum(origin_of(rev, records).by_plate_bot for rev in shown)
        note.text = f"{ours} of {len(shown)} made by plate-bot"
    with ctx.step("summary"):
        for text in _chunks(history_lines(env.name, env.release, revs, records, links, count=count)):
            ctx.report.reply(text)
    if not revs:
        return f"`{env.release}` is not installed in `{env.namespace}`"
    return f"{len(shown)} revision(s) of `{env.release}`: {ours} by plate-bot, {len(shown) - ours} outside it"
