"""Processes the tests start: a free loopback port for them, stopping them for good, and finding any that
outlived their test.

Stopping is SIGTERM first (a plate-bot process then shuts down the way it does in production, and stops
the embedded redis-server it may have started), SIGKILL after a bound, and a wait either way, so nothing
is left running or unreaped. An embedded redis-server daemonizes into a session of its own: killing its
plate-bot's process group does not reach it, which is why `reap_strays` looks for processes by the
directory they run in (a redis-server works in its data directory).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
from collections.abc import Iterable
from pathlib import Path

import psutil

GRACE = 5.0  # seconds between SIGTERM and SIGKILL


def free_port() -> int:
    """A loopback port nothing listens on right now, for a process that cannot bind port 0 and say which
    port it got (a redis-server's TLS port, a worker's --metrics-port, where 0 means none)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop(proc: subprocess.Popen, grace: float = GRACE, *, group: bool = False) -> bool:
    """SIGTERM `proc` (its whole process group with `group`, for a process started in a session of its
    own), wait up to `grace` seconds, then SIGKILL it with all its descendants (a work-horse in a group of
    its own, the helm it runs); it is reaped either way. With `group`, whatever is left of the group
    afterwards (an orphaned helm) is killed too.
    True when it had exited by itself or on SIGTERM, False when it took SIGKILL."""
    graceful = True
    if proc.poll() is None:
        _signal(proc, signal.SIGTERM, group)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            graceful = False
            tree = _descendants(proc.pid)
            _signal(proc, signal.SIGKILL, group)
            reap(tree, grace=0)
            proc.wait(10)
    if group:  # a group's leader may be gone while its members are not
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    return graceful


def _signal(proc: subprocess.Popen, sig: signal.Signals, group: bool) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _inside(path: str, directories: Iterable[Path]) -> bool:
    return any(path == str(d) or path.startswith(f"{d}/") for d in directories)


def strays(directories: Iterable[Path]) -> list[psutil.Process]:
    """Live processes (zombies are not) other than this one whose working directory or command line is
    inside one of `directories`."""
    dirs = [Path(d).resolve() for d in directories]
    found = []
    for proc in psutil.process_iter(["pid", "cwd", "cmdline", "status"]):
        with contextlib.suppress(psutil.Error):
            if proc.pid == os.getpid() or proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            cwd = (proc.info["cwd"] or "").removesuffix(" (deleted)")
            if _inside(cwd, dirs) or any(_inside(arg, dirs) for arg in proc.info["cmdline"] or []):
                found.append(proc)
    return found


def reap(procs: list[psutil.Process], grace: float = GRACE) -> None:
    """SIGTERM, then SIGKILL after `grace` for those still running (at once with no grace), and wait."""
    if grace > 0:
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.terminate()
        _gone, alive = psutil.wait_procs(procs, timeout=grace)
    else:
        alive = procs
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=5)


def reap_strays(*directories: Path, grace: float = GRACE) -> None:
    """Stop whatever still runs in `directories` (an embedded redis-server in a data directory)."""
    reap(strays(directories), grace)


def describe(proc: psutil.Process) -> str:
    try:
        with proc.oneshot():
            cwd = proc.cwd()
            return f"pid {proc.pid} (parent {proc.ppid()}, {proc.status()}) in {cwd}: {' '.join(proc.cmdline())}"
    except psutil.Error as exc:
        return f"pid {proc.pid}: {type(exc).__name__}"


def session_leftovers(directories: Iterable[Path], grace: float = 3.0) -> list[psutil.Process]:
    """Processes the test session started that are still alive: this process's descendants (not zombies)
    and anything running inside `directories` (the session's temporary directories, where a daemonized
    embedded redis-server works). Those still exiting are given `grace` seconds."""

    def find() -> list[psutil.Process]:
        found: dict[int, psutil.Process] = {}
        for proc in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if proc.status() != psutil.STATUS_ZOMBIE:
                    found[proc.pid] = proc
        found.update((p.pid, p) for p in strays(directories))
        return list(found.values())

    leftovers = find()
    if leftovers:
        psutil.wait_procs(leftovers, timeout=grace)
        leftovers = find()
    return leftovers
