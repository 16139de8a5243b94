"""core.redisconn.shown_url: REDIS_URL as it may be logged (never a password)."""

from __future__ import annotations

import pytest

from core.redisconn import shown_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@redis:6379/0", "redis://:***@redis:6379/0"),
        ("redis://plate:p%40ss@redis.example:6380/2", "redis://plate:***@redis.example:6380/2"),
        ("redis://s3cret@redis:6379", "redis://:***@redis:6379"),  # a lone userinfo may be a password
        ("rediss://:pw@h:6380/0?ssl_ca_certs=/etc/ca.pem", "rediss://:***@h:6380/0?ssl_ca_certs=/etc/ca.pem"),
        ("redis://h:6379/0?password=pw&db=1", "redis://h:6379/0?password=***&db=1"),
        ("redis://redis:6379/0", "redis://redis:6379/0"),
        ("unix:///data/redis.sock?db=3", "unix:///data/redis.sock?db=3"),
        (None, "embedded"),
    ],
)
def test_passwords_never_shown(url: str | None, shown: str) -> None:
    assert shown_url(url) == shown
    for secret in ("s3cret", "p%40ss", "pw&"):
        assert secret not in shown_url(url)
