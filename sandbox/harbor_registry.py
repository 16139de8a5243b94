"""A Harbor on loopback, for the image-digest tests and `plate-bot demo`: the registry v2 API (Basic auth,
`/v2/`, manifests by tag or digest, `tags/list`, the distribution spec's error bodies) and the slice of Harbor's
own API v2.0 plate-bot reads (`GET /api/v2.0/projects/{p}/repositories/{r}/artifacts/{digest}` with
`push_time`, `scan_overview` and `accessories`, in the shapes of Harbor 2.x's api/v2.0/swagger.yaml:
Artifact, NativeReportSummary, VulnerabilitySummary, Scanner, Accessory).

Images are synthetic: each tag gets an OCI image manifest whose bytes (and so digest) depend on the tag and a
`marker`, so `push(..., marker=...)` again "re-pushes" the tag.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
REPORT = "application/vnd.security.vulnerability.report; version=1.1"


def _now(offset: float = 0.0) -> str:
    moment = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=offset)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


@dataclass
class _Artifact:
    body: bytes
    pushed: str
    scan: dict[str, Any] | None = None
    signed: bool = False

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.body).hexdigest()


@dataclass
class FakeHarbor:
    """`with FakeHarbor(user, password) as harbor:` serves on `harbor.url` (`harbor.host` as images name it)."""

    user: str
    password: str
    repos: dict[str, dict[str, _Artifact]] = field(default_factory=dict)  # repository -> tag -> artifact
    requests: list[str] = field(default_factory=list)  # "GET /v2/…" as they arrive

    def push(self, repository: str, tag: str, *, marker: str = "", pushed_ago: float = 3600) -> str:
        """An image under `tag` (digest depends on repository, tag and marker); returns its digest."""
        config = {"architecture": "amd64", "os": "linux", "config": {"Labels": {"tag": tag, "marker": marker}}}
        body = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": len(json.dumps(config)),
                       "digest": "sha256:" + hashlib.sha256(json.dumps(config).encode()).hexdigest()},
            "layers": [],
        }).encode()  # fmt: skip
        artifact = _Artifact(body, _now(pushed_ago))
        self.repos.setdefault(repository, {})[tag] = artifact
        return artifact.digest

    def scanned(self, repository: str, tag: str, *, critical: int = 0, high: int = 0, medium: int = 0,
                low: int = 0, status: str = "Success", ago: float = 1800) -> None:  # fmt: skip
        counts = {"Critical": critical, "High": high, "Medium": medium, "Low": low}
        self.repos[repository][tag].scan = {
            "report_id": f"report-{tag}",
            "scan_status": status,
            "severity": next((k for k, v in counts.items() if v), "None"),
            "duration": 12,
            "summary": {"total": sum(counts.values()), "fixable": sum(counts.values()) // 2, "summary": counts},
            "start_time": _now(ago + 12),
            "end_time": _now(ago),
            "complete_percent": 100,
            "scanner": {"name": "Trivy", "vendor": "Aqua Security", "version": "v0.50.1"},
        }

    def sign(self, repository: str, tag: str) -> None:
        self.repos[repository][tag].signed = True

    # --- serving ----------------------------------------------------------------------------------------

    def __enter__(self) -> FakeHarbor:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                outer.requests.append(f"GET {self.path}")
                status, headers, body = outer.answer(self.path, self.headers.get("Authorization", ""))
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def _authorized(self, header: str) -> bool:
        expected = "Basic " + base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        return header == expected

    @staticmethod
    def _errors(status: int, code: str, message: str) -> tuple[int, dict[str, str], bytes]:
        body = json.dumps({"errors": [{"code": code, "message": message}]}).encode()
        return status, {"Content-Type": "application/json"}, body

    def answer(self, path: str, auth: str) -> tuple[int, dict[str, str], bytes]:
        parts = urlsplit(path)
        if not self._authorized(auth):
            challenge = {"WWW-Authenticate": 'Basic realm="harbor"', "Content-Type": "application/json"}
            return 401, challenge, b'{"errors":[{"code":"UNAUTHORIZED","message":"unauthorized"}]}'
        if parts.path == "/v2/":
            return 200, {"Content-Type": "application/json"}, b"{}"
        if parts.path.startswith("/api/v2.0/projects/"):
            return self._artifact(parts.path)
        if parts.path.startswith("/v2/") and "/manifests/" in parts.path:
            repository, _, reference = parts.path[len("/v2/") :].partition("/manifests/")
            tags = self.repos.get(repository)
            if tags is None:
                return self._errors(404, "NAME_UNKNOWN", "repository name not known to registry")
            artifact = tags.get(reference) or next((a for a in tags.values() if a.digest == reference), None)
            if artifact is None:
                return self._errors(404, "MANIFEST_UNKNOWN", "manifest unknown")
            return 200, {"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": artifact.digest}, artifact.body
        if parts.path.startswith("/v2/") and parts.path.endswith("/tags/list"):
            repository = parts.path[len("/v2/") : -len("/tags/list")]
            if repository not in self.repos:
                return self._errors(404, "NAME_UNKNOWN", "repository name not known to registry")
            body = json.dumps({"name": repository, "tags": sorted(self.repos[repository])}).encode()
            return 200, {"Content-Type": "application/json"}, body
        return self._errors(404, "NOT_FOUND", "not found")

    def _artifact(self, path: str) -> tuple[int, dict[str, str], bytes]:
        # /api/v2.0/projects/{project}/repositories/{repo, URL-encoded twice}/artifacts/{digest}
        rest = path[len("/api/v2.0/projects/") :]
        project, _, rest = rest.partition("/repositories/")
        repo, _, digest = rest.partition("/artifacts/")
        repository = f"{unquote(project)}/{unquote(unquote(repo))}"
        found = next((a for a in self.repos.get(repository, {}).values() if a.digest == digest), None)
        if found is None:
            return 404, {"Content-Type": "application/json"}, b'{"errors":[{"code":"NOT_FOUND","message":"not found"}]}'
        doc: dict[str, Any] = {
            "digest": found.digest,
            "media_type": OCI_MANIFEST,
            "manifest_media_type": OCI_MANIFEST,
            "type": "IMAGE",
            "push_time": found.pushed,
            "tags": None,
            "accessories": [
                {"type": "signature.cosign", "digest": "sha256:" + "c" * 64, "subject_artifact_digest": found.digest}
            ] if found.signed else None,
        }  # fmt: skip
        if found.scan is not None:
            doc["scan_overview"] = {REPORT: found.scan}
        return 200, {"Content-Type": "application/json"}, json.dumps(doc).encode()
