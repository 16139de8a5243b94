"""Charts from where teams keep them: a chart directory on the worker's disk whatever the source.

- `oci://host/project/chart` + version: the manifest the tag names now, its chart layer checked against
  its digest (and the provenance file's checksum when one was pushed), cached per manifest digest.
- a Helm repository: `index.yaml`, the entry for the chart's name and version, its archive checked
  against the index's digest (and `.prov` when published), cached per archive digest.
- git: the commit the ref names now, fetched alone (`--depth 1`), cached per commit.

The pin (digest or commit) goes into the plan's digest, so an approval binds to the chart's content and a
tag re-pushed, a re-published version or a branch moved since the approval refuses the deploy. Every URL is
checked against `charts:` in the config before it is opened, including an index's archive URLs. Archives
are unpacked only when every member stays inside the chart's directory and none is a link or a device.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import shutil
import socket
import tarfile
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urljoin, urlsplit

import yaml

from config.charts import ChartPolicy, ChartSource, is_private_host
from workers import git
from workers.registry import MAX_INDEX_BYTES, ChartFetchError, download, pull_chart

# Credentials for a registry host (host[:port]): (username, password) or (None, None).
Credentials = Callable[[str], tuple[str | None, str | None]]
MAX_UNPACKED_BYTES = 100 * 1024 * 1024
MAX_MEMBERS = 5000
KEEP_PER_KIND = 50
_PROV_FILE = re.compile(r"^\s+(?P<name>\S+\.tgz):\s*(?P<digest>sha256:[0-9a-f]{64})\s*$", re.M)


def anonymous(_host: str) -> tuple[str | None, str | None]:
    return None, None


@dataclass(frozen=True)
class FetchedChart:
    path: Path  # the chart directory (Chart.yaml at its top)
    source: ChartSource
    pin: str | None = None  # sha256:… (oci, repo) or the commit (git); None for a directory
    provenance: str = ""  # what the provenance check found ("" where there is none to check)

    def describe(self) -> str:
        """The card's chart-source line: where from, and exactly what."""
        if self.pin is None:
            return ""
        pin = f"commit {self.pin[:12]}" if self.source.kind == "git" else f"{self.pin[:19]}…"
        extra = f" · {self.provenance}" if self.provenance else ""
        return f"{self.source.describe()} @ {pin}{extra}"


def safe_unpack(archive: bytes, dest: Path) -> Path:
    """Unpack a chart archive into `dest` (new) and return its chart directory; ChartFetchError for an
    archive with a member outside one top-level directory, a link, a device, or too much data."""
    try:
        tar = tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz")  # noqa: SIM115 - closed by the with below
    except (tarfile.TarError, OSError, EOFError):
        raise ChartFetchError("the chart archive is not a gzipped tar") from None
    with tar:
        try:
            members = tar.getmembers()
        except (tarfile.TarError, OSError, EOFError):
            raise ChartFetchError("the chart archive is damaged") from None
        if len(members) > MAX_MEMBERS:
            raise ChartFetchError(f"the chart archive has more than {MAX_MEMBERS} files")
        tops: set[str] = set()
        total = 0
        for member in members:
            name = PurePosixPath(member.name)
            if name.is_absolute() or ".." in name.parts or not name.parts or "\\" in member.name:
                raise ChartFetchError(f"the chart archive's path `{member.name[:80]}` escapes its directory")
            if not (member.isfile() or member.isdir()):
                raise ChartFetchError(f"the chart archive's `{member.name[:80]}` is a link or a special file")
            total += max(member.size, 0)
            tops.add(name.parts[0])
        if len(tops) != 1 or total > MAX_UNPACKED_BYTES:
            raise ChartFetchError("the chart archive must hold one chart directory of at most 100 MiB")
        dest.mkdir(parents=True)
        if hasattr(tarfile, "data_filter"):  # Python 3.11.4+: the stdlib's own refusal too
            tar.extractall(dest, filter="data")
        else:  # every member was checked above: plain files and directories inside one directory
            tar.extractall(dest)  # noqa: S202
    chart = dest / tops.pop()
    if not (chart / "Chart.yaml").is_file():
        raise ChartFetchError("the chart archive has no Chart.yaml at its top")
    return chart


def provenance_check(provenance: bytes | None, archive: bytes, archive_name: str) -> str:
    """Compare the archive with the checksum its provenance file states. The PGP signature is not
    verified (no keyring is configured); a checksum that differs refuses the chart."""
    if provenance is None:
        return ""
    digest = "sha256:" + hashlib.sha256(archive).hexdigest()
    stated = {m["name"]: m["digest"] for m in _PROV_FILE.finditer(provenance.decode("utf-8", "replace"))}
    if not stated:
        raise ChartFetchError("the provenance file names no archive checksum")
    if stated.get(archive_name, next(iter(stated.values()))) != digest:
        raise ChartFetchError("the chart archive does not match the checksum in its provenance file")
    return "provenance checksum matches"


class ChartFetcher:
    """Turns a `ChartSource` into a chart directory, through a cache shared by the worker's jobs."""

    def __init__(self, policy: ChartPolicy, cache: Path, credentials: Credentials = anonymous) -> None:
        self.policy = policy
        self.cache = cache
        self.credentials = credentials

    def fetch(self, source: ChartSource, allowed: frozenset[str] = frozenset()) -> FetchedChart:
        if source.kind == "local":
            return FetchedChart(Path(source.location), source)
        refusal = self.policy.refusal(source.location, allowed, git=source.kind == "git")
        if refusal:
            raise ChartFetchError(f"refused: {refusal}")
        if source.kind == "oci":
            return self._oci(source)
        if source.kind == "repo":
            return self._repo(source, allowed)
        return self._git(source)

    # --- the cache ------------------------------------------------------------------------------------

    def _slot(self, kind: str, pin: str) -> Path:
        return self.cache / kind / pin.replace(":", "-")

    def _cached(self, kind: str, pin: str) -> Path | None:
        slot = self._slot(kind, pin)
        marker = slot / ".chart"
        if not marker.is_file():
            return None
        with contextlib.suppress(OSError):
            os.utime(slot)  # recently used: pruned last
        return slot / marker.read_text().strip()

    def _store(self, kind: str, pin: str, fill: Callable[[Path], Path]) -> Path:
        """The chart directory cached for `pin`, filled by `fill(new_dir)` (which returns the chart
        directory inside it) when missing. Filled beside the slot and renamed in: concurrent jobs see a
        whole chart or none."""
        cached = self._cached(kind, pin)
        if cached is not None:
            return cached
        slot = self._slot(kind, pin)
        marker = slot / ".chart"
        slot.parent.mkdir(parents=True, exist_ok=True)
        work = slot.parent / f".tmp-{uuid.uuid4().hex}"
        try:
            chart = fill(work / "c")
            (work / "c" / ".chart").write_text(str(chart.relative_to(work / "c")))
            try:
                os.rename(work / "c", slot)
            except OSError:  # another job filled it first
                if not marker.is_file():
                    raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
        self._prune(slot.parent)
        return slot / marker.read_text().strip()

    def _prune(self, kind_dir: Path) -> None:
        slots = [p for p in kind_dir.iterdir() if p.is_dir() and not p.name.startswith(".tmp-")]
        slots.sort(key=lambda p: p.stat().st_mtime, reverse=True)
        for old in slots[KEEP_PER_KIND:]:
            shutil.rmtree(old, ignore_errors=True)

    # --- sources --------------------------------------------------------------------------------------

    def _oci(self, source: ChartSource) -> FetchedChart:
        parts = urlsplit(source.location)
        host = parts.netloc.lower()
        repository = parts.path.lstrip("/")
        tag = (source.version or "").replace("+", "_")  # OCI tags cannot hold `+` (helm's own rule)
        user, password = self.credentials(host)
        pulled = pull_chart(self.policy.base_url(host), repository, tag, user, password)
        checked = provenance_check(pulled.provenance, pulled.archive, f"{source.name}-{source.version}.tgz")
        path = self._store("oci", pulled.digest, lambda dest: safe_unpack(pulled.archive, dest))
        return FetchedChart(path, source, pulled.digest, checked)

    def _repo(self, source: ChartSource, allowed: frozenset[str]) -> FetchedChart:
        user, password = self.credentials(urlsplit(source.location).netloc.lower())
        index_url = source.location + "/index.yaml"
        raw = download(index_url, user, password, limit=MAX_INDEX_BYTES)
        if raw is None:
            raise ChartFetchError(f"{index_url} not found: is {source.location} a Helm repository?")
        try:
            index = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise ChartFetchError(f"{index_url} is not valid YAML") from None
        entries = (index or {}).get("entries") if isinstance(index, dict) else None
        versions = entries.get(source.name) if isinstance(entries, dict) else None
        if not isinstance(versions, list):
            raise ChartFetchError(f"no chart `{source.name}` in {source.location}")
        entry = next((e for e in versions if isinstance(e, dict) and str(e.get("version")) == source.version), None)
        if entry is None or not entry.get("urls"):
            have = ", ".join(str(e.get("version")) for e in versions[:5] if isinstance(e, dict))
            raise ChartFetchError(f"{source.name} {source.version} not in {source.location} (newest: {have})")
        url = urljoin(source.location + "/", str(entry["urls"][0]))
        refusal = self.policy.refusal(url, allowed)
        if refusal:
            raise ChartFetchError(f"the index points outside the allowed hosts: {refusal}")
        stated = str(entry.get("digest") or "")
        if stated and not re.fullmatch(r"[0-9a-f]{64}", stated):
            raise ChartFetchError(f"the index's digest for {source.name} {source.version} is not a sha256")
        cached = self._cached("repo", "sha256:" + stated) if stated else None
        if cached is not None:
            return FetchedChart(cached, source, "sha256:" + stated)
        archive = download(url, user, password)
        if archive is None:
            raise ChartFetchError(f"{url} not found (the index lists it)")
        digest = hashlib.sha256(archive).hexdigest()
        if stated and digest != stated:
            raise ChartFetchError(f"{source.name} {source.version}: the archive does not match the index's digest")
        checked = provenance_check(download(url + ".prov", user, password), archive, url.rsplit("/", 1)[-1])
        if not stated:
            checked = "; ".join(x for x in ("the index states no digest", checked) if x)
        path = self._store("repo", "sha256:" + digest, lambda dest: safe_unpack(archive, dest))
        return FetchedChart(path, source, "sha256:" + digest, checked)

    def _git(self, source: ChartSource) -> FetchedChart:
        allow_file = self.policy.allow_file_urls
        host = urlsplit(source.location).hostname or ""
        if host and not self.policy.allow_private_hosts and _resolves_private(host):
            raise ChartFetchError(f"refused: {host} resolves to a private address (charts.allow_private_hosts)")
        try:
            commit = git.resolve(source.location, source.ref, allow_file=allow_file)

            def fill(dest: Path) -> Path:
                git.checkout(source.location, commit, dest, allow_file=allow_file)
                return dest

            root = self._store("git", commit, fill).resolve()
        except git.GitError as exc:
            raise ChartFetchError(str(exc)) from None
        path = (root / source.path).resolve() if source.path else root
        if not path.is_relative_to(root) or not (path / "Chart.yaml").is_file():
            raise ChartFetchError(f"no chart (Chart.yaml) at `{source.path or '.'}` in {source.location}")
        for item in path.rglob("*"):
            if item.is_symlink() and not item.resolve().is_relative_to(root):
                raise ChartFetchError(f"`{item.relative_to(root)}` links outside the repository")
        return FetchedChart(path, source, commit)


def _resolves_private(host: str) -> bool:
    if is_private_host(host):
        return True
    try:
        infos = socket.getaddrinfo(host, 443, proto=socket.IPPROTO_TCP)
    except OSError:
        return False  # unresolvable: git's own error says so
    return any(is_private_host(str(info[4][0])) for info in infos)


def default_cache() -> Path:
    return Path(tempfile.gettempdir()) / "plate-charts"
