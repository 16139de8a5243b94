"""PURE. The one redaction layer between jobs and Slack/logs.

Patterns catch the usual shapes of secrets (Slack and OpenBao/Vault tokens, bearer tokens, basic-auth
URLs, `password:`/`token:`/`auth:` fields, dockerconfigjson blobs, long base64 runs); `Redactor.add`
registers exact values read from Secrets during a job, so even secrets with no tell-tale shape are cut.
"""

from __future__ import annotations

import base64
import json
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


# Slack's own message links (`https://<team>.slack.com/archives/<channel>/p<ts>`, as chat.getPermalink
# returns them) look like a long base64 run; they carry no secret, so they are set aside while redacting.
_SLACK_PERMALINK = re.compile(
    r"https://[a-z0-9-]+\.slack\.com/archives/[A-Z0-9]+/p[0-9]+(?:\?thread_ts=[0-9.]+&cid=[A-Z0-9]+)?"
)


def redact_text(text: str, known: frozenset[str] = frozenset()) -> str:
    links = _SLACK_PERMALINK.findall(text)
    for i, link in enumerate(links):
        text = text.replace(link, f"\x00{i}\x00", 1)
    for value in sorted(known, key=len, reverse=True):
        text = text.replace(value, MASK)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    for i, link in enumerate(links):
        text = text.replace(f"\x00{i}\x00", link, 1)
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


_CREDENTIAL_FIELDS = ("password", "auth", "identitytoken", "registrytoken", "token")


def secret_values(secret: Any) -> list[str]:
    """Every value of a Kubernetes Secret (`data` decoded, `stringData`), plus the credentials nested in a
    docker config JSON (`password`, `auth` and its decoded `user:password`, tokens): what `Redactor.add`
    must learn the moment a job reads the Secret."""
    if not isinstance(secret, dict):
        return []
    values: list[str] = []
    for raw in (secret.get("data") or {}).values():
        try:
            values.append(base64.b64decode(str(raw), validate=True).decode())
        except (ValueError, UnicodeDecodeError):
            values.append(str(raw))
    values += [str(v) for v in (secret.get("stringData") or {}).values()]
    nested: list[str] = []
    for value in values:
        nested += _docker_credentials(value)
    return [v for v in values + nested if v]


def _docker_credentials(text: str) -> list[str]:
    try:
        doc = json.loads(text)
    except ValueError:
        return []
    auths = doc.get("auths") if isinstance(doc, dict) else None
    found: list[str] = []
    for entry in (auths or {}).values() if isinstance(auths, dict) else []:
        if not isinstance(entry, dict):
            continue
        for field in _CREDENTIAL_FIELDS:
            if isinstance(entry.get(field), str):
                found.append(entry[field])
        try:
            user_pass = base64.b64decode(str(entry.get("auth") or ""), validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            user_pass = ""
        found += [user_pass, user_pass.partition(":")[2]] if ":" in user_pass else []
    return found


REDACTOR = Redactor()
"""Process-wide: a worker registers Secret values it reads; the Slack adapter and the log handler use it."""
