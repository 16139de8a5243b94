"""The Harbor pull-secret chain as the loopback Kubernetes API serves it, a small registry that speaks
the Bearer challenge protocol (Harbor's flow) for the chain tests, and a simulated Argo CD controller.

The real CNCF Distribution registry is in distribution.py; this fake keeps the chain tests independent
of that binary.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sandbox.harbor import (  # noqa: F401 - re-exported for the tests
    ESO_NS,
    OPENBAO_TOKEN,
    PASSWORD,
    USER,
    chain_objects,
    docker_config_json,
    eso_pod,
    external_secret,
    secret,
    secret_store,
)
from sandbox.kubeapi import FakeKubeAPI

REPO, TAG = "plate/plate-web", "1.4.0"


def seed_chain(api: FakeKubeAPI, ns: str, registry: str, **kw: Any) -> None:
    for obj in chain_objects(ns, registry, **kw):
        api.put(obj)


def verify_pods(api: FakeKubeAPI, ns: str) -> list[dict[str, Any]]:
    return [p for p in api.list("v1", "Pod", ns) if (p["metadata"].get("labels") or {}).get("plate-bot/harbor-verify")]


# --- a registry speaking the Bearer challenge protocol ----------------------------------------------------


@dataclass
class FakeRegistry:
    """`/v2/` -> 401 Bearer challenge; `/service/token` issues tokens for known users (403 for users in
    `refuse`); manifests need a token whose scope covers the repository."""

    users: dict[str, str] = field(default_factory=lambda: {USER: PASSWORD})
    images: set[tuple[str, str]] = field(default_factory=lambda: {(REPO, TAG)})
    refuse: set[str] = field(default_factory=set)
    requests: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.tokens: dict[str, tuple[str, str]] = {}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                outer.requests.append((self.path, self.headers.get("Authorization", "")))
                status, headers, body = outer.answer(self.path, self.headers.get("Authorization", ""))
                data = json.dumps(body).encode()
                self.send_response(status)
                for key, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.url = f"http://{self.host}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def challenge(self, scope: str | None = None) -> dict[str, str]:
        value = f'Bearer realm="{self.url}/service/token",service="harbor-registry"'
        return {"WWW-Authenticate": value + (f',scope="{scope}"' if scope else "")}

    def answer(self, path: str, authorization: str) -> tuple[int, dict[str, str], Any]:
        parts = urlsplit(path)
        if parts.path == "/service/token":
            user, _, password = base64.b64decode(authorization.removeprefix("Basic ")).decode().partition(":")
            if self.users.get(user) != password:
                return 401, {}, {"errors": [{"code": "UNAUTHORIZED", "message": "invalid credentials"}]}
            if user in self.refuse:
                return 403, {}, {"errors": [{"code": "DENIED", "message": "requested access is denied"}]}
            token = uuid.uuid4().hex + uuid.uuid4().hex
            scope = parse_qs(parts.query).get("scope", [""])[0]
            self.tokens[token] = (user, scope)
            return 200, {}, {"token": token, "expires_in": 300}
        bearer = authorization.removeprefix("Bearer ")
        if parts.path == "/v2/":
            return (200, {}, {}) if bearer in self.tokens else (401, self.challenge(), {"errors": []})
        m = re.fullmatch(r"/v2/(.+)/manifests/([^/]+)", parts.path)
        if not m:
            return 404, {}, {"errors": [{"code": "NOT_FOUND"}]}
        repo, ref = m[1], m[2]
        scope = f"repository:{repo}:pull"
        if self.tokens.get(bearer, ("", ""))[1] != scope:
            return (
                401,
                self.challenge(scope),
                {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]},
            )
        if (repo, ref) not in self.images:
            return 404, {}, {"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}]}
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "layers": []}
        digest = "sha256:" + hashlib.sha256(json.dumps(manifest).encode()).hexdigest()
        return 200, {"Content-Type": manifest["mediaType"], "Docker-Content-Digest": digest}, manifest

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextlib.contextmanager
def fake_registry(**kw: Any) -> Iterator[FakeRegistry]:
    reg = FakeRegistry(**kw)
    try:
        yield reg
    finally:
        reg.stop()


# --- Argo CD ---------------------------------------------------------------------------------------------


def argo_controller(
    api: FakeKubeAPI, ns: str, name: str, on_sync: Callable[[], None], *, phase: str = "Succeeded", message: str = ""
) -> list[dict[str, Any]]:
    """Play Argo CD's application controller for one Application: a requested `operation` is run on the
    next read (on_sync applies the resources), then recorded in status.operationState. Returns the list
    of operations it ran."""
    ran: list[dict[str, Any]] = []

    def hook(app: dict[str, Any]) -> dict[str, Any] | None:
        op = app.pop("operation", None)
        if op is None:
            return None
        ran.append(op)
        if phase == "Succeeded":
            on_sync()
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        app["status"] = {
            "operationState": {
                "phase": phase,
                "message": message
                or ("successfully synced (all tasks run)" if phase == "Succeeded" else "sync failed"),
                "startedAt": now,
                "finishedAt": now,
                "operation": op,
                "syncResult": {"revision": "0a1b2c3d4e5f"},
            },
            "sync": {"status": "Synced" if phase == "Succeeded" else "OutOfSync", "revision": "0a1b2c3d4e5f"},
            "health": {"status": "Healthy" if phase == "Succeeded" else "Missing"},
        }
        return app

    api.on_read("argoproj.io/v1alpha1", "Application", ns, name, hook)
    return ran
