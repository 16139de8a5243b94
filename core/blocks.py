"""PURE. Block Kit's building blocks and Slack's limits on them.

A mrkdwn section, a context line, a button and a row of actions: every payload plate-bot sends (the
request card and the job's status in `core.messages`, the Home tab in `core.home`, incidents and
diagnoses in `workers.watcher.render`) is made of these. The helpers only build; a caller that may exceed
a limit enforces it with the constants here (Slack also refuses more than 50 blocks in a message).
"""

from __future__ import annotations

from typing import Any

Block = dict[str, Any]
Blocks = list[Block]

HOME_BLOCKS = 100  # blocks in a Home view
MESSAGE_BLOCKS = 50  # blocks in a message
SECTION_CHARS = 3000  # characters of a section's text


def section(text: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def context(text: str) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}


def button(label: str, action_id: str, value: str, style: str | None = None) -> Block:
    """A button; its value is all the server gets back on a click (it re-checks everything)."""
    out: Block = {
        "type": "button",
        "text": {"type": "plain_text", "text": label},
        "action_id": action_id,
        "value": value,
    }
    if style:
        out["style"] = style
    return out


def actions(block_id: str, elements: list[Block]) -> Block:
    return {"type": "actions", "block_id": block_id, "elements": elements}


def texts(blocks: Blocks) -> list[str]:
    """Every text a reader sees in `blocks`: sections', context lines' and buttons' (what the limits above
    bound, and what tests and benchmarks read back)."""
    out = []
    for block in blocks:
        if "text" in block:
            out.append(block["text"]["text"])
        for element in block.get("elements", ()):
            text = element.get("text")
            out.append(text["text"] if isinstance(text, dict) else text)
    return [t for t in out if isinstance(t, str)]
