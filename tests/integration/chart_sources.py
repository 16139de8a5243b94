"""Chart sources for the tests: chart archives as `helm package` makes them, pushed to the real Distribution
registry as Helm's OCI artifacts, served as a Helm repository on loopback, or committed to a bare git
repository."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import yaml

HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json"
HELM_CHART = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
HELM_PROV = "application/vnd.cncf.helm.chart.provenance.v1.prov"


def chart_archive(
    chart_dir: Path, *, edit: dict[str, str] | None = None, extra: list[tarfile.TarInfo] | None = None
) -> bytes:
    """`helm package`'s layout: one top directory named after the chart. `edit` replaces files' text
    (relative path -> content); `extra` adds raw members (for hostile archives)."""
    meta = yaml.safe_load((chart_dir / "Chart.yaml").read_text())
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for path in sorted(p for p in chart_dir.rglob("*") if p.is_file()):
            rel = path.relative_to(chart_dir).as_posix()
            data = (edit or {}).get(rel, None)
            content = data.encode() if data is not None else path.read_bytes()
            info = tarfile.TarInfo(f"{meta['name']}/{rel}")
            info.size, info.mtime, info.mode = len(content), 0, 0o644
            tar.addfile(info, io.BytesIO(content))
        for info in extra or []:
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.isfile() else None)
    return gzip.compress(raw.getvalue(), mtime=0)


def provenance(archive: bytes, name: str, *, digest: str | None = None) -> bytes:
    """A provenance file as `helm package --sign` writes it (the PGP armour is not checked by plate-bot)."""
    digest = digest or "sha256:" + hashlib.sha256(archive).hexdigest()
    body = f"apiVersion: v2\nname: x\n\n...\nfiles:\n  {name}: {digest}\n"
    return (
        "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\n" + body + "-----BEGIN PGP SIGNATURE-----\n\nAAAA\n"
        "-----END PGP SIGNATURE-----\n"
    ).encode()


def _upload(http: httpx.Client, repo: str, blob: bytes) -> dict[str, Any]:
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    start = http.post(f"/v2/{repo}/blobs/uploads/")
    assert start.status_code == 202, start.text
    location = start.headers["location"]
    location += ("&" if "?" in location else "?") + "digest=" + digest.replace(":", "%3A")
    done = http.put(location, content=blob, headers={"Content-Type": "application/octet-stream"})
    assert done.status_code == 201, done.text
    return {"size": len(blob), "digest": digest}


def push_chart(url: str, auth: tuple[str, str], repo: str, tag: str, archive: bytes, prov: bytes | None = None) -> str:
    """Push a chart as `helm push` does: config blob (Chart.yaml as JSON), chart layer, optional
    provenance layer, OCI image manifest. Returns the manifest digest."""
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        chart_yaml = next(m for m in tar.getmembers() if m.name.endswith("/Chart.yaml") and m.name.count("/") == 1)
        meta = yaml.safe_load(tar.extractfile(chart_yaml).read())  # type: ignore[union-attr]
    config = json.dumps(meta).encode()
    with httpx.Client(base_url=url, auth=auth, timeout=10) as http:
        layers = [{"mediaType": HELM_CHART, **_upload(http, repo, archive)}]
        if prov is not None:
            layers.append({"mediaType": HELM_PROV, **_upload(http, repo, prov)})
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": HELM_CONFIG, **_upload(http, repo, config)},
            "layers": layers,
        }
        put = http.put(
            f"/v2/{repo}/manifests/{tag}",
            content=json.dumps(manifest).encode(),
            headers={"Content-Type": manifest["mediaType"]},
        )
        assert put.status_code == 201, put.text
        return str(put.headers["docker-content-digest"])


@contextlib.contextmanager
def helm_repository(root: Path, charts: dict[str, bytes], *, digests: bool = True) -> Iterator[str]:
    """A Helm repository on loopback: `root` gets the archives (file name -> bytes) and an index.yaml.
    Yields the repository's URL."""
    entries: dict[str, list[dict[str, Any]]] = {}
    root.mkdir(exist_ok=True)
    for file_name, archive in charts.items():
        (root / file_name).write_bytes(archive)
        name, _, version = file_name.removesuffix(".tgz").rpartition("-")
        entry: dict[str, Any] = {"name": name, "version": version, "urls": [file_name]}
        if digests:
            entry["digest"] = hashlib.sha256(archive).hexdigest()
        entries.setdefault(name, []).append(entry)
    (root / "index.yaml").write_text(yaml.safe_dump({"apiVersion": "v1", "entries": entries}))

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "init.defaultBranch=main", *args],
        cwd=cwd, check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip


def git_repository(tmp: Path, chart_dir: Path, path: str = "charts/plate-web") -> tuple[Path, Path]:
    """A bare repository with `chart_dir` committed at `path` on `main` (tagged v1); returns (bare, work)."""
    bare, work = tmp / "charts.git", tmp / "work"
    bare.mkdir()
    git(bare, "init", "-q", "--bare")
    work.mkdir()
    git(work, "init", "-q")
    target = work / path
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(chart_dir, target)
    git(work, "add", ".")
    git(work, "commit", "-q", "-m", "chart")
    git(work, "tag", "-a", "v1", "-m", "v1")
    git(work, "push", "-q", str(bare), "main", "v1")
    return bare, work


IMAGE_CONFIG = "application/vnd.oci.image.config.v1+json"
IMAGE_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def _image_manifest(http: httpx.Client, repo: str, marker: str, arch: str = "amd64") -> dict[str, Any]:
    """Blobs of a one-layer image whose content depends on `marker` (so each marker has its own digest)."""
    layer = gzip.compress(marker.encode(), mtime=0)
    config = json.dumps({"architecture": arch, "os": "linux", "config": {"Labels": {"marker": marker}},
                         "rootfs": {"type": "layers", "diff_ids": []}}).encode()  # fmt: skip
    return {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": IMAGE_CONFIG, **_upload(http, repo, config)},
        "layers": [{"mediaType": IMAGE_LAYER, **_upload(http, repo, layer)}],
    }


def _put_manifest(http: httpx.Client, repo: str, ref: str, manifest: dict[str, Any]) -> tuple[str, int]:
    body = json.dumps(manifest).encode()
    put = http.put(f"/v2/{repo}/manifests/{ref}", content=body, headers={"Content-Type": manifest["mediaType"]})
    assert put.status_code == 201, put.text
    return str(put.headers["docker-content-digest"]), len(body)


def push_image_variant(url: str, auth: tuple[str, str], repo: str, tag: str, marker: str) -> str:
    """Push an image under `tag` whose digest depends on `marker` (re-pushing a tag with another marker
    moves it). Returns the manifest digest."""
    with httpx.Client(base_url=url, auth=auth, timeout=10) as http:
        return _put_manifest(http, repo, tag, _image_manifest(http, repo, marker))[0]


def push_index(
    url: str, auth: tuple[str, str], repo: str, tag: str, arches: tuple[str, ...] = ("amd64", "arm64")
) -> str:
    """A multi-platform image: one manifest per architecture and an OCI index naming them."""
    with httpx.Client(base_url=url, auth=auth, timeout=10) as http:
        entries = []
        for arch in arches:
            manifest = _image_manifest(http, repo, f"{tag}-{arch}", arch)
            digest, size = _put_manifest(http, repo, digest_of(manifest), manifest)
            entries.append({"mediaType": manifest["mediaType"], "digest": digest, "size": size,
                            "platform": {"os": "linux", "architecture": arch}})  # fmt: skip
        return _put_manifest(http, repo, tag, {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})[0]


def digest_of(doc: dict[str, Any]) -> str:
    return "sha256:" + hashlib.sha256(json.dumps(doc).encode()).hexdigest()
