"""The one module that runs git: resolving a ref and checking out one commit of a chart repository.

argv only, a minimal environment (no plate-bot secret, no credential helper, no prompt), no hooks, no
submodules, no `ext::` or other protocols beyond https and (when configured) file. Only the commit asked for
is fetched (`--depth 1`).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

from core.redact import REDACTOR
from workers.lifetime import preexec_die_with_parent

GIT_BIN = "git"
TIMEOUT = 120
COMMIT = re.compile(r"^[0-9a-f]{40}$")


class GitError(Exception):
    """git failed; the message is safe to show."""


def _environment() -> dict[str, str]:
    keep = ("PATH", "HOME", "TMPDIR", "LANG", "SSL_CERT_FILE", "SSL_CERT_DIR", "HTTPS_PROXY", "NO_PROXY",
            "https_proxy", "no_proxy")  # fmt: skip
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.update(
        GIT_TERMINAL_PROMPT="0",
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_ASKPASS="/bin/false",
        GIT_ALLOW_PROTOCOL="https:file",
    )
    return env


def _run(args: list[str], cwd: Path | None = None, *, allow_file: bool = False) -> str:
    argv = [
        GIT_BIN,
        "-c", f"protocol.file.allow={'always' if allow_file else 'never'}",
        "-c", "core.hooksPath=/dev/null",
        "-c", "credential.helper=",
        *args,
    ]  # fmt: skip
    try:
        done = subprocess.run(
            argv, cwd=cwd, env=_environment(), capture_output=True, text=True, timeout=TIMEOUT,
            preexec_fn=preexec_die_with_parent(signal.SIGTERM), check=False,
        )  # fmt: skip
    except FileNotFoundError:
        raise GitError("git is not installed in this worker's image") from None
    except subprocess.TimeoutExpired:
        raise GitError(f"git {args[0]} did not finish in {TIMEOUT}s") from None
    if done.returncode != 0:
        last = REDACTOR((done.stderr.strip().splitlines() or ["(no output)"])[-1])
        raise GitError(f"git {args[0]} failed: {last[:300]}")
    return done.stdout


def resolve(url: str, ref: str | None, *, allow_file: bool = False) -> str:
    """The commit `ref` (a branch, tag or commit; None: HEAD) names at `url` now."""
    if ref is not None and COMMIT.match(ref):
        return ref
    wanted = ref or "HEAD"
    out = _run(["ls-remote", "--", url, wanted, f"refs/tags/{wanted}^{{}}"], allow_file=allow_file)
    found: dict[str, str] = {}
    for line in out.splitlines():
        sha, _, name = line.partition("\t")
        found[name] = sha
    # An annotated tag's commit (^{}) before the tag object; a tag before a branch of the same name.
    for name in (f"refs/tags/{wanted}^{{}}", f"refs/tags/{wanted}", f"refs/heads/{wanted}", wanted):
        if name in found and COMMIT.match(found[name]):
            return found[name]
    raise GitError(f"`{wanted}` is not a branch, tag or commit of {url}")


def checkout(url: str, commit: str, dest: Path, *, allow_file: bool = False) -> None:
    """Exactly `commit` of `url` into the new directory `dest` (no .git left behind)."""
    if not COMMIT.match(commit):
        raise GitError("refusing to check out something that is not a commit id")
    dest.mkdir(parents=True)
    _run(["init", "-q", str(dest)], allow_file=allow_file)
    _run(["fetch", "-q", "--depth", "1", "--no-tags", "--", url, commit], cwd=dest, allow_file=allow_file)
    _run(["-c", "advice.detachedHead=false", "checkout", "-q", "FETCH_HEAD"], cwd=dest, allow_file=allow_file)
    got = _run(["rev-parse", "HEAD"], cwd=dest).strip()
    if got != commit:
        raise GitError(f"git checked out {got[:12]}, not {commit[:12]}")
    shutil.rmtree(dest / ".git")
