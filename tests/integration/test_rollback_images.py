"""A rollback card shows what the target revision's pods will pull, asked of the real CNCF Distribution
registry (Basic and Bearer auth): the recorded digest of a revision deployed by digest (and whether its tag
moved since), the digest a tag-only revision's tag points at now (bound by the approval: a tag moved between
approval and run refuses the run), a tag that no longer exists (a warning with the newest tags), and a pinned
digest the registry no longer has (refused before anyone is asked)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from core.requests import Status
from sandbox.harbor import pull_secret
from sandbox.helm import recorded_argv
from tests.conftest import Service
from tests.integration import distribution
from tests.integration.chart_sources import push_image_variant
from tests.integration.releases import (
    approve_and_run,
    by_hand,
    card,
    command_and_check,
    configure,
    ephemeral_texts,
    reload,
    sim_fixture,  # noqa: F401 - the `sim` fixture
    thread,
)

REPO = "plate/rollback-web"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def registries(tmp_path_factory: pytest.TempPathFactory) -> Iterator[distribution.Registries]:
    with distribution.running(tmp_path_factory.mktemp("rollback-registry")) as regs:
        for tag in ("1.3.2", "1.5.0", "1.10.0"):
            push_image_variant(regs.basic.url, distribution.ADMIN, REPO, tag, tag)
        yield regs


def push(regs: distribution.Registries, tag: str, marker: str) -> str:
    return push_image_variant(regs.basic.url, distribution.ADMIN, REPO, tag, marker)


def delete(regs: distribution.Registries, digest: str) -> None:
    """Delete a manifest (and so every tag pointing at it), as a registry's garbage policy would."""
    gone = httpx.delete(f"{regs.basic.url}/v2/{REPO}/manifests/{digest}", auth=distribution.ADMIN, timeout=10)
    assert gone.status_code == 202, gone.text


def use_registry(service: Service, plate_env: dict[str, Any], kube_api: Any, reg: distribution.Registry) -> None:
    """prod's Harbor is the loopback registry; its pull secret holds the puller robot's credentials."""
    configure(plate_env, prod={"harbor": {"registry": reg.host, "registry_url": reg.url,
                                          "test_image": f"{reg.host}/{REPO}:1.5.0"}})  # fmt: skip
    reload(service, plate_env)
    kube_api.put(pull_secret("plate-prod", reg.host, *distribution.PULLER))


def revision(helm_bin: Any, reg: distribution.Registry, tag: str, digest: str | None = None) -> None:
    """A prod revision by hand naming the loopback registry's image, by digest when `digest` is given."""
    extra = ["--set-string", f"image.repository={reg.host}/{REPO}"]
    extra += ["--set-string", f"image.digest={digest}"] if digest else []
    by_hand(helm_bin, "prod", tag, *extra)


def live_image(kube_api: Any) -> str:
    deployment = kube_api.get("apps/v1", "Deployment", "plate-web", "plate-prod")
    return str(deployment["spec"]["template"]["spec"]["containers"][0]["image"])


def rollbacks(helm_state: Any) -> list[list[str]]:
    return [a for a in recorded_argv(helm_state) if a[0] == "rollback"]


@pytest.mark.parametrize("which", ["basic", "token"])
def test_a_revision_deployed_by_digest_rolls_back_to_that_digest_even_if_its_tag_moved(
    which, plate_env, service: Service, sim, kube_api, helm_bin, helm_state, registries
) -> None:
    reg = getattr(registries, which)
    tag = f"3.0.0-{which}"
    ran = push(registries, tag, f"{tag}-first")
    revision(helm_bin, reg, tag, ran)
    revision(helm_bin, reg, "1.5.0")
    sim.settle()
    moved = push(registries, tag, f"{tag}-second")  # the tag is re-pushed after revision 1 ran
    use_registry(service, plate_env, kube_api, reg)

    request = command_and_check(service, "rollback prod 1")
    assert request.status is Status.PENDING and request.images == {}  # the manifest pins it: nothing to bind
    shown = card(service, request)
    for expected in (
        "*Target images* (what revision 1's pods will pull):",
        f"`{reg.host}/{REPO}:{tag}` @ `{ran[:19]}…`",
        f":warning: tag `{tag}` of `{reg.host}/{REPO}` now points at `{moved[:19]}…`, revision 1 ran `{ran[:19]}…`; "
        "the rollback runs the revision's digest",
        "Approve",
    ):
        assert expected in shown, shown

    request = approve_and_run(service, request)
    text = thread(service, request)
    assert "rollback prod* — succeeded" in text and "1 of 1 image(s) found in the registry, 1 pinned" in text, text
    assert live_image(kube_api) == f"{reg.host}/{REPO}:{tag}@{ran}"


def test_a_tag_only_revision_shows_what_its_tag_points_at_now_and_the_approval_binds_to_it(
    plate_env, service: Service, sim, kube_api, helm_bin, helm_state, registries
) -> None:
    reg = registries.basic
    now = push(registries, "4.0.0", "4.0.0-first")
    revision(helm_bin, reg, "4.0.0")
    revision(helm_bin, reg, "1.5.0")
    sim.settle()
    use_registry(service, plate_env, kube_api, reg)

    request = command_and_check(service, "rollback prod")
    spec = f"{reg.host}/{REPO}:4.0.0"
    assert request.status is Status.PENDING and request.images == {spec: now}
    shown = card(service, request)
    assert f"`{spec}` @ `{now[:19]}…`" in shown, shown
    assert (
        "Revision 1 recorded no digest for `rollback-web:4.0.0`: the rollback pulls what the tag points at now "
        "(the digest above), which may not be what revision 1 ran"
    ) in shown

    later: dict[str, str] = {}

    def repush_then_approve() -> Any:
        later["digest"] = push(registries, "4.0.0", "4.0.0-second")
        return approve_and_run(service, request)

    request = repush_then_approve()
    text = thread(service, request)
    assert "rollback prod* — failed" in text, text
    assert (
        f"tag `4.0.0` of `{reg.host}/{REPO}` moved after the approval: approved `{now[:19]}…`, "
        f"now `{later['digest'][:19]}…`; request the rollback again"
    ) in text
    assert rollbacks(helm_state) == [] and service.runtime.store.lock_holder("prod") is None


def test_a_tag_that_no_longer_exists_is_a_warning_with_the_newest_tags(
    plate_env, service: Service, sim, kube_api, helm_bin, helm_state, registries
) -> None:
    reg = registries.token
    gone = push(registries, "5.0.0", "5.0.0-only")
    revision(helm_bin, reg, "5.0.0")
    revision(helm_bin, reg, "1.5.0")
    sim.settle()
    delete(registries, gone)
    use_registry(service, plate_env, kube_api, reg)

    request = command_and_check(service, "rollback prod")
    assert request.status is Status.PENDING and request.images == {}
    shown = card(service, request)
    assert f":warning: `{reg.host}/{REPO}:5.0.0` @ unresolved: tag not found" in shown, shown
    assert f":warning: tag `{reg.host}/{REPO}:5.0.0` no longer exists (newest tags: `" in shown
    newest = shown.split("(newest tags: ", 1)[1].split(")", 1)[0]
    assert "`1.10.0`, `1.5.0`" in newest and "`5.0.0`" not in newest  # tags that do exist
    assert "its pods will not start unless the tag is pushed again" in shown
    assert "Approve" in shown  # a warning: the approvers decide (the tag may be pushed again first)


def test_a_pinned_digest_the_registry_no_longer_has_refuses_the_rollback_before_approval(
    plate_env, service: Service, sim, kube_api, helm_bin, helm_state, registries
) -> None:
    reg = registries.basic
    ran = push(registries, "6.0.0", "6.0.0-first")
    revision(helm_bin, reg, "6.0.0", ran)
    revision(helm_bin, reg, "1.5.0")
    sim.settle()
    moved = push(registries, "6.0.0", "6.0.0-second")
    delete(registries, ran)
    use_registry(service, plate_env, kube_api, reg)

    request = command_and_check(service, "rollback prod")
    reason = (
        f"revision 1 runs `{reg.host}/{REPO}@{ran}`, which the registry no longer has: no pod could pull it; "
        f"tag `6.0.0` now points at `{moved[:19]}…`: deploy it instead if that is wanted"
    )
    assert request.status is Status.CANCELLED and request.reason == reason, request
    shown = card(service, request)
    assert "Closed at" in shown and "Approve" not in shown
    assert f"I cannot roll back `prod`: {reason}. Nothing was run." in ephemeral_texts(service, "U0BOB")[-1]
    assert service.runtime.queue.count == 0 and rollbacks(helm_state) == []
    assert service.runtime.store.lock_holder("prod") is None
