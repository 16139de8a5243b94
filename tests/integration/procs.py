"""Real `plate-bot` processes for the tests: start them with the test environment, probe them over HTTP,
and always take them down (their whole process group: work-horses, helm, an embedded redis-server)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ROOT
from tests.processes import reap_strays, stop
from tests.waiting import wait_until

PLATE_BOT = [sys.executable, "-m", "bot"]
LOGS: dict[int, Path] = {}  # pid -> the file its stderr (the JSON logs) goes to


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


def stderr_of(proc: subprocess.Popen[str]) -> str:
    return LOGS[proc.pid].read_text()


def up(url: str, proc: subprocess.Popen[str], timeout: float = 20) -> None:
    """Wait until `url` answers at all (any status), failing early if the process died."""

    def answers() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"exited {proc.returncode}:\n{stderr_of(proc)}")
        try:
            get(url, timeout=1)
            return True
        except OSError:
            return False

    wait_until(answers, timeout, f"{url} to come up", diagnose=lambda: stderr_of(proc))


def serving_url(proc: subprocess.Popen[str], timeout: float = 20) -> str:
    """The base URL of a `plate-bot serve --port 0`: the port it bound, from its "serving" log line."""

    def port() -> int | None:
        for line in stderr_of(proc).splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict) and record.get("message") == "serving":
                    return int(record["port"])
        if proc.poll() is not None:
            raise AssertionError(f"exited {proc.returncode}:\n{stderr_of(proc)}")
        return None

    return f"http://127.0.0.1:{wait_until(port, timeout, 'the serving line', diagnose=lambda: stderr_of(proc))}"


class Processes:
    """Started processes; `close()` stops whatever is still running, group and all (SIGTERM, then SIGKILL
    after a bound), and the embedded redis-server of any started without REDIS_URL."""

    def __init__(self, env: Mapping[str, str | None], log_dir: Path) -> None:
        self.env, self.log_dir = env, log_dir
        self.started: list[subprocess.Popen[str]] = []
        self.data_dirs: list[Path] = []  # where embedded redis-servers work

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
        if not env.get("REDIS_URL") and env.get("PLATE_DATA_DIR"):
            self.data_dirs.append(Path(env["PLATE_DATA_DIR"]))
        return proc

    def close(self) -> None:
        for proc in self.started:
            # Leftovers of a process that exited by itself (an orphaned helm) share its group id.
            stop(proc, group=True)
        reap_strays(*self.data_dirs)


@contextlib.contextmanager
def processes(env: Mapping[str, str | None], log_dir: Path) -> Iterator[Processes]:
    procs = Processes(env, log_dir)
    try:
        yield procs
    finally:
        procs.close()
