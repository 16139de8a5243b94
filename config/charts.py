"""Where an app's chart comes from: a directory, an OCI registry, a Helm repository or a git repository.

`chart_source` turns what the environments file says (`chart`, `version`, `repo`, `git`, `ref`, `path`)
into one `ChartSource`; `ChartPolicy` says which hosts plate-bot may fetch charts from. Both are pure:
the worker's fetcher (workers.charts) does the network and file work and asks `ChartPolicy.refusal` again
for every URL it is about to open, since a Helm repository's index may point anywhere.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

# host[:port], as registries and git servers are named.
HOST = r"[A-Za-z0-9]([A-Za-z0-9.-]{0,252})(:[0-9]{1,5})?"
# OCI repository path components (the distribution spec's grammar).
_REPOSITORY = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
OCI_URL = re.compile(rf"^oci://(?P<host>{HOST})/(?P<repository>{_REPOSITORY})$")
# A chart version as helm accepts it (SemVer 2; OCI tags carry `+` as `_`).
VERSION = r"^v?[0-9]+(\.[0-9]+){0,2}(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$"
# A chart's name in a Helm repository index.
CHART_NAME = r"^[a-z0-9]([-a-z0-9_.]{0,62})$"
# A git branch, tag or commit (no option-like or revision-range syntax: it becomes an argv element).
GIT_REF = r"^(?!-)(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9._/-]{0,254}$"
# A directory inside the git repository (relative, no `..`).
REPO_PATH = r"^(?!/)(?!.*(^|/)\.\.(/|$))[A-Za-z0-9._/-]{1,255}$"

Kind = Literal["local", "oci", "repo", "git"]


def _host(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


def is_private_host(host: str) -> bool:
    """True for a literal private, loopback, link-local or otherwise internal address (names are resolved
    and checked by the fetcher)."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return host in ("localhost",) or host.endswith((".localhost", ".local", ".internal"))
    return not address.is_global


@dataclass(frozen=True)
class ChartSource:
    """One chart location. `location` is the directory (local), `oci://host/repo` (oci), the repository
    URL (repo) or the git URL (git)."""

    kind: Kind
    location: str
    name: str = ""  # the chart's name in a Helm repository
    version: str | None = None
    ref: str | None = None  # git branch, tag or commit; None: the remote's HEAD
    path: str = ""  # the chart's directory in the git repository

    @property
    def host(self) -> str:
        return "" if self.kind == "local" else _host(self.location)

    @property
    def is_remote(self) -> bool:
        return self.kind != "local"

    @property
    def short(self) -> str:
        """A short name for the card: a directory's name, else the source described."""
        return self.location.rstrip("/").rsplit("/", 1)[-1] if self.kind == "local" else self.describe()

    def describe(self) -> str:
        """How the card and the thread name it (no credentials: URLs with user info are refused)."""
        if self.kind == "oci":
            return f"{self.location}:{self.version}"
        if self.kind == "repo":
            return f"{self.name} {self.version} from {self.location}"
        if self.kind == "git":
            where = f"/{self.path}" if self.path else ""
            return f"{self.location}{where} @ {self.ref or 'HEAD'}"
        return self.location


def chart_source(
    chart: str, version: str | None, repo: str | None, git: str | None, ref: str | None, path: str | None
) -> ChartSource:
    """The source the fields describe; ValueError naming the field when they do not fit together."""
    if git:
        if chart or repo or version:
            raise ValueError("a git chart source takes `git`, `ref` and `path`, not `chart`, `repo` or `version`")
        parts = urlsplit(git)
        if parts.scheme not in ("https", "file") or (parts.scheme == "https" and not parts.hostname):
            raise ValueError(f"git: {git!r} is not an https:// or file:// URL")
        if parts.username or parts.password or parts.query or parts.fragment:
            raise ValueError("git: the URL may not carry credentials, a query or a fragment")
        if ref is not None and not re.match(GIT_REF, ref):
            raise ValueError(f"ref: {ref!r} is not a branch, tag or commit name")
        if path is not None and not re.match(REPO_PATH, path):
            raise ValueError(f"path: {path!r} is not a relative directory inside the repository")
        return ChartSource("git", git.rstrip("/"), ref=ref, path=(path or "").strip("/"))
    if ref is not None or path is not None:
        raise ValueError("`ref` and `path` go with `git:`")
    if not chart:
        raise ValueError("a chart is needed: `chart` (a directory or oci://…), `chart` + `repo`, or `git`")
    if version is not None and not re.match(VERSION, version):
        raise ValueError(f"version: {version!r} is not a chart version like 1.4.2")
    if repo:
        parts = urlsplit(repo)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError(f"repo: {repo!r} is not an https:// Helm repository URL")
        if parts.username or parts.password or parts.query or parts.fragment:
            raise ValueError("repo: the URL may not carry credentials, a query or a fragment")
        if not re.match(CHART_NAME, chart):
            raise ValueError(f"chart: with `repo`, {chart!r} must be the chart's name in the repository")
        if version is None:
            raise ValueError("a chart from a Helm repository needs `version` (what is approved must be pinned)")
        return ChartSource("repo", repo.rstrip("/"), name=chart, version=version)
    if chart.startswith("oci://"):
        match = OCI_URL.match(chart)
        if not match:
            raise ValueError(f"chart: {chart!r} is not oci://host/project/chart")
        if version is None:
            raise ValueError("an oci:// chart needs `version` (what is approved must be pinned)")
        return ChartSource("oci", chart, name=match["repository"].rsplit("/", 1)[-1], version=version)
    if "://" in chart:
        raise ValueError(f"chart: {chart!r}: use a directory, oci://…, `repo:` with the chart's name, or `git:`")
    if version is not None:
        raise ValueError("`version` goes with an oci:// chart or `repo`; a directory's version is in its Chart.yaml")
    return ChartSource("local", chart)


class ChartPolicy(BaseModel):
    """Which hosts charts may come from. Each environment's Harbor registry host is allowed too."""

    model_config = ConfigDict(extra="forbid")

    # Registries, Helm repositories and git servers (host or host:port) charts may be fetched from.
    allowed_hosts: list[Annotated[str, Field(pattern=f"^{HOST}$")]] = []
    # git: file:// URLs (a repository on the worker's own disk).
    allow_file_urls: bool = False
    # git: hosts that are, or resolve to, private, loopback or link-local addresses.
    allow_private_hosts: bool = False
    # Registries reached over plain HTTP instead of HTTPS (an in-cluster registry without TLS).
    plain_http_hosts: list[Annotated[str, Field(pattern=f"^{HOST}$")]] = []

    def refusal(self, url: str, also_allowed: frozenset[str] = frozenset(), *, git: bool = False) -> str | None:
        """Why plate-bot will not open `url`, or None. `also_allowed`: the environment's registry hosts."""
        parts = urlsplit(url)
        if parts.scheme == "file":
            return None if git and self.allow_file_urls else f"{url}: file:// chart sources are not allowed"
        if parts.scheme not in ("https", "http", "oci"):
            return f"{url}: only https:// (and oci://) chart sources are fetched"
        netloc = (parts.hostname or "").lower() + (f":{parts.port}" if parts.port else "")
        allowed = {h.lower() for h in (*self.allowed_hosts, *also_allowed)}
        if netloc not in allowed and (parts.hostname or "").lower() not in allowed:
            return f"{netloc or url}: not in charts.allowed_hosts"
        if parts.scheme == "http" and netloc not in {h.lower() for h in self.plain_http_hosts}:
            return f"{url}: plain http is only used for charts.plain_http_hosts"
        if git and not self.allow_private_hosts and is_private_host(parts.hostname or ""):
            return f"{netloc}: a private address; set charts.allow_private_hosts to fetch git charts from it"
        return None

    def base_url(self, host: str) -> str:
        """The registry API's base URL for `host` (host[:port])."""
        scheme = "http" if host.lower() in {h.lower() for h in self.plain_http_hosts} else "https"
        return f"{scheme}://{host}"
