"""A real registry on loopback for the registry check: Debian's `docker-registry` (CNCF Distribution 2.8).

Two instances share one storage directory:
- `basic`: htpasswd auth (bcrypt), the Basic flow; the test image is pushed through it.
- `token`: `auth: token` pointing at a stdlib token server here, the Bearer flow as Harbor uses it. The
  token server signs RS256 JWTs with a key whose self-signed certificate is the registry's
  `rootcertbundle`; the key id is libtrust's fingerprint of the public key, which is how Distribution
  2.8 finds the verification key.

Token server users: `robot$puller` gets pull, `robot$denied` is refused the pull scope with 403, and
`robot$noscope` gets a token without the scope (the registry answers 401 insufficient_scope).
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.processes import free_port
from tests.processes import stop as stop_process
from tests.waiting import wait_until

BINARY = "docker-registry"
REPO = "plate/plate-web"
TAG = "1.4.0"
ADMIN = ("admin", "admin-Pa55-word")
PULLER = ("robot$puller", "puller-S3cret-pw")
DENIED = ("robot$denied", "denied-S3cret-pw")
NOSCOPE = ("robot$noscope", "noscope-S3cret-pw")
SERVICE = "plate-test-registry"
ISSUER = "plate-test-token-issuer"


def binary() -> str | None:
    return shutil.which(BINARY) or (f"/usr/bin/{BINARY}" if os.path.exists(f"/usr/bin/{BINARY}") else None)


def bcrypt_hash(password: str) -> str:
    """Distribution's htpasswd accepts only bcrypt: `htpasswd -B` if installed, else libxcrypt via `crypt`,
    else the `bcrypt` package."""
    if shutil.which("htpasswd"):
        out = subprocess.run(
            ["htpasswd", "-nbB", "-C", "4", "u", password], check=True, capture_output=True, text=True
        ).stdout.strip()
        return out.split(":", 1)[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import crypt

            if crypt.METHOD_BLOWFISH in crypt.methods:
                return crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))  # noqa: S324 - bcrypt, cost 4
        except ImportError:
            pass
    import bcrypt  # type: ignore[import-not-found]

    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()


# --- RS256 without a crypto library: the key's numbers from `openssl rsa -text` ---------------------------

_DIGEST_INFO_SHA256 = bytes.fromhex("3031300d060960864801650304020105000420")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class SigningKey:
    n: int
    d: int
    kid: str

    @classmethod
    def generate(cls, workdir: Path) -> tuple[SigningKey, Path]:
        key, cert = workdir / "token.key", workdir / "token.crt"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
             "-days", "2", "-subj", "/CN=plate-test-token"],
            check=True, capture_output=True,
        )  # fmt: skip
        text = subprocess.run(
            ["openssl", "rsa", "-in", str(key), "-noout", "-text"], check=True, capture_output=True, text=True
        ).stdout

        def number(label: str) -> int:
            block = re.search(rf"^{label}:\s*\n((?:\s+[0-9a-f:]+\n)+)", text, re.M)
            assert block, f"no {label} in openssl output"
            return int(re.sub(r"[\s:]", "", block[1]), 16)

        der = subprocess.run(
            ["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "DER"], check=True, capture_output=True
        ).stdout
        # libtrust KeyID: SHA-256 of the DER public key, first 240 bits, base32 in 12 groups of 4.
        b32 = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
        kid = ":".join(b32[i : i + 4] for i in range(0, len(b32), 4))
        return cls(number("modulus"), number("privateExponent"), kid), cert

    def sign(self, claims: dict[str, Any]) -> str:
        header = {"typ": "JWT", "alg": "RS256", "kid": self.kid}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        size = (self.n.bit_length() + 7) // 8
        digest = _DIGEST_INFO_SHA256 + hashlib.sha256(signing_input.encode()).digest()
        padded = b"\x00\x01" + b"\xff" * (size - len(digest) - 3) + b"\x00" + digest
        signature = pow(int.from_bytes(padded, "big"), self.d, self.n).to_bytes(size, "big")
        return f"{signing_input}.{_b64url(signature)}"


class TokenServer:
    """Docker's token spec, minimal: GET /token?service=&scope= with Basic auth -> {"token": JWT}."""

    def __init__(self, key: SigningKey) -> None:
        self.key = key
        self.requests: list[dict[str, str]] = []
        users = {PULLER: "pull", DENIED: "refuse", NOSCOPE: "none", ADMIN: "push"}
        self.users = {u: (p, mode) for (u, p), mode in users.items()}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                status, body = outer.answer(self.path, self.headers.get("Authorization", ""))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/token"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def answer(self, path: str, authorization: str) -> tuple[int, dict[str, Any]]:
        query = {k: v[-1] for k, v in parse_qs(urlsplit(path).query).items()}
        self.requests.append(query)
        user = password = ""
        if authorization.lower().startswith("basic "):
            user, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
        known = self.users.get(user)
        if known is None or known[0] != password:
            return 401, {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}
        mode = known[1]
        if mode == "refuse":
            return 403, {"errors": [{"code": "DENIED", "message": "requested access to the resource is denied"}]}
        access = []
        # One token may carry several scopes (Docker's token spec: `scope` repeated), as Harbor's does.
        for scope in parse_qs(urlsplit(path).query).get("scope", []):
            if scope.startswith("repository:") and mode in ("pull", "push"):
                _, name, _actions = scope.split(":")
                actions = ["pull", "push"] if mode == "push" else ["pull"]
                access.append({"type": "repository", "name": name, "actions": actions})
        now = int(time.time())
        claims = {"iss": ISSUER, "sub": user, "aud": query.get("service", ""), "exp": now + 300, "nbf": now - 10,
                  "iat": now, "jti": os.urandom(8).hex(), "access": access}  # fmt: skip
        token = self.key.sign(claims)
        return 200, {"token": token, "access_token": token, "expires_in": 300}

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Registry:
    url: str
    host: str
    process: subprocess.Popen[bytes]


def _config(port: int, storage: Path, auth: dict[str, Any]) -> str:
    return json.dumps(  # JSON is YAML
        {
            "version": 0.1,
            "log": {"level": "error", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(storage)}, "delete": {"enabled": True}},
            "http": {"addr": f"127.0.0.1:{port}", "secret": "plate-test-http-secret"},
            "auth": auth,
        }
    )


def _start(workdir: Path, name: str, storage: Path, auth: dict[str, Any]) -> Registry:
    exe = binary()
    assert exe is not None
    port = free_port()
    config = workdir / f"{name}.yml"
    config.write_text(_config(port, storage, auth))
    log = open(workdir / f"{name}.log", "wb")  # noqa: SIM115 - lives as long as the process
    proc = subprocess.Popen([exe, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    log_tail = lambda: (workdir / f"{name}.log").read_text()[-2000:]  # noqa: E731

    def answers() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"{BINARY} exited: {log_tail()}")
        with contextlib.suppress(httpx.TransportError):
            return httpx.get(f"{url}/v2/", timeout=1).status_code in (200, 401)
        return False

    try:
        wait_until(answers, 15, f"{BINARY} to start", diagnose=log_tail)
    except BaseException:
        stop(proc)
        raise
    return Registry(url, f"127.0.0.1:{port}", proc)


def stop(proc: subprocess.Popen[bytes]) -> None:
    stop_process(proc, 5, group=True)


def _layer() -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        data = b"plate-bot pull check\n"
        info = tarfile.TarInfo("hello.txt")
        info.size, info.mtime = len(data), 0
        tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


def push_image(url: str, auth: tuple[str, str], repo: str = REPO, tag: str = TAG) -> str:
    """Push a one-layer image with the registry HTTP API (no docker): blobs, then the schema2 manifest."""
    layer = _layer()
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "config": {},
         "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(gzip.decompress(layer)).hexdigest()]}}
    ).encode()  # fmt: skip
    with httpx.Client(base_url=url, auth=auth, timeout=10) as http:
        for blob in (layer, config):
            digest = "sha256:" + hashlib.sha256(blob).hexdigest()
            start = http.post(f"/v2/{repo}/blobs/uploads/")
            assert start.status_code == 202, start.text
            location = start.headers["location"]  # keeps its _state query: append the digest to it
            location += ("&" if "?" in location else "?") + "digest=" + digest.replace(":", "%3A")
            done = http.put(location, content=blob, headers={"Content-Type": "application/octet-stream"})
            assert done.status_code == 201, done.text
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": len(config),
                       "digest": "sha256:" + hashlib.sha256(config).hexdigest()},
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": len(layer),
                        "digest": "sha256:" + hashlib.sha256(layer).hexdigest()}],
        }  # fmt: skip
        put = http.put(f"/v2/{repo}/manifests/{tag}", content=json.dumps(manifest).encode(),
                       headers={"Content-Type": manifest["mediaType"]})  # fmt: skip
        assert put.status_code == 201, put.text
        return str(put.headers.get("docker-content-digest"))


@dataclass
class Registries:
    basic: Registry
    token: Registry
    token_server: TokenServer
    digest: str


@contextlib.contextmanager
def running(workdir: Path) -> Iterator[Registries]:
    """`registries(workdir)` where Debian's docker-registry is installed; the calling test is skipped where
    it is not (scripts/test installs it with apt)."""
    if binary() is None:
        pytest.skip("docker-registry (CNCF Distribution) is not installed (scripts/test installs it with apt)")
    with registries(workdir) as regs:
        yield regs


@contextlib.contextmanager
def registries(workdir: Path) -> Iterator[Registries]:
    storage = workdir / "storage"
    storage.mkdir()
    htpasswd = workdir / "htpasswd"
    htpasswd.write_text("".join(f"{u}:{bcrypt_hash(p)}\n" for u, p in (ADMIN, PULLER)))
    key, cert = SigningKey.generate(workdir)
    tokens = TokenServer(key)
    started: list[Registry] = []
    try:
        basic = _start(workdir, "basic", storage, {"htpasswd": {"realm": "plate-test", "path": str(htpasswd)}})
        started.append(basic)
        token_auth = {"realm": tokens.url, "service": SERVICE, "issuer": ISSUER, "rootcertbundle": str(cert)}
        token = _start(workdir, "token", storage, {"token": token_auth})
        started.append(token)
        digest = push_image(basic.url, ADMIN)
        yield Registries(basic, token, tokens, digest)
    finally:
        for reg in started:
            stop(reg.process)
        tokens.stop()
