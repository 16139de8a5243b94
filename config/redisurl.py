"""REDIS_URL's Sentinel form, which redis-py's URLs cannot name (pure: checked when the settings load,
used by core.redisconn to build the client):

    redis+sentinel://[[user]:password@]host1[:port],host2[:port]/<service>[/<db>][?query]
    rediss+sentinel://…?ssl_ca_certs=<file>   TLS to the sentinels and to the master

The port defaults to 26379, the database to 0. The password is the master's; the query may set the
sentinels' own credentials (`sentinel_username`, `sentinel_password`) and the TLS files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote

SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
SENTINEL_PORT = 26379
# What a Sentinel URL's query may set: the sentinels' credentials and the TLS files (used for the sentinels
# and the master alike).
_SENTINEL_QUERY = frozenset(
    {"sentinel_username", "sentinel_password", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs"}
)


class RedisURLError(ValueError):
    """REDIS_URL cannot be used. The message names the part that is wrong, never a password."""


@dataclass(frozen=True)
class SentinelURL:
    """A parsed `redis+sentinel://` URL (`rediss+sentinel://`: TLS, `tls` holds redis-py's ssl_* options)."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)
    tls: dict[str, str] | None = None


def is_sentinel(url: str | None) -> bool:
    return bool(url) and str(url).split("://", 1)[0].lower() in SENTINEL_SCHEMES


def _host_port(text: str) -> tuple[str, int]:
    if text.startswith("["):  # [IPv6]:port
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":")
    else:
        host, _, port = text.rpartition(":") if ":" in text else (text, "", "")
    if not host:
        raise RedisURLError(f"sentinel address {text!r} has no host")
    if port and not port.isdigit():
        raise RedisURLError(f"sentinel address {text!r}: the port must be a number")
    return host, int(port) if port else SENTINEL_PORT


def parse_sentinel_url(url: str) -> SentinelURL:
    """`redis+sentinel://[[user]:password@]host1[:port],host2[:port]/<service>[/<db>][?query]`; the port
    defaults to 26379, the database to 0. RedisURLError says what is wrong (without the password)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in SENTINEL_SCHEMES:
        raise RedisURLError("a Sentinel URL starts with redis+sentinel:// or rediss+sentinel://")
    netloc, _, tail = rest.partition("/")
    path, _, query = tail.partition("?")
    userinfo, at, hosts = netloc.rpartition("@")
    if not at:
        userinfo, hosts = "", netloc
    username = password = None
    if userinfo:
        user, colon, secret = userinfo.partition(":")
        username, password = (unquote(user) or None, unquote(secret) or None) if colon else (None, unquote(user))
    sentinels = tuple(_host_port(h.strip()) for h in hosts.split(",") if h.strip())
    if not sentinels:
        raise RedisURLError("a Sentinel URL names at least one sentinel: redis+sentinel://host:26379/<service>")
    parts = [p for p in path.split("/") if p]
    if not parts or len(parts) > 2:
        raise RedisURLError("a Sentinel URL's path is /<service name>[/<db>], e.g. /mymaster/0")
    if len(parts) == 2 and not parts[1].isdigit():
        raise RedisURLError("a Sentinel URL's database (after the service name) must be a number")
    options = dict(parse_qsl(query, keep_blank_values=True))
    unknown = sorted(set(options) - _SENTINEL_QUERY)
    if unknown:
        allowed = ", ".join(sorted(_SENTINEL_QUERY))
        raise RedisURLError(f"a Sentinel URL takes no {', '.join(unknown)} (only {allowed})")
    tls = {k: v for k, v in options.items() if k.startswith("ssl_")}
    if tls and scheme.lower() != "rediss+sentinel":
        raise RedisURLError("ssl_* options need TLS: rediss+sentinel://")
    return SentinelURL(
        sentinels=sentinels,
        service=unquote(parts[0]),
        db=int(parts[1]) if len(parts) == 2 else 0,
        username=username,
        password=password,
        sentinel_username=options.get("sentinel_username") or None,
        sentinel_password=options.get("sentinel_password") or None,
        tls=tls if scheme.lower() == "rediss+sentinel" else None,
    )
