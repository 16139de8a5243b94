"""Real `plate-bot` processes for the tests: start them with the test environment, probe them over HTTP,
and always take them down (their whole process group: work-horses, helm, an embedded redis-server)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ROOT

PLATE_BOT = [sys.executable, "-m", "bot"]
LOGS: dict[int, Path] = {}  # pid -> the file its stderr (the JSON logs) goes to


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str, timeout: float = 5) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()


def get_json(url: str) -> tuple[int, dict[str, Any]]:
    status, body = get(url)
    return status, json.loads(body or b"{}")


def metrics(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """A /metrics page as {(sample name, labels): value}."""
    status, body = get(url)
    assert status == 200, body
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def sample(page: Mapping[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return page.get((name, frozenset(labels.items())), 0.0)


def wait_until(predicate: Callable[[], Any], timeout: float = 10, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def stderr_of(proc: subprocess.Popen[str]) -> str:
    return LOGS[proc.pid].read_text()


def up(url: str, proc: subprocess.Popen[str], timeout: float = 20) -> None:
    """Wait until `url` answers at all (any status), failing early if the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"exited {proc.returncode}:\n{stderr_of(proc)}")
        try:
            get(url, timeout=1)
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"{url} did not come up")


class Processes:
    """Started processes; `close()` kills whatever is still running, group and all."""

    def __init__(self, env: Mapping[str, str | None], log_dir: Path) -> None:
        self.env, self.log_dir = env, log_dir
        self.started: list[subprocess.Popen[str]] = []

    def start(self, *args: str, **overrides: str | None) -> subprocess.Popen[str]:
        env = dict(os.environ)
        for key, value in {**self.env, **overrides}.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = str(value)
        log = self.log_dir / f"{args[0]}-{len(self.started)}.log"
        with log.open("w") as stderr:  # a file, not a pipe nobody reads: a full pipe would block the process
            proc = subprocess.Popen(
                [*PLATE_BOT, *args],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                text=True,
                start_new_session=True,  # its own group: killpg reaches the work-horse and helm too
            )
        LOGS[proc.pid] = log
        self.started.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
            # Leftovers of a process that exited by itself (an orphaned helm) share its group id.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)


@contextlib.contextmanager
def processes(env: Mapping[str, str | None], log_dir: Path) -> Iterator[Processes]:
    procs = Processes(env, log_dir)
    try:
        yield procs
    finally:
        procs.close()
