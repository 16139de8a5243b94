"""core.redisconn: `redis+sentinel://` URLs, the explicit Sentinel settings, and what is never shown."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from config.redisurl import RedisURLError, SentinelURL, is_sentinel, parse_sentinel_url
from config.settings import Settings
from core.redisconn import connect, shown_url


@pytest.mark.parametrize(
    ("url", "parsed"),
    [
        (
            "redis+sentinel://s1:26379,s2:26380/mymaster/2",
            SentinelURL(sentinels=(("s1", 26379), ("s2", 26380)), service="mymaster", db=2),
        ),
        ("redis+sentinel://s1/plate", SentinelURL(sentinels=(("s1", 26379),), service="plate")),
        (
            "redis+sentinel://:p%40ss@s1,[::1]:5000/plate/0",
            SentinelURL(sentinels=(("s1", 26379), ("::1", 5000)), service="plate", password="p@ss"),
        ),
        (
            "redis+sentinel://plate:pw@s1/plate?sentinel_password=spw&sentinel_username=sen",
            SentinelURL(
                sentinels=(("s1", 26379),),
                service="plate",
                username="plate",
                password="pw",
                sentinel_username="sen",
                sentinel_password="spw",
            ),
        ),
        (
            "rediss+sentinel://s1/plate/0?ssl_ca_certs=/etc/ca.pem",
            SentinelURL(sentinels=(("s1", 26379),), service="plate", tls={"ssl_ca_certs": "/etc/ca.pem"}),
        ),
        ("rediss+sentinel://s1/plate", SentinelURL(sentinels=(("s1", 26379),), service="plate", tls={})),
    ],
    ids=["two-sentinels-db", "defaults", "password-ipv6", "credentials", "tls-ca", "tls-system-ca"],
)
def test_sentinel_urls_parse(url: str, parsed: SentinelURL) -> None:
    assert is_sentinel(url)
    got = parse_sentinel_url(url)
    assert got == parsed
    assert "pw" not in repr(got) and "p@ss" not in repr(got)  # passwords are left out of the repr


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis+sentinel:///plate/0", "at least one sentinel"),
        ("redis+sentinel://s1:26379", "/<service name>"),
        ("redis+sentinel://s1/plate/zero", "must be a number"),
        ("redis+sentinel://s1:port/plate", "port must be a number"),
        ("redis+sentinel://:hunter2@s1/plate?password=hunter2", "takes no password"),
        ("redis+sentinel://s1/plate?ssl_ca_certs=/ca.pem", "need TLS"),
    ],
    ids=["no-sentinel", "no-service", "bad-db", "bad-port", "unknown-option", "tls-option-without-tls"],
)
def test_bad_sentinel_urls_say_what_is_wrong_without_the_password(url: str, says: str) -> None:
    with pytest.raises(RedisURLError, match=says) as caught:
        parse_sentinel_url(url)
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis+sentinel://:s3cret@s1:26379,s2:26379/plate/0", "redis+sentinel://:***@s1:26379,s2:26379/plate/0"),
        ("redis+sentinel://s1/plate?sentinel_password=s3cret", "redis+sentinel://s1/plate?sentinel_password=***"),
    ],
    ids=["master-password", "sentinel-password"],
)
def test_sentinel_passwords_never_shown(url: str, shown: str) -> None:
    assert shown_url(url) == shown


def test_explicit_settings_compose_the_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("REDIS_SENTINELS", "s1:26379,s2:26379")
    assert Settings().redis_url == "redis+sentinel://s1:26379,s2:26379/mymaster/0"
    monkeypatch.setenv("REDIS_SENTINEL_SERVICE", "plate")
    assert Settings().redis_url == "redis+sentinel://s1:26379,s2:26379/plate/0"
    monkeypatch.setenv("REDIS_URL", "redis://r:6379/0")
    with pytest.raises(ValidationError, match="not both"):
        Settings()


def test_the_client_is_redis_py_sentinel_master(monkeypatch: pytest.MonkeyPatch) -> None:
    """No connection is made until a command runs: the pool is the Sentinel pool with the passwords
    (the master's from REDIS_PASSWORD, the sentinels' from REDIS_SENTINEL_PASSWORD) and TLS files."""
    from redis.sentinel import SentinelConnectionPool, SentinelManagedSSLConnection

    monkeypatch.setenv("REDIS_URL", "rediss+sentinel://s1:1,s2:2/plate/3?ssl_ca_certs=/etc/ca.pem")
    monkeypatch.setenv("REDIS_PASSWORD", "master-pw")
    monkeypatch.setenv("REDIS_SENTINEL_PASSWORD", "sentinel-pw")
    for worker in (False, True):
        client = connect(Settings(), for_worker=worker)
        pool = client.connection_pool
        assert isinstance(pool, SentinelConnectionPool) and pool.service_name == "plate"
        assert pool.connection_class is SentinelManagedSSLConnection
        kwargs = pool.connection_kwargs
        assert (kwargs["db"], kwargs["password"], kwargs["ssl_ca_certs"]) == (3, "master-pw", "/etc/ca.pem")
        assert kwargs.get("socket_timeout") == (None if worker else 1.0)
        sentinels = pool.sentinel_manager.sentinels
        assert [s.connection_pool.connection_kwargs["port"] for s in sentinels] == [1, 2]
        assert all(s.connection_pool.connection_kwargs["password"] == "sentinel-pw" for s in sentinels)
        assert all(s.connection_pool.connection_kwargs["ssl_ca_certs"] == "/etc/ca.pem" for s in sentinels)
        # The bot waits for a sentinel at most 0.3 s (Slack's 3 s budget); a worker up to 1 s.
        timeouts = {s.connection_pool.connection_kwargs["socket_connect_timeout"] for s in sentinels}
        assert timeouts == ({1.0} if worker else {0.3})


def test_a_plain_url_takes_the_password_from_redis_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://r:6379/0")
    monkeypatch.setenv("REDIS_PASSWORD", "from-secret")
    assert connect(Settings()).connection_pool.connection_kwargs["password"] == "from-secret"
    monkeypatch.setenv("REDIS_URL", "redis://:in-url@r:6379/0")
    assert connect(Settings()).connection_pool.connection_kwargs["password"] == "in-url"  # the URL's own wins
