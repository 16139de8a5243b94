"""PURE. What incidents and diagnoses look like in Slack: `(text, blocks)` pairs.

Texts are bounded (Slack refuses a section over 3,000 characters) after they are redacted: a log tail or a
section is never cut before its secrets are replaced, and the Slack adapter redacts again when posting.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core.blocks import SECTION_CHARS, Block, Blocks, actions, button, context, section
from core.messages import REQUEST_ROLLBACK, hhmm
from core.redact import REDACTOR
from workers.watcher.incidents import Incident, Phase

Message = tuple[str, Blocks | None]
SECTION_LIMIT = SECTION_CHARS - 100  # a margin below Slack's limit
LOG_LIMIT = 1500
_ICON = {"critical": ":red_circle:", "warning": ":large_orange_circle:", "info": ":large_blue_circle:"}


def bounded(text: str, limit: int = SECTION_LIMIT) -> str:
    """Redacted, then cut to `limit` (never the other way round: a cut secret would no longer match)."""
    text = REDACTOR.text(text)
    if len(text) <= limit:
        return text
    cut = len(text) - limit + 40
    return text[: limit - 40] + f"\n… ({cut} characters cut)"


def _section(text: str) -> Block:
    return section(bounded(text))


def _context(text: str) -> Block:
    return context(bounded(text))


def root_message(inc: Incident, where: str | None = None) -> Message:
    """The incident's root in the channel: what, where, since when, severity; counter and last seen.
    `where` names the environment as messages do (`prod`, or `prod/plate-api` for one app of several:
    Environment.label); default: the environment's name."""
    where = where or inc.env
    resolved = inc.phase is Phase.RESOLVED
    icon = ":white_check_mark:" if resolved else _ICON.get(inc.severity, ":red_circle:")
    state = f"Resolved after {inc.minutes_open()} min" if resolved else inc.reason.label
    head = f"{icon} *{state}* in `{where}`: `{inc.workload}` (namespace `{inc.namespace}`)"
    if resolved:
        head += f" — was: {inc.reason.label}"
    times = "once" if inc.count == 1 else f"{inc.count} times"
    facts = [
        f"Severity *{inc.severity}*",
        f"since {hhmm(inc.first_seen)}",
        f"seen {times}",
        f"last seen {hhmm(inc.last_seen)}",
    ]
    if resolved and inc.resolved_at is not None:
        facts.append(f"resolved {hhmm(inc.resolved_at)}")
    if inc.reopened:
        facts.append(f"came back {inc.reopened}×")
    blocks: Blocks = [_section(head), _section(f"`{inc.source}`: {inc.detail}"), _context(" · ".join(facts))]
    text = f"{'[resolved] ' if resolved else f'[{inc.severity}] '}{where}: {inc.reason.label} — {inc.workload}"
    return text, blocks


def reopen_reply(inc: Incident) -> str:
    return f":repeat: It is happening again ({inc.count} times in all): `{inc.source}`: {inc.detail}"


def resolution_reply(inc: Incident, where: str | None = None) -> str:
    times = "once" if inc.count == 1 else f"{inc.count} times"
    return (
        f":white_check_mark: Resolved after {inc.minutes_open()} min: `{inc.workload}` in `{where or inc.env}` is "
        f"healthy again (seen {times})."
    )


@dataclass
class Diagnosis:
    """Everything a diagnosis found, before it is cut into Slack messages."""

    title: str
    sections: list[tuple[str, list[str]]] = field(default_factory=list)
    logs: list[tuple[str, str]] = field(default_factory=list)  # (pod/container, last lines)
    change: list[str] = field(default_factory=list)
    rollback_env: str | None = None  # offer the Request rollback button for this `env` or `env/app`

    def add(self, heading: str, lines: list[str]) -> None:
        if lines:
            self.sections.append((heading, lines))


def rollback_block(target: str) -> Block:
    """The Request rollback button; its value is `env`, or `env/app` for one app of several (bot.app)."""
    return actions(f"plate_incident:{target}", [button("Request rollback", REQUEST_ROLLBACK, target, "danger")])


def diagnosis_messages(d: Diagnosis) -> list[Message]:
    """At most three replies: the findings, the crashed containers' last log lines, and what changed
    recently with the Request rollback button."""
    out: list[Message] = []
    body = [f"*{d.title}*"]
    for heading, lines in d.sections:
        body += [f"*{heading}*", *lines]
    out.append((bounded("\n".join(body)), None))
    if d.logs:
        parts = []
        for where, text in d.logs[:2]:
            tail = REDACTOR.text(text).strip().replace("```", "'''")  # a fence inside must not close ours
            tail = tail if len(tail) <= LOG_LIMIT else "…" + tail[-LOG_LIMIT:]
            parts.append(f"*Last log lines* `{where}` (previous run)\n```{tail or '(empty)'}```")
        out.append((bounded("\n".join(parts)), None))
    if d.change or d.rollback_env:
        out.append(change_message(d.change, d.rollback_env))
    return out


def change_message(change: list[str], rollback_env: str | None) -> Message:
    """What changed recently, and the Request rollback button when a previous revision exists."""
    text = "\n".join(["*What changed recently*", *change])
    blocks: Blocks = [_section(text)]
    if rollback_env:
        blocks.append(rollback_block(rollback_env))
        command = f"/plate rollback {rollback_env.replace('/', ' ')}"
        blocks.append(_context(f"Opens `{command}` under the environment's approval rules."))
    return bounded(text), blocks
