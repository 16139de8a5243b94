"""Approve the image, not a tag: a plan resolves every image tag to its manifest digest against the real CNCF
Distribution registry (Basic and Bearer auth), fails before approval on a tag that does not exist or a registry
that refuses plate-bot, binds the approval to the digests, deploys by digest, and refuses a tag re-pushed
between the approval and the run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox.helm import recorded_argv
from sandbox.kubeapi import FakeKubeAPI
from tests.conftest import ROOT, Service
from tests.integration import distribution
from tests.integration.chart_sources import push_image_variant, push_index
from tests.integration.releases import command_and_check, prod_images_from, thread
from workers.images import Image, Outcome, nearest_tags, parse
from workers.registry import resolve_images

CHART = ROOT / "examples" / "plate-web"
REPO = "plate/plate-web"


@pytest.fixture(scope="module")
def registries(tmp_path_factory: pytest.TempPathFactory) -> Iterator[distribution.Registries]:
    with distribution.running(tmp_path_factory.mktemp("image-registry")) as regs:
        for tag in ("1.3.2", "1.5.0", "1.5.0-rc.1", "1.10.0"):
            push_image_variant(regs.basic.url, distribution.ADMIN, REPO, tag, tag)
        push_index(regs.basic.url, distribution.ADMIN, REPO, "multi")
        yield regs


def image(host: str, tag: str, repo: str = REPO) -> Image:
    return parse(f"{host}/{repo}:{tag}")


# --- the registry client ------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["basic", "token"])
def test_tags_resolve_to_their_manifest_digests(registries, which) -> None:
    reg = getattr(registries, which)
    [plain, multi, pinned] = resolve_images(
        reg.url,
        [image(reg.host, "1.5.0"), image(reg.host, "multi"), image(reg.host, "1.4.0")],
        *distribution.PULLER,
    )
    assert plain.outcome is Outcome.RESOLVED and plain.digest and plain.digest.startswith("sha256:")
    assert plain.platforms == ()  # a single-platform manifest
    assert multi.outcome is Outcome.RESOLVED and multi.platforms == ("linux/amd64", "linux/arm64")
    assert pinned.digest == registries.digest  # the image distribution.registries pushed


def test_a_missing_tag_comes_back_with_the_repository_tags(registries) -> None:
    reg = registries.basic
    [missing] = resolve_images(reg.url, [image(reg.host, "1.5.1")], *distribution.PULLER)
    assert missing.outcome is Outcome.MISSING and missing.detail == "tag not found"
    assert nearest_tags(missing.tags) == ["1.10.0", "1.5.0", "1.5.0-rc.1", "1.4.0", "1.3.2"]
    [no_repo] = resolve_images(reg.url, [image(reg.host, "1.0", "plate/nothing")], *distribution.PULLER)
    assert (no_repo.outcome, no_repo.detail, no_repo.tags) == (Outcome.MISSING, "repository not found", ())


@pytest.mark.parametrize(
    ("which", "creds", "detail"),
    [
        ("basic", (distribution.PULLER[0], "wrong-Pa55"), "401"),
        ("token", (distribution.PULLER[0], "wrong-Pa55"), "token service (401)"),
        ("token", distribution.DENIED, "refused pull"),
        ("basic", (None, None), "wants credentials"),
    ],
    ids=["basic-401", "bearer-401", "bearer-403", "anonymous"],
)
def test_a_refusing_registry_is_told_apart(registries, which, creds, detail) -> None:
    reg = getattr(registries, which)
    [refused] = resolve_images(reg.url, [image(reg.host, "1.5.0")], *creds, credential="harbor-docker-secret")
    assert refused.outcome is Outcome.REFUSED and detail in refused.detail, refused
    assert "wrong-Pa55" not in refused.detail


def test_an_unreachable_registry_is_a_warning_not_a_failure(registries) -> None:
    port = distribution.free_port()
    [away] = resolve_images(f"http://127.0.0.1:{port}", [image(f"127.0.0.1:{port}", "1.5.0")], None, None)
    assert away.outcome is Outcome.UNREACHABLE and "Connection refused" in away.detail


# --- end to end: the plan, the card, the deploy --------------------------------------------------------------


def use_registry(service: Service, plate_env: dict[str, Any], api: FakeKubeAPI, reg: Any, tmp_path: Path,
                 creds: tuple[str, str] = distribution.PULLER) -> None:  # fmt: skip
    """prod's images come from the loopback registry, which is prod's Harbor, with `creds` in its pull secret."""
    prod_images_from(service, plate_env, api, host=reg.host, url=reg.url, repository=REPO, tmp_path=tmp_path,
                     creds=creds)  # fmt: skip


def plan(service: Service, tag: str) -> Any:
    return command_and_check(service, f"deploy prod {tag}")


def approve_and_run(service: Service, request: Any, before_run: Any = None) -> None:
    if before_run is not None:
        before_run()
    service.click("plate_approve", request.id, user="U0ALICE")
    service.wait(lambda: service.runtime.queue.count == 1)
    service.run_worker()


def card(service: Service, request: Any) -> str:
    return thread(service, service.runtime.store.get(request.id))


def upgrades(helm_state: Path) -> list[list[str]]:
    return [a for a in recorded_argv(helm_state) if a[0] == "upgrade"]


@pytest.mark.slow
def test_the_approval_binds_to_the_digest_and_the_deploy_runs_by_it(
    service, cluster, kube_api, plate_env, helm_state, registries, tmp_path
) -> None:
    reg = registries.basic
    digest = push_image_variant(reg.url, distribution.ADMIN, REPO, "2.0.0", "first")
    use_registry(service, plate_env, kube_api, reg, tmp_path)
    request = plan(service, "2.0.0")
    assert request.status.value == "pending" and request.images == {f"{reg.host}/{REPO}:2.0.0": digest}
    text = card(service, request)
    assert f"`{reg.host}/{REPO}:2.0.0` @ `{digest[:19]}…`" in text, text
    approve_and_run(service, request)
    [upgrade] = upgrades(helm_state)
    assert f"image.digest={digest}" in upgrade and "image.tag=2.0.0" in upgrade
    pods = kube_api.list("v1", "Pod", "plate-prod")
    assert {c["image"] for p in pods for c in p["spec"]["containers"]} == {f"{reg.host}/{REPO}:2.0.0@{digest}"}
    assert "deploying by digest" in card(service, request)


@pytest.mark.slow
def test_a_tag_re_pushed_after_approval_refuses_the_deploy(
    service, cluster, kube_api, plate_env, helm_state, registries, tmp_path
) -> None:
    reg = registries.basic
    first = push_image_variant(reg.url, distribution.ADMIN, REPO, "2.1.0", "first")
    use_registry(service, plate_env, kube_api, reg, tmp_path)
    request = plan(service, "2.1.0")
    now = {}
    approve_and_run(
        service, request,
        before_run=lambda: now.update(d=push_image_variant(reg.url, distribution.ADMIN, REPO, "2.1.0", "second")),
    )  # fmt: skip
    text = card(service, request)
    assert f"`2.1.0` was re-pushed after approval: approved {first[:19]}…, now {now['d'][:19]}…" in text, text
    assert upgrades(helm_state) == []
    assert service.runtime.store.lock_holder("prod") is None


@pytest.mark.slow
def test_a_missing_tag_fails_the_plan_before_approval_with_the_nearest_tags(
    service, cluster, kube_api, plate_env, helm_state, registries, tmp_path
) -> None:
    use_registry(service, plate_env, kube_api, registries.basic, tmp_path)
    request = plan(service, "1.5.1")
    assert request.status.value == "cancelled" and not request.images
    text = card(service, request)
    assert "does not exist in the registry (tag not found)" in text, text
    assert "the newest tags are `multi`" not in text and "`1.10.0`, `1.5.0`, `1.5.0-rc.1`" in text
    [message] = [m for m in service.slack.messages("C0DEPLOYS") if m.ts == request.message_ts]
    assert "plate_approve" not in json.dumps(message.blocks)  # no buttons: nobody is asked
    assert service.runtime.queue.count == 0 and upgrades(helm_state) == []


@pytest.mark.slow
def test_refused_credentials_fail_the_plan_and_point_at_harbor_verify(
    service, cluster, kube_api, plate_env, helm_state, registries, tmp_path
) -> None:
    use_registry(service, plate_env, kube_api, registries.basic, tmp_path, creds=(distribution.PULLER[0], "stale-pw"))
    request = plan(service, "1.5.0")
    text = card(service, request)
    assert request.status.value == "cancelled"
    assert "credentials in Secret `harbor-docker-secret`" in text and "`/plate harbor-verify prod`" in text, text


@pytest.mark.slow
def test_an_unreachable_registry_warns_the_approvers_and_binds_tags_only(
    service, cluster, kube_api, plate_env, helm_state, tmp_path
) -> None:
    port = distribution.free_port()
    away = type("Reg", (), {"host": f"127.0.0.1:{port}", "url": f"http://127.0.0.1:{port}"})()
    use_registry(service, plate_env, kube_api, away, tmp_path)
    request = plan(service, "1.5.0")
    text = card(service, request)
    assert request.status.value == "pending" and request.images == {}
    assert f":warning: could not reach 127.0.0.1:{port} to resolve image digests" in text, text
    assert "@ unresolved" in text


def test_one_bearer_token_serves_every_repository_of_a_plan(registries) -> None:
    """Five images in three repositories behind a token service: one token request carries all three
    scopes, then one GET per image (bench/image_resolve.py measures the round trips)."""
    reg, tokens = registries.token, registries.token_server
    for repo in ("plate/api", "plate/worker"):
        push_image_variant(registries.basic.url, distribution.ADMIN, repo, "1.0.0", repo)
    wanted = [image(reg.host, t) for t in ("1.5.0", "1.4.0", "multi")]
    wanted += [image(reg.host, "1.0.0", "plate/api"), image(reg.host, "1.0.0", "plate/worker")]
    before = len(tokens.requests)
    results = resolve_images(reg.url, wanted, *distribution.PULLER)
    assert [r.outcome for r in results] == [Outcome.RESOLVED] * 5, results
    assert len(tokens.requests) - before == 1


@pytest.mark.slow
def test_without_a_tag_the_charts_app_version_is_resolved_and_deployed_by_digest(
    service, cluster, kube_api, plate_env, helm_state, registries, tmp_path
) -> None:
    """`/plate deploy prod` names no tag: the chart's appVersion (1.4.0) is what runs, resolved and pinned."""
    reg = registries.basic
    use_registry(service, plate_env, kube_api, reg, tmp_path)
    request = plan(service, "")
    assert request.images == {f"{reg.host}/{REPO}:1.4.0": registries.digest}
    approve_and_run(service, request)
    [upgrade] = upgrades(helm_state)
    assert f"image.digest={registries.digest}" in upgrade and not any(a.startswith("image.tag=") for a in upgrade)
