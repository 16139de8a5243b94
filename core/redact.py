"""PURE. The one redaction layer between cluster text and Slack/logs.

Two defences, applied together by `redact_text` (exact values first, then one pass of the pattern table):

* **Exact values** (`Redactor`): every value of the Secrets of the namespaces plate-bot watches or works
  in, registered by source (cluster, namespace, Secret name) so a changed Secret replaces its old values
  and a deleted one drops them; with their base64, JSON-escaped, URL-encoded and trailing-newline-less
  forms. A secret with no tell-tale shape (a random OpenBao token, a registry password) is caught only
  this way. The values are matched by one regular expression built as a prefix trie, rebuilt lazily
  after a change: one scan of the text whatever the number of values.
* **Patterns** (`RULES`): the shapes of credentials: credentials in URLs, `*PASSWORD=`/`secret=`/
  `token: x` fields, `password hunter2` in prose, `data[password]: Invalid value: "…"`, vendor tokens
  (Slack, GitHub, GitLab, Stripe, Google, AWS, SendGrid, npm, Docker Hub, OpenBao/Vault), JWTs, bearer
  and basic credentials, PEM private keys and long mixed-case base64 runs. They are compiled into one
  alternation and applied in one pass.

Our own table, not a library: detect-secrets and its kin scan files for review, line by line, with
entropy plugins and per-file state; we need one fast pass over short texts on every Slack post and log
record, replacing (not reporting) the secret while keeping its surroundings (`password=[REDACTED]`), and
we need the near-misses that must survive (image digests, git SHAs, Slack permalinks, Kubernetes names,
"password authentication failed") to be decided here and tested (tests/leaks.py).

Text must be redacted *before* it is shortened: a secret cut in half by an ellipsis no longer matches its
exact value (`workers.describe.clip` and `workers.watcher.render.bounded` redact first).
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Hashable, Iterable, Mapping
from functools import lru_cache
from typing import Any, NamedTuple
from urllib.parse import quote

MASK = "[REDACTED]"
MIN_VALUE = 6  # shorter values would cut ordinary words out of messages; patterns cover them by context
MAX_VALUE = 4096  # longer values (bundles, keystores, config files) are not registered whole
MAX_VALUES = 20_000  # registry bound: past it the oldest sources are dropped (see Redactor.dropped)


class Rule(NamedTuple):
    """One shape of secret: `prefix` is kept, `secret` is replaced by MASK (neither may hold a capturing
    group). Each rule is its own regular expression and starts with a literal, so finding it costs one
    fast substring search of the text: one alternation of every rule would try each of them at every
    character, 20 times slower. `folded` rules are written in lower case and matched on the lower-cased
    text (keywords in any case at the speed of a case-sensitive search). `keep` rules mask nothing: the
    text they match is out of the other rules' reach (Slack permalinks look like base64)."""

    name: str
    prefix: str
    secret: str
    folded: bool = False
    keep: bool = False


_NOT_MASKED = r"(?!\[redacted\])"
# A value: quoted (also JSON-in-JSON `\"…\"`), or up to a separator.
_QUOTED = r"""(?:\\?"(?:[^"\\\n]|\\(?!")[^\n])*\\?"|'[^'\n]*')"""
_VALUE = rf"""{_NOT_MASKED}(?:{_QUOTED}|[^\s,;}}\]&"'<>]+)"""
# After `key:` only a value that looks like a secret: quoted, or with a digit or symbol in it. Prose such
# as `anonymous token: unexpected status` or `auth: unauthorized` survives.
_COLON_VALUE = rf"""{_NOT_MASKED}(?:{_QUOTED}|(?=[^\s,;}}\]"'<>]*[^a-z\s,;}}\]"'<>])[^\s,;}}\]"'<>]+)"""
# A key naming a secret: `password`, `DB_PASSWORD`, `rootPassword`, `"client_secret"`, `x-vault-token`,
# `.dockerconfigjson`, `api_key`. A rule starts at the keyword (what precedes it is kept either way);
# `pass`/`pwd`/`auth` only at the start of a segment (`DB_PASS`, not `bypass`, not `unauthorized`). More
# segments may follow the keyword only after a separator, so `secretKeyRef`, `tokens` and `passwordless`
# are not keys.
_KEYWORDS = {
    "password": r"pass(?:word|wd|phrase|(?<![a-z0-9]pass))",
    "pwd": r"pwd(?<![a-z0-9]pwd)",
    "auth": r"auth(?<![a-z0-9]auth)",
    "secret": r"secret(?:[_-]?key)?",
    "token": r"token",
    "api key": r"api[_-]?key",
    "access key": r"access[_-]?key",
    "private key": r"private[_-]?key",
    "account key": r"account[_-]?key",
    "credentials": r"credentials?",
    "docker config": r"dockerconfigjson",
}
# More segments of the key; one naming where the secret is (`DB_PASSWORD_FILE=/run/…`, `SECRET_NAME=x`),
# not the secret, ends the key there: no value follows it.
_KEY_END = r"""(?:[_.-](?!(?:file|path|name|ref|dir)(?![a-z0-9]))[a-z0-9]+)*\\?["']?"""
# Any of these in the lower-cased text, or the folded rules are not tried at all.
_FOLDED_TRIGGERS = ("pass", "pwd", "secret", "token", "key", "auth", "cred", "bearer", "basic", "data[", "dockerconfig")

RULES: tuple[Rule, ...] = (
    # Slack's message links (chat.getPermalink) look like a long base64 run; they carry no secret.
    Rule(
        "slack permalink",
        r"https://[a-z0-9-]+\.slack\.com/archives/[A-Z0-9]+/p[0-9]+(?:\?thread_ts=[0-9.]+&cid=[A-Z0-9]+)?",
        "",
        keep=True,
    ),
    Rule(
        "pem private key",
        "",
        r"""-----BEGIN\ [A-Z0-9 ]*PRIVATE\ KEY(?:\ BLOCK)?-----
        (?:[\s\S]*?-----END\ [A-Z0-9 ]*PRIVATE\ KEY(?:\ BLOCK)?-----
          |(?:(?:\\[rn]|\s)*[A-Za-z0-9+/=]{16,})*)""",  # or cut short: then its base64 lines
    ),
    Rule("slack webhook", r"https://hooks\.slack\.com/(?:services|workflows|triggers)/", r"[A-Za-z0-9/_-]{8,}"),
    Rule("slack token", "", r"xox(?:[abceoprsd]-[A-Za-z0-9-]{6,}|e\.xox[a-z]-[A-Za-z0-9-]{6,})"),
    Rule("slack app token", "", r"xapp-[0-9]-[A-Za-z0-9-]{6,}"),
    Rule("github token", "", r"gh(?:[pousr]_[A-Za-z0-9]{36,}|ithub_pat_[A-Za-z0-9_]{22,})"),
    Rule("gitlab token", "", r"glpat-[A-Za-z0-9_-]{20,}"),
    Rule("npm token", "", r"npm_[A-Za-z0-9]{36,}"),
    Rule("docker hub token", "", r"dckr_pat_[A-Za-z0-9_-]{20,}"),
    Rule("stripe secret key", "", r"sk_(?:live|test)_[A-Za-z0-9]{16,}"),
    Rule("stripe restricted key", "", r"rk_(?:live|test)_[A-Za-z0-9]{16,}"),
    Rule("stripe webhook secret", "", r"whsec_[A-Za-z0-9+/=]{16,}"),
    Rule("google api key", "", r"AIza[0-9A-Za-z_-]{35}"),
    Rule("google oauth token", "", r"ya29\.[0-9A-Za-z_-]{20,}"),
    Rule("google client secret", "", r"GOCSPX-[0-9A-Za-z_-]{20,}"),
    Rule("aws access key id", "", r"A(?:KIA|SIA|BIA|CCA)[0-9A-Z]{16}(?![A-Z0-9])"),
    Rule("sendgrid key", "", r"SG\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}"),
    # OpenBao / Vault tokens: service (hvs./s.), batch (hvb./b.), recovery (hvr./r.).
    Rule("openbao token", "", r"hv[sbr]\.[A-Za-z0-9_-]{8,}"),
    Rule("legacy vault token", "", r"\.(?<=[sbr]\.)(?<![A-Za-z0-9_.-][sbr]\.)[A-Za-z0-9]{20,}"),
    Rule("jwt", "", r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"),
    # user:password@ in URLs (also `redis://:password@host`); the user goes too.
    Rule("url credentials", "://", r"[^\s/?#@:'\"<>]*:[^\s/?#'\"<>]+(?=@)"),
    # --- folded: keywords in any case ---
    # `Authorization: Bearer …` / `Basic …`: the credential has a digit or symbol ("Bearer authentication
    # required" is prose).
    *(
        Rule(
            f"{scheme} credentials",
            rf"{scheme}(?<![a-z0-9]{scheme})[ \t]+",
            rf"{_NOT_MASKED}(?=[a-z0-9._~+/=-]*[0-9._~+/=-])[a-z0-9._~+/=-]{{8,}}",
            folded=True,
        )
        for scheme in ("bearer", "basic")
    ),
    # Kubernetes validation errors echo the value: `data[password]: Invalid value: "hunter2"`.
    Rule("invalid secret data", r"data\[[^\]\s]{1,253}\][ \t]*:[ \t]*invalid\ value:[ \t]*", _VALUE, folded=True),
    # `KEY=value` always; `KEY: value` when the value looks like a secret (_COLON_VALUE).
    *(
        Rule(
            f"{name} field",
            rf"""{kw}{_KEY_END}[ \t]*(?:=[ \t]*(?={_VALUE})
                |:[ \t]*(?:invalid\ value:[ \t]*(?={_QUOTED}))?(?={_COLON_VALUE}))""",
            _VALUE,
            folded=True,
        )
        for name, kw in _KEYWORDS.items()
    ),
    # `--token abc123`: a flag ending with the keyword, its value after a space.
    Rule(
        "secret flag",
        r"--(?:[a-z0-9]+-)*(?:[a-z0-9]*?(?:password|passwd|token|secret|api-?key)|pass)[ \t]+",
        r"(?!-)" + _VALUE,
        folded=True,
    ),
    # `password hunter2` in prose: after the word, one word that is not plain letters ("password reset",
    # "password authentication failed" survive).
    Rule(
        "password in prose",
        r"pass(?<![a-z0-9]pass)(?:word|wd|phrase)[ \t]+(?:(?:is|was)[ \t]+)?",
        rf"{_NOT_MASKED}(?=[^\s]*[0-9!@#$%^&*_+=~|\\/])[^\s,;]{{6,}}",
        folded=True,
    ),
)

_COMPILED = tuple((re.compile(f"({r.prefix})(?:{r.secret})", re.X), r.folded, r.keep) for r in RULES)

# Long base64 runs (Secret data, encoded docker configs, random tokens). Found without a regular
# expression scanning every character: the text's bytes are mapped to `a` (base64 character) or a space,
# and runs of 40 `a` are found with bytes.find.
_RUN = 40
_B64_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/_-"
_B64_TABLE = bytes(ord("a") if i in _B64_CHARS else ord(" ") for i in range(256))
_HEX = re.compile(r"[0-9a-fA-F]+")
_NEEDLE = b"a" * _RUN


def _secret_run(run: str) -> bool:
    """A base64 run is a secret when it mixes upper and lower case letters and digits: hex (image digests,
    git SHAs), lower-case names and paths, upper-case constants and `org/springframework/...` class names
    are identifiers people need to see."""
    return (
        not _HEX.fullmatch(run)
        and any(c.isupper() for c in run)
        and any(c.islower() for c in run)
        and any(c.isdigit() for c in run)
    )


def _runs(text: str) -> list[tuple[int, int]]:
    """Spans of the base64 runs of at least 40 characters that look like secrets, with their `=` padding."""
    if len(text) < _RUN:
        return []
    # One byte per character (anything not ASCII becomes `?`), so byte offsets are character offsets.
    mapped = text.encode("ascii", "replace").translate(_B64_TABLE)
    spans, at = [], 0
    while (start := mapped.find(_NEEDLE, at)) >= 0:
        end = mapped.find(b" ", start + _RUN)
        end = len(mapped) if end < 0 else end
        spans.append((start, end))
        at = end
    out = []
    for start, end in spans:
        if _secret_run(text[start:end]):
            while end < len(text) and text[end] == "=" and end - start < 1_000_000:
                end += 1
            out.append((start, end))
    return out


def _fold(text: str) -> str:
    """Lower case, index for index (a few characters, such as `İ`, lower to two)."""
    low = text.lower()
    if len(low) == len(text):
        return low
    return "".join(c if len(c.lower()) != 1 else c.lower() for c in text)


def _redact(text: str, matcher: re.Pattern[str] | None) -> str:
    if not text:
        return text
    masked: list[tuple[int, int]] = []
    kept: list[tuple[int, int]] = []
    if matcher is not None and len(text) >= MIN_VALUE:
        masked += [m.span() for m in matcher.finditer(text)]
    low = _fold(text)
    folded = any(t in low for t in _FOLDED_TRIGGERS)
    for pattern, on_folded, keep in _COMPILED:
        if on_folded and not folded:
            continue
        for match in pattern.finditer(low if on_folded else text):
            if keep:
                kept.append(match.span())
            else:
                masked.append((match.end(1), match.end()))
    masked += _runs(text)
    if not masked:
        return text
    out, at = [], -1
    for start, end in sorted(masked):
        if end <= start or any(k0 <= start and end <= k1 for k0, k1 in kept):
            continue
        if start <= at:  # overlaps or touches the previous mask: one mask
            at = max(at, end)
            continue
        out += [text[max(at, 0) : start], MASK]
        at = end
    out.append(text[max(at, 0) :])
    return "".join(out)


def redact_patterns(text: str) -> str:
    return _redact(text, None)


# --- exact values -------------------------------------------------------------------------------------------


def _trie_pattern(values: Iterable[str]) -> str:
    """A regular expression matching any of `values`, longest first, as a prefix trie: one pass over the
    text and a branch per distinct next character, not one alternative per value."""
    root: dict[str, Any] = {}
    for value in values:
        node = root
        for ch in value:
            node = node.setdefault(ch, {})
        node[""] = {}

    def emit(node: dict[str, Any]) -> str:
        alternatives = []
        for ch in sorted(k for k in node if k):
            chain, sub = re.escape(ch), node[ch]
            while len(sub) == 1 and "" not in sub:  # a run with no branching: one literal
                (nxt,) = sub
                chain, sub = chain + re.escape(nxt), sub[nxt]
            alternatives.append(chain + emit(sub))
        if not alternatives:
            return ""
        body = alternatives[0] if len(alternatives) == 1 else "(?:" + "|".join(alternatives) + ")"
        return f"(?:{body})?" if "" in node else body

    return emit(root)


@lru_cache(maxsize=8)
def _matcher(values: frozenset[str]) -> re.Pattern[str] | None:
    return re.compile(_trie_pattern(values)) if values else None


def redact_text(text: str, known: frozenset[str] = frozenset()) -> str:
    """`text` with the `known` values and every pattern's secret replaced by MASK."""
    return _redact(text, _matcher(frozenset(v for v in known if v)))


def _walk(value: Any, redact: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [_walk(v, redact) for v in value]
    if isinstance(value, tuple):
        return tuple(_walk(v, redact) for v in value)
    if isinstance(value, dict):
        return {k: _walk(v, redact) for k, v in value.items()}
    return value


def redact(value: Any, known: frozenset[str] = frozenset()) -> Any:
    """Redact every string inside a JSON-like value (Block Kit payloads, log records)."""
    matcher = _matcher(frozenset(v for v in known if v))
    return _walk(value, lambda text: _redact(text, matcher))


def variants(value: str | bytes) -> set[str]:
    """The forms in which a secret value shows up in text: itself, without surrounding whitespace (`kubectl
    create secret --from-file` keeps the trailing newline), base64 (padded, unpadded, URL-safe), JSON-escaped
    and URL-encoded."""
    raw = value if isinstance(value, bytes) else value.encode()
    text = raw.decode(errors="replace")
    found: set[str] = set()
    for form in {text, text.strip()}:
        if not MIN_VALUE <= len(form) <= MAX_VALUE:
            continue
        encoded = form.encode()
        std = base64.b64encode(encoded).decode()
        found |= {form, std, std.rstrip("="), base64.urlsafe_b64encode(encoded).decode().rstrip("=")}
        found |= {json.dumps(form)[1:-1], quote(form, safe="")}
    if found:
        found.add(base64.b64encode(raw).decode())  # the bytes as they were, when they are not UTF-8
    return {f for f in found if len(f) >= MIN_VALUE}


def _variants_of(values: Iterable[str | bytes]) -> frozenset[str]:
    found: set[str] = set()
    for value in values:
        found |= variants(value)
    return frozenset(found)


class Redactor:
    """The exact secret values this process knows, by source, plus the patterns.

    A source is any hashable key: `("secret", cluster, namespace, name)` for a Secret (replaced when the
    Secret changes, dropped when it is deleted or a relist of its namespace no longer has it), or one made
    per `add()` call for values met on the way (a registry token). At most `max_values` values are kept;
    past that the oldest sources go first and `dropped` counts them (the caller may log it). The matcher
    is rebuilt by whoever changes the registry, so redacting never waits for a rebuild."""

    def __init__(self, max_values: int = MAX_VALUES) -> None:
        self.max_values = max_values
        self._sources: dict[Hashable, frozenset[str]] = {}  # insertion order = age
        self._lock = threading.Lock()
        self._added = 0
        self.dropped = 0
        self.generation = 0  # bumped on every change: caches of redacted text key on it
        self._state: tuple[frozenset[str], re.Pattern[str] | None] = (frozenset(), None)

    # --- registering ----------------------------------------------------------------------------------
    def add(self, *values: str | bytes) -> None:
        """Values met during a job (a registry token, a manifest's token): kept until the bound evicts them."""
        found = _variants_of(values)
        if found:
            with self._lock:
                self._added += 1
                self._sources[("added", self._added)] = found
                self._changed()

    def set(self, source: Hashable, values: Iterable[str | bytes]) -> bool:
        """The values of one source (a Secret), replacing what it had; True when that changed anything."""
        found = _variants_of(values)
        with self._lock:
            if self._sources.get(source, frozenset()) == found:
                return False
            self._sources.pop(source, None)
            if found:
                self._sources[source] = found
            self._changed()
            return True

    def remove(self, source: Hashable) -> bool:
        with self._lock:
            if self._sources.pop(source, None) is None:
                return False
            self._changed()
            return True

    def replace(self, scope: tuple[Hashable, ...], sources: Mapping[Hashable, Iterable[str | bytes]]) -> bool:
        """A full list of one scope (e.g. `("secret", cluster, namespace)`): the sources whose key extends
        `scope` become exactly `sources`; those no longer listed are dropped. True when anything changed."""
        return self.replace_all({scope: sources})

    def replace_all(self, lists: Mapping[tuple[Hashable, ...], Mapping[Hashable, Iterable[str | bytes]]]) -> bool:
        """`replace` for several scopes at once, with one rebuild of the matcher."""
        new = {scope: {key: _variants_of(v) for key, v in sources.items()} for scope, sources in lists.items()}
        with self._lock:
            changed = False
            for scope, found_by_key in new.items():
                n = len(scope)
                stale = [k for k in self._sources if isinstance(k, tuple) and k[:n] == scope and k not in found_by_key]
                changed = changed or bool(stale)
                for old_key in stale:
                    del self._sources[old_key]
                for key, found in found_by_key.items():
                    if self._sources.get(key, frozenset()) != found:
                        changed = True
                        self._sources.pop(key, None)
                        if found:
                            self._sources[key] = found
            if changed:
                self._changed()
            return changed

    def _changed(self) -> None:
        """Under the lock: apply the bound, then build the new matcher (one regex for every value)."""
        total = sum(len(v) for v in self._sources.values())
        while total > self.max_values and len(self._sources) > 1:
            total -= len(self._sources.pop(next(iter(self._sources))))
            self.dropped += 1
        known = frozenset().union(*self._sources.values()) if self._sources else frozenset()
        self._state = (known, re.compile(_trie_pattern(known)) if known else None)
        self.generation += 1

    # --- reading ----------------------------------------------------------------------------------------
    @property
    def known(self) -> frozenset[str]:
        return self._state[0]

    def sources(self) -> list[Hashable]:
        with self._lock:
            return list(self._sources)

    def text(self, text: str) -> str:
        return _redact(text, self._state[1])

    def __call__(self, value: Any) -> Any:
        matcher = self._state[1]
        return _walk(value, lambda text: _redact(text, matcher))


# --- which values of a Secret are secret ------------------------------------------------------------------

# Secret types that hold no credential and are large: helm's release records (gzip'd manifests).
SKIPPED_TYPES = frozenset({"helm.sh/release.v1"})
# Keys whose values are identifiers, not secrets; registering them would cut names out of every message
# (a database user `postgres`, a namespace, a repository URL, a CA certificate).
PUBLIC_KEYS = frozenset(
    {"namespace", "ca.crt", "ca.pem", "username", "user", "url", "type", "name", "project", "host", "hostname",
     "port", "database", "dbname", "server", "endpoint", "region", "email", "enableoci", "insecure"}
)  # fmt: skip
_CREDENTIAL_FIELDS = ("password", "auth", "identitytoken", "registrytoken", "token")


def secret_values(secret: Any) -> list[str]:
    """The secret values of a Kubernetes Secret (`data` decoded, `stringData`), plus the credentials nested
    in a docker config JSON (`password`, `auth` and its decoded `user:password`, tokens).

    Not registered: helm's release records (SKIPPED_TYPES); the values of public keys (`username`, `url`,
    `namespace`, `ca.crt`, … PUBLIC_KEYS, `*.crt`); and configuration that Secrets often carry beside the
    credentials: values made only of lower-case letters and `-._:/` (an app name, a host, `production`) or
    only of digits (a port). Registering those would cut that word out of every message; a credential
    of that plain shape is left to the patterns (`password=…`)."""
    if not isinstance(secret, dict) or secret.get("type") in SKIPPED_TYPES:
        return []
    values: list[str] = []
    for key, raw in (secret.get("data") or {}).items():
        if _public(key):
            continue
        try:
            values.append(base64.b64decode(str(raw), validate=True).decode())
        except (ValueError, UnicodeDecodeError):
            values.append(str(raw))
    values += [str(v) for k, v in (secret.get("stringData") or {}).items() if not _public(k)]
    nested: list[str] = []
    for value in values:
        nested += _docker_credentials(value)
    return [v for v in values + nested if v and not _PLAIN.fullmatch(v.strip())]


_PLAIN = re.compile(r"[a-z][a-z.:/_-]*|[0-9]+")


def _public(key: Any) -> bool:
    low = str(key).lower()
    return low in PUBLIC_KEYS or low.endswith(".crt")


def _docker_credentials(text: str) -> list[str]:
    if "auths" not in text:
        return []
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
"""Process-wide: the Kubernetes adapter registers the Secrets it lists and watches (and any it reads); the
Slack adapter, the log handler and `clip` use it."""
