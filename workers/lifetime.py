"""Child processes that die with their parent (Linux `PR_SET_PDEATHSIG`).

A worker that is SIGKILLed (OOM killer, `kill -9`, a node going away) runs no cleanup code. Without
this, its work-horse (RQ puts it in its own process group) would carry on alone, and the `helm` it
started (in its own session, so a timeout can kill helm's whole group) would be re-parented to init and
keep changing the release while the housekeeper already reported the job lost and freed the lock.
With it the kernel ends each child when its parent dies: horse when the worker dies, helm (with SIGTERM,
which helm answers by marking the release failed) when the horse dies.

The kernel sends the signal when the *thread* that started the child exits; every caller here starts
the child from the thread that then waits for it, so in practice that is "when the process dies".
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from collections.abc import Callable
from functools import lru_cache

PR_SET_PDEATHSIG = 1


@lru_cache(maxsize=1)
def _prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None
    return libc.prctl


def die_with_parent(sig: int, parent_pid: int) -> None:
    """Ask the kernel to send `sig` to this process when its parent dies; if the parent already died
    (we were re-parented before asking), act on it now. A no-op where prctl does not exist."""
    prctl = _prctl()
    if prctl is None:
        return
    prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
    if os.getppid() != parent_pid:
        os.kill(os.getpid(), sig)


def preexec_die_with_parent(sig: int) -> Callable[[], None] | None:
    """A `preexec_fn` for subprocess.Popen doing die_with_parent in the child. Resolved up front, so the
    child (between fork and exec) runs no import or lookup, only the prctl call."""
    if _prctl() is None:
        return None
    parent = os.getpid()

    def preexec() -> None:
        die_with_parent(sig, parent)

    return preexec
