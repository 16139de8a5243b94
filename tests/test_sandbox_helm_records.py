"""The fake helm (sandbox/helm.py) with $FAKE_HELM_KUBE_URL keeps helm's release records in the loopback
Kubernetes API as helm's secret driver does (issue 14: the watcher announces revisions made outside
plate-bot): one Secret per revision, its status label following the release, pruned and uninstalled
revisions deleted."""

from __future__ import annotations

import base64
import gzip
import json
import os
import subprocess
from pathlib import Path
from typing import Any

from sandbox.helm import install_wrapper
from sandbox.kubeapi import FakeKubeAPI

REPO = Path(__file__).resolve().parent.parent
CHART = REPO / "examples" / "plate-web"
NS = "plate-prod"


def records(kube_api: FakeKubeAPI) -> dict[str, dict[str, Any]]:
    return {
        s["metadata"]["name"]: s for s in kube_api.list("v1", "Secret", NS) if s.get("type") == "helm.sh/release.v1"
    }


def release_of(secret: dict[str, Any]) -> dict[str, Any]:
    """data.release as helm reads it: base64 (the Secret's) of base64 of gzip of the release JSON."""
    return json.loads(gzip.decompress(base64.b64decode(base64.b64decode(secret["data"]["release"]))))


def test_each_revision_is_a_release_secret_whose_status_follows_the_release(
    kube_api: FakeKubeAPI, tmp_path: Path
) -> None:
    helm = install_wrapper(tmp_path / "bin", tmp_path / "state")
    env = {**os.environ, "FAKE_HELM_KUBE_URL": kube_api.url}

    def run(*args: str) -> None:
        subprocess.run([str(helm), *args, "-n", NS], env=env, check=True, capture_output=True, timeout=60)

    upgrade = ["upgrade", "--install", "plate-web", str(CHART), "-f", str(CHART / "values-production.yaml")]
    run(*upgrade)
    run(*upgrade, "--set-string", "image.tag=1.5.0", "--description", "by hand", "--history-max", "2")
    first, second = (
        records(kube_api)["sh.helm.release.v1.plate-web.v1"],
        records(kube_api)["sh.helm.release.v1.plate-web.v2"],
    )
    assert first["metadata"]["labels"] == {"name": "plate-web", "owner": "helm", "status": "superseded", "version": "1"}
    assert second["metadata"]["labels"] == {"name": "plate-web", "owner": "helm", "status": "deployed", "version": "2"}
    release = release_of(second)
    assert (release["name"], release["namespace"], release["version"]) == ("plate-web", NS, 2)
    assert release["info"]["status"] == "deployed" and release["info"]["description"] == "by hand"
    assert release["info"]["first_deployed"] == release_of(first)["info"]["first_deployed"]
    assert release["chart"]["metadata"]["name"] == "plate-web" and ':1.5.0"' in release["manifest"]
    assert release["config"]["image"]["tag"] == "1.5.0"
    assert "computed" not in release  # helm's JSON shape, not the fake's own bookkeeping

    run("rollback", "plate-web", "1", "--history-max", "2")  # revision 3; helm keeps 2: v1 goes
    assert sorted(records(kube_api)) == ["sh.helm.release.v1.plate-web.v2", "sh.helm.release.v1.plate-web.v3"]
    assert records(kube_api)["sh.helm.release.v1.plate-web.v3"]["metadata"]["labels"]["status"] == "deployed"
    assert release_of(records(kube_api)["sh.helm.release.v1.plate-web.v3"])["info"]["description"] == "Rollback to 1"

    run("uninstall", "plate-web")
    assert records(kube_api) == {}
