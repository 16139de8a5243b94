"""What Harbor knows about the images, on the card and in the environment's image_policy: push time, the scan
summary, cosign signatures (Harbor's API v2.0 on loopback: sandbox/harbor_registry.py), a policy that refuses
the plan or asks one more approval."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox.harbor_registry import FakeHarbor
from sandbox.helm import recorded_argv
from sandbox.kubeapi import FakeKubeAPI
from tests.conftest import Service
from tests.integration.releases import command_and_check, prod_images_from, thread

REPO = "plate/plate-web"
USER, PASSWORD = "robot$plate+puller", "Harbor-Pu11-pw"


@pytest.fixture
def harbor() -> Iterator[FakeHarbor]:
    with FakeHarbor(USER, PASSWORD) as fake:
        yield fake


def configure(service: Service, plate_env: dict[str, Any], api: FakeKubeAPI, harbor: FakeHarbor, tmp_path: Path,
              policy: dict[str, Any] | None = None) -> None:  # fmt: skip
    extra = {"image_policy": policy} if policy is not None else {}
    prod_images_from(service, plate_env, api, host=harbor.host, url=harbor.url, repository=REPO, tmp_path=tmp_path,
                     creds=(USER, PASSWORD), **extra)  # fmt: skip


def plan(service: Service, tag: str) -> Any:
    return command_and_check(service, f"deploy prod {tag}")


def card(service: Service, request: Any) -> str:
    return thread(service, service.runtime.store.get(request.id))


def test_the_card_shows_push_time_scan_summary_and_signature(service, cluster, kube_api, plate_env, harbor,
                                                             tmp_path) -> None:  # fmt: skip
    digest = harbor.push(REPO, "2.0.0", pushed_ago=3 * 86400)
    harbor.scanned(REPO, "2.0.0", critical=1, high=2, medium=7, ago=2 * 3600)
    harbor.sign(REPO, "2.0.0")
    configure(service, plate_env, kube_api, harbor, tmp_path)
    request = plan(service, "2.0.0")
    text = card(service, request)
    assert f"`{harbor.host}/{REPO}:2.0.0` @ `{digest[:19]}…`" in text, text
    assert "pushed 3d ago · Trivy v0.50.1 2h ago: 1 critical, 2 high, 7 medium · signed" in text, text
    assert request.status.value == "pending" and request.approvals_required == 1
    # Harbor's API asked for the artifact by digest, with the scan overview and the accessories.
    assert any(r.startswith(f"GET /api/v2.0/projects/plate/repositories/plate-web/artifacts/{digest}?") and
               "with_scan_overview=true" in r and "with_accessory=true" in r for r in harbor.requests)  # fmt: skip


@pytest.mark.parametrize(
    ("policy", "setup", "reason"),
    [
        ({"max_critical": 0}, {"critical": 1}, "has 1 critical vulnerabilities (at most 0 allowed)"),
        ({"max_high": 1}, {"high": 2}, "has 2 high vulnerabilities (at most 1 allowed)"),
        ({"require_scan": True}, None, "has no finished vulnerability scan in Harbor (require_scan)"),
        ({"require_signature": True}, {}, "has no cosign signature in Harbor (require_signature)"),
    ],
    ids=["critical", "high", "unscanned", "unsigned"],
)
def test_a_policy_violation_refuses_the_plan(service, cluster, kube_api, plate_env, harbor, tmp_path, helm_state,
                                             policy, setup, reason) -> None:  # fmt: skip
    harbor.push(REPO, "2.0.0")
    if setup is not None:
        harbor.scanned(REPO, "2.0.0", **setup)
    configure(service, plate_env, kube_api, harbor, tmp_path, policy)
    request = plan(service, "2.0.0")
    text = card(service, request)
    assert request.status.value == "cancelled", text
    assert "the image policy refuses this deploy" in text and reason in text, text
    assert service.runtime.queue.count == 0


def test_a_policy_may_ask_one_more_approval_instead(service, cluster, kube_api, plate_env, harbor, tmp_path,
                                                    helm_state) -> None:  # fmt: skip
    harbor.push(REPO, "2.0.0")
    harbor.scanned(REPO, "2.0.0", critical=2)
    configure(service, plate_env, kube_api, harbor, tmp_path, {"max_critical": 0, "on_violation": "extra_approval"})
    request = plan(service, "2.0.0")
    assert request.status.value == "pending" and request.approvals_required == 2
    text = card(service, request)
    assert ":warning: image policy: " in text and "2 critical vulnerabilities" in text and "one more approval" in text
    service.click("plate_approve", request.id, user="U0ALICE")
    service.wait(lambda: service.runtime.store.get(request.id).approvals)
    assert service.runtime.store.get(request.id).status.value == "pending"  # one of two
    asked = [r for r in harbor.requests if r.startswith("GET /api/v2.0/")]
    service.click("plate_approve", request.id, user="U0CAROL")
    service.wait(lambda: service.runtime.queue.count == 1)
    service.run_worker()
    assert [a for a in recorded_argv(helm_state) if a[0] == "upgrade"], card(service, request)
    assert "deploy prod* — succeeded" in card(service, request)
    # The deploy re-resolved the tag, but read Harbor's scan from the plan's cache, as the approvers saw it.
    assert len(asked) == 1 and [r for r in harbor.requests if r.startswith("GET /api/v2.0/")] == asked
