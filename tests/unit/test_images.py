"""workers.images: the images a plan would run and what their resolution means (pure)."""

from __future__ import annotations

import pytest

from config.environments import parse_config
from workers.images import (
    Image,
    Outcome,
    Resolution,
    blocking,
    card_lines,
    images_in,
    nearest_tags,
    parse,
    pins,
    repush_refusal,
    repushed,
    sources,
    warnings,
)

D1, D2 = "sha256:" + "a" * 64, "sha256:" + "b" * 64


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("harbor.example.com/plate/plate-web:1.5.0", Image("harbor.example.com", "plate/plate-web", "1.5.0")),
        ("127.0.0.1:5000/plate/web:1.0", Image("127.0.0.1:5000", "plate/web", "1.0")),
        ("localhost/web", Image("localhost", "web", None)),
        ("nginx:1.25", Image("docker.io", "library/nginx", "1.25")),
        ("bitnami/redis:7.2", Image("docker.io", "bitnami/redis", "7.2")),
        (f"ghcr.io/a/b@{D1}", Image("ghcr.io", "a/b", None, D1)),
        (f"ghcr.io/a/b:1.0@{D1}", Image("ghcr.io", "a/b", "1.0", D1)),
    ],
    ids=["harbor", "port", "localhost", "hub-library", "hub-user", "digest", "tag-and-digest"],
)
def test_parse(text: str, expected: Image) -> None:
    assert parse(text) == expected
    assert parse(text).reference == (expected.digest or expected.tag or "latest")


def test_images_in_covers_init_containers_cronjobs_and_pods_once() -> None:
    def spec(*images: str, init: tuple[str, ...] = ()) -> dict:
        return {"initContainers": [{"image": i} for i in init], "containers": [{"image": i} for i in images]}

    rendered = {
        "Deployment/web": {
            "kind": "Deployment",
            "spec": {"template": {"spec": spec("r/web:1", init=("r/migrate:1",))}},
        },
        "CronJob/nightly": {
            "kind": "CronJob",
            "spec": {"jobTemplate": {"spec": {"template": {"spec": spec("r/job:2")}}}},
        },
        "Pod/debug": {"kind": "Pod", "spec": spec("r/web:1")},
        "Service/web": {"kind": "Service", "spec": {"ports": []}},
    }
    assert images_in(rendered) == ["r/job:2", "r/migrate:1", "r/web:1"]


def test_nearest_tags_prefers_semantic_versions_newest_first() -> None:
    assert nearest_tags(["1.4.0", "latest", "1.10.0", "1.5.0-rc.1", "1.5.0", "v1.2"]) == [
        "1.10.0", "1.5.0", "1.5.0-rc.1", "1.4.0", "v1.2",
    ]  # fmt: skip
    assert nearest_tags(["main-1", "main-2", "main-3"], limit=2) == ["main-3", "main-2"]


def resolution(tag: str, outcome: Outcome, **kw: object) -> Resolution:
    return Resolution(parse(f"harbor.example.com/plate/web:{tag}"), outcome, **kw)  # type: ignore[arg-type]


def test_a_missing_tag_or_a_refusal_blocks_an_unreachable_registry_warns() -> None:
    missing = resolution("1.5.1", Outcome.MISSING, detail="tag not found", tags=("1.4.0", "1.5.0"))
    assert blocking([missing], "prod") == (
        "image `harbor.example.com/plate/web:1.5.1` does not exist in the registry (tag not found); "
        "the newest tags are `1.5.0`, `1.4.0`"
    )
    refused = resolution("1.5.0", Outcome.REFUSED, detail="401 at the manifest", credential="harbor-docker-secret")
    assert "Secret `harbor-docker-secret`" in (blocking([refused], "prod") or "")
    assert "`/plate harbor-verify prod`" in (blocking([refused], "prod") or "")
    away = resolution("1.5.0", Outcome.UNREACHABLE, detail="cannot connect")
    assert blocking([away], "prod") is None
    assert warnings([away, away]) == [
        ":warning: could not reach harbor.example.com to resolve image digests: the approval binds to tags only"
    ]


def test_card_lines_show_short_digests_platforms_and_what_was_not_checked() -> None:
    lines = card_lines([
        resolution("1.5.0", Outcome.RESOLVED, digest=D1, platforms=("linux/amd64", "linux/arm64", "linux/s390x")),
        Resolution(parse("nginx:1.25"), Outcome.NOT_CHECKED),
    ])  # fmt: skip
    assert lines == [
        f"`harbor.example.com/plate/web:1.5.0` @ `{D1[:19]}…` · linux/amd64, linux/arm64",
        "`docker.io/library/nginx:1.25` · not checked (no access to docker.io configured)",
    ]
    many = [resolution(str(i), Outcome.RESOLVED, digest=D1) for i in range(12)]
    assert card_lines(many)[-1] == "… 4 more images" and len(card_lines(many)) == 9


def test_a_re_pushed_tag_is_named_with_both_digests() -> None:
    image = "harbor.example.com/plate/web:1.5.0"
    assert repushed({image: D1}, {image: D1}) == []
    [change] = repushed({image: D1}, {image: D2})
    assert repush_refusal([change]) == (
        f"`1.5.0` was re-pushed after approval: approved {D1[:19]}…, now {D2[:19]}…; request again"
    )
    [gone] = repushed({image: D1}, {})
    assert "now unresolvable" in repush_refusal([gone])
    assert pins([resolution("1.5.0", Outcome.RESOLVED, digest=D1), resolution("x", Outcome.UNREACHABLE)]) == {image: D1}


def test_sources_are_harbor_and_the_configured_registries() -> None:
    config = parse_config({"environments": {"prod": {
        "namespace": "plate-prod", "release": "web", "chart": "c",
        "harbor": {"registry": "harbor.example.com", "registry_url": "http://harbor-core.harbor:80",
                   "namespace": "auth"},
        "registries": [{"host": "ghcr.io", "pull_secret": "ghcr-creds"}, {"host": "quay.io"}],
    }}})  # fmt: skip
    found = sources(config.environments["prod"])
    assert found["harbor.example.com"].url == "http://harbor-core.harbor:80"
    assert (found["harbor.example.com"].secret, found["harbor.example.com"].namespace) == (
        "harbor-docker-secret",
        "auth",
    )
    assert (found["ghcr.io"].url, found["ghcr.io"].secret, found["ghcr.io"].namespace) == (
        "https://ghcr.io", "ghcr-creds", "plate-prod",
    )  # fmt: skip
    assert (found["quay.io"].secret, found["quay.io"].namespace) == ("harbor-docker-secret", "auth")


def test_harbor_artifact_and_policy() -> None:
    import time

    from config.environments import ImagePolicy
    from workers.images import harbor_line, parse_artifact, policy_violations

    now = time.time()
    doc = {
        "push_time": "2026-01-01T00:00:00.000Z",
        "scan_overview": {"application/vnd.security.vulnerability.report; version=1.1": {
            "scan_status": "Success", "summary": {"summary": {"Critical": 2, "High": 1}},
            "scanner": {"name": "Trivy", "version": "v0.50.1"}, "end_time": None,
        }},
        "accessories": [{"type": "signature.cosign"}],
    }  # fmt: skip
    art = parse_artifact(doc)
    assert (art.scan.counts, art.scan.scanner, art.signed) == ((2, 1, 0, 0), "Trivy v0.50.1", True)  # type: ignore[union-attr]
    assert harbor_line(art, now).endswith("· Trivy v0.50.1: 2 critical, 1 high, 0 medium · signed")
    assert "not scanned · not signed" in harbor_line(parse_artifact({}), now)
    scanned = resolution("1.5.0", Outcome.RESOLVED, digest=D1, artifact=art)
    bare = resolution("1.6.0", Outcome.RESOLVED, digest=D2)
    away = resolution("1.7.0", Outcome.UNREACHABLE)
    assert policy_violations(ImagePolicy(), [scanned, bare]) == []
    assert policy_violations(ImagePolicy(max_critical=2, max_high=1), [scanned]) == []
    assert policy_violations(ImagePolicy(max_critical=1), [scanned, away]) == [
        "`harbor.example.com/plate/web:1.5.0` has 2 critical vulnerabilities (at most 1 allowed)"
    ]
    assert policy_violations(ImagePolicy(require_scan=True, require_signature=True), [bare]) == [
        "`harbor.example.com/plate/web:1.6.0` has no finished vulnerability scan in Harbor (require_scan)",
        "`harbor.example.com/plate/web:1.6.0` has no cosign signature in Harbor (require_signature)",
    ]


def test_harbors_answer_survives_the_cache_and_a_newer_record_is_asked_again() -> None:
    from workers.images import Artifact, Scan, artifact_from_record, artifact_record

    art = Artifact("2026-01-01T00:00:00Z", Scan("Success", (1, 2, 3, 4), "Trivy v0.50.1", None), True)
    assert artifact_from_record(artifact_record(art)) == art
    assert artifact_from_record(artifact_record(Artifact())) == Artifact()
    assert artifact_from_record({"v": 2, "scan": {"counts": [1, 2]}}) is None  # a shape this version cannot read
    assert artifact_from_record({"scan": "garbage"}) is None
