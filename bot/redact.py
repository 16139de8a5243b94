"""PURE. The one redaction layer between jobs and Slack/logs.

Patterns catch the usual shapes of secrets (Slack and OpenBao/Vault tokens, bearer tokens, basic-auth
URLs, `password:`/`token:`/`auth:` fields, dockerconfigjson blobs, long base64 runs); `Redactor.add`
registers exact values read from Secrets during a job, so even secrets with no tell-tale shape are cut.
"""

from __future__ import annotations

import base64
import re
import threading
from typing import Any

MASK = "[REDACTED]"

_KEY = r"""((?<![a-z0-9])["']?(?:[a-z0-9]+[_.-]|\.)*
    (?:password|passwd|pwd|secret|token|apikey|api[_-]key|auth|authtoken|accesstoken|credentials?|
    dockerconfigjson|private[_-]?key|secret[_-]?key|client[_-]?secret)
    (?:[_.-][a-z0-9]+)*["']?"""

_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # Slack tokens (bot, user, app, config, refresh).
    (re.compile(r"xox[abposer]-[A-Za-z0-9-]{6,}|xapp-[0-9]-[A-Za-z0-9-]{6,}"), MASK),
    # OpenBao / Vault tokens: service (hvs./s.), batch (hvb./b.), recovery (hvr./r.).
    (re.compile(r"\b(?:hv[sbr]\.[A-Za-z0-9_-]{8,}|[sbr]\.[A-Za-z0-9]{20,})"), MASK),
    # Authorization headers.
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 " + MASK),
    # user:password@ in URLs.
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@"), r"\1" + MASK + "@"),
    # Secret fields: `OPENBAO_TOKEN=x` and `"password": "x"` always; `token: x` only when x looks like a
    # secret (quoted, or with a digit or symbol in it), so prose such as `anonymous token: unexpected
    # status` survives. The keyword must be a whole segment of the key: `unauthorized: ...` is left alone.
    (
        re.compile(_KEY + r"""[ \t]*=[ \t]*)(?!\[REDACTED\])(?:"(?:[^"\\]|\\.)*"|'[^']*'|[^\s,}\]&]+)""", re.I | re.X),
        r"\1" + MASK,
    ),
    (
        re.compile(
            _KEY
            + r"""[ \t]*:[ \t]*)(?!\[REDACTED\])
            (?:"(?:[^"\\]|\\.)*"|'[^']*'|(?=[^\s,}\]]*[^A-Za-z\s,}\]])[^\s,}\]]+)""",
            re.I | re.X,
        ),
        r"\1" + MASK,
    ),
    # PEM private keys.
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----"), MASK),
    # Long base64 runs: Secret data, encoded docker configs. Pure hex runs (image digests, git SHAs)
    # are identifiers people need to see, not secrets.
    (
        re.compile(
            r"(?<![A-Za-z0-9+/=])(?![0-9a-fA-F]{40,}(?![A-Za-z0-9+/=]))[A-Za-z0-9+/]{40,}={0,2}(?![A-Za-z0-9+/=])"
        ),
        MASK,
    ),
]


def redact_text(text: str, known: frozenset[str] = frozenset()) -> str:
    for value in sorted(known, key=len, reverse=True):
        text = text.replace(value, MASK)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact(value: Any, known: frozenset[str] = frozenset()) -> Any:
    """Redact every string inside a JSON-like value (Block Kit payloads, log records)."""
    if isinstance(value, str):
        return redact_text(value, known)
    if isinstance(value, list):
        return [redact(v, known) for v in value]
    if isinstance(value, tuple):
        return tuple(redact(v, known) for v in value)
    if isinstance(value, dict):
        return {k: redact(v, known) for k, v in value.items()}
    return value


class Redactor:
    """Exact secret values seen during this process's jobs, plus their base64 forms."""

    def __init__(self) -> None:
        self._known: frozenset[str] = frozenset()
        self._lock = threading.Lock()

    def add(self, *values: str | bytes) -> None:
        found = set()
        for value in values:
            raw = value if isinstance(value, bytes) else value.encode()
            text = raw.decode(errors="replace")
            # Short values would cut ordinary words out of messages; patterns cover them by context.
            if len(text) >= 6:
                found.add(text)
                found.add(base64.b64encode(raw).decode())
        with self._lock:
            self._known = self._known | found

    @property
    def known(self) -> frozenset[str]:
        return self._known

    def __call__(self, value: Any) -> Any:
        return redact(value, self._known)


REDACTOR = Redactor()
"""Process-wide: a worker registers Secret values it reads; the Slack adapter and the log handler use it."""
