"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sandbox.cluster import SimulatedCluster
from sandbox.kubeapi import FakeKubeAPI


@pytest.fixture
def cluster(kube_api: FakeKubeAPI, monkeypatch: pytest.MonkeyPatch) -> Iterator[SimulatedCluster]:
    """A simulated cluster that rolls out what the fake helm applies: the environments' namespaces (with the
    UIDs the cluster identity check reads) and the fake helm pointed at the loopback API."""
    monkeypatch.setenv("FAKE_HELM_KUBE_URL", kube_api.url)
    for ns in ("plate-stg", "plate-prod", "kube-system"):
        kube_api.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "uid": f"uid-{ns}"}})
    with SimulatedCluster(kube_api, ready_after=0.1) as sim:
        yield sim
