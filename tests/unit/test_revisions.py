"""Helm history, rollback targets, who made a revision, the rollback card and the history reply
(workers.revisions), plus the approval choice they add to requests and cards: pure, table-driven."""

from __future__ import annotations

import dataclasses
import json

import pytest

from config.environments import Environment
from core import messages
from core.errors import Conflict
from core.redact import redact_text
from core.requests import PAUSE_AUTOSYNC, new_request
from workers.images import Outcome, Resolution, parse
from workers.revisions import (
    ArgoSync,
    InvalidTarget,
    Origin,
    Revision,
    RollbackPlan,
    TargetImage,
    change_record,
    choose_target,
    history_lines,
    image_of,
    image_queries,
    image_tag,
    live_revision,
    origin_of,
    parse_history,
    parse_time,
    rollback_digest,
    target_image_lines,
    target_image_pins,
    target_images,
    target_images_blocking,
    target_images_moved,
    workloads_of,
)

T0 = 1_800_000_000.0


def row(n: int, status: str, description: str = "Upgrade complete") -> dict:
    """One row of `helm history -o json`."""
    return {
        "revision": n,
        "updated": "2027-01-15T08:00:00.123456789Z",
        "status": status,
        "chart": "plate-web-1.4.0",
        "app_version": "1.4.0",
        "description": description,
    }


def revs(*statuses: str) -> list[Revision]:
    return [
        Revision(i + 1, s, "plate-web-1.4.0", "1.4.0", T0 + i * 60, "Upgrade complete") for i, s in enumerate(statuses)
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2027-01-15T08:00:00.123456789Z", 1_800_000_000.123456),  # helm's nanoseconds, cut to microseconds
        ("2027-01-15T17:00:00+09:00", 1_800_000_000.0),
        ("", None),
        ("yesterday", None),
    ],
)
def test_parse_time(text: str, expected: float | None) -> None:
    assert parse_time(text) == (pytest.approx(expected, abs=1e-4) if expected is not None else None)


def test_parse_history_sorts_and_skips_rows_without_a_revision() -> None:
    parsed = parse_history([row(2, "deployed"), {"status": "deployed"}, row(1, "superseded", "Install complete")])
    assert [(r.number, r.status, r.description) for r in parsed] == [
        (1, "superseded", "Install complete"),
        (2, "deployed", "Upgrade complete"),
    ]
    assert parsed[0].chart == "plate-web-1.4.0" and parsed[0].updated is not None


@pytest.mark.parametrize(
    ("statuses", "live"),
    [
        (("superseded", "superseded", "deployed"), 3),
        (("superseded", "deployed", "failed"), 2),  # a failed upgrade without --atomic: 2 still serves
        (("superseded", "failed", "deployed"), 3),  # --atomic rolled back: the rollback revision is live
        (("failed",), 1),
        ((), None),
    ],
)
def test_live_revision(statuses: tuple[str, ...], live: int | None) -> None:
    found = live_revision(revs(*statuses))
    assert (found.number if found else None) == live


@pytest.mark.parametrize(
    ("statuses", "requested", "target"),
    [
        (("superseded", "superseded", "deployed"), None, 2),
        (("superseded", "failed", "deployed"), None, 1),  # the failed one is skipped by default
        (("superseded", "deployed", "failed"), None, 1),  # before the live one (2), not the newest
        (("superseded", "superseded", "deployed"), 1, 1),
        (("superseded", "failed", "deployed"), 2, 2),  # asked for explicitly: allowed, with a warning
    ],
)
def test_choose_target(statuses: tuple[str, ...], requested: int | None, target: int) -> None:
    live, found = choose_target(revs(*statuses), requested)
    assert found.number == target and live.status == "deployed"


@pytest.mark.parametrize(
    ("history", "requested", "reason"),
    [
        ([], None, "the release is not installed, so there is nothing to roll back to"),
        (revs("deployed"), None, "there is no successfully deployed revision before the live revision 1"),
        (revs("failed", "deployed"), None, "there is no successfully deployed revision before the live revision 2"),
        (revs("superseded", "deployed"), 2, "revision 2 is the live revision"),
        (revs("superseded", "deployed"), 7, "revision 7 does not exist (the newest is 2)"),
        (
            revs("superseded", "superseded", "deployed")[1:],
            1,
            "revision 1 is outside helm's kept history (it keeps 2 revisions, the oldest is 2)",
        ),
        (
            revs("superseded", "pending-upgrade", "deployed"),
            2,
            "revision 2 is `pending-upgrade`: helm cannot roll back to it",
        ),
    ],
)
def test_invalid_targets_say_why(history: list[Revision], requested: int | None, reason: str) -> None:
    with pytest.raises(InvalidTarget) as caught:
        choose_target(history, requested)
    assert caught.value.reason == reason


def test_invalid_target_text_lists_what_one_can_pick_newest_first_without_the_live_one() -> None:
    with pytest.raises(InvalidTarget) as caught:
        choose_target(revs("superseded", "failed", "superseded", "pending-upgrade", "deployed"), 9)
    text = caught.value.text("prod")
    assert text.startswith(":warning: I cannot roll back `prod`: revision 9 does not exist (the newest is 5).")
    listed = [ln for ln in text.splitlines() if ln.startswith("• ")]
    assert [ln.split("`")[1] for ln in listed] == ["3", "2", "1"]  # not 5 (live), not 4 (pending)
    assert "`2` failed · plate-web-1.4.0 · app 1.4.0 ·" in text
    assert text.endswith("`/plate rollback prod <revision>`.")
    assert (
        InvalidTarget("no release", []).text("stg")
        == ":warning: I cannot roll back `stg`: no release. Nothing was run."
    )


MANIFEST = """---
# Source: plate-web/templates/service.yaml
apiVersion: v1
kind: Service
metadata: {name: plate-web}
---
# Source: plate-web/templates/deployment.yaml
apiVersion: apps/v1
kind: Deployment
metadata: {name: plate-web}
spec:
  template:
    spec:
      containers: [{name: web, image: "harbor.example.com/plate/plate-web:1.5.0"}]
"""


def test_what_a_manifest_runs() -> None:
    assert image_of(MANIFEST) == "harbor.example.com/plate/plate-web:1.5.0"
    assert workloads_of(MANIFEST) == ("Deployment/plate-web",)
    assert image_of("") is None and workloads_of("") == ()


@pytest.mark.parametrize(
    ("image", "tag"),
    [
        ("harbor.example.com/plate/plate-web:1.5.0", "1.5.0"),
        ("registry:5000/plate-web", "latest"),
        ("plate-web@sha256:" + "a" * 64, "sha256:aaaaaaaaaaaa"),
        ("registry:5000/plate-web:1.4.0@sha256:" + "a" * 64, "1.4.0@sha256:aaaaaaaaaaaa"),
        (None, "unknown"),
    ],
)
def test_image_tag(image: str | None, tag: str) -> None:
    assert image_tag(image) == tag


def test_rollback_digest_binds_live_target_and_manifest() -> None:
    live, target = revs("superseded", "deployed")[1], revs("superseded", "deployed")[0]
    base = rollback_digest(live, target, MANIFEST)
    assert base == rollback_digest(live, target, MANIFEST)
    assert base != rollback_digest(Revision(3, "deployed"), target, MANIFEST)
    assert base != rollback_digest(live, target, MANIFEST.replace("1.5.0", "1.5.1"))


# --- who made a revision ---------------------------------------------------------------------------------


def record(request_id: str, started: float, ended: float | None, **kw: object) -> dict:
    req = new_request(
        request_id, verb="deploy", env="prod", requester="U0BOB", channel="C1", now=0, ttl=60, approvals_required=1,
        args={"image_tag": "1.5.0"},
    )  # fmt: skip
    req = req.with_plan("e" * 64, []).with_approval("U0CAROL", 1, is_approver=True).with_message("100.200")
    return {**change_record(req, job=f"plate-{request_id}", outcome="succeeded", started=started, ended=ended), **kw}


def test_origin_by_plate_bots_description_even_when_the_record_expired() -> None:
    rev = Revision(4, "deployed", updated=T0, description="plate-bot abc123def456 by U0BOB")
    assert origin_of(rev, [record("abc123def456", T0 - 999, T0 - 900)]).record["request"] == "abc123def456"
    orphan = origin_of(rev, [])
    assert orphan == Origin(None, "abc123def456", "U0BOB") and orphan.by_plate_bot
    assert orphan.text() == "plate-bot request `abc123def456` by <@U0BOB> (its record has expired)"


@pytest.mark.parametrize(
    ("updated", "started", "ended", "deadline", "ours"),
    [
        (T0 + 5, T0, T0 + 10, None, True),  # a rollback revision, stamped while the job ran
        (T0 + 10.5, T0, T0 + 10, None, True),  # the job's end is written just after helm finished
        (T0 - 0.5, T0, T0 + 10, None, False),  # made by hand just before the job started
        (T0 + 12, T0, T0 + 10, None, False),
        (T0 + 100, T0, None, T0 + 900, True),  # the job still runs (or was lost): up to its deadline
        (None, T0, T0 + 10, None, False),
    ],
)
def test_origin_by_the_jobs_time_window(
    updated: float | None, started: float, ended: float | None, deadline: float | None, ours: bool
) -> None:
    rev = Revision(5, "deployed", updated=updated, description="Rollback to 3")
    found = origin_of(rev, [record("r9", started, ended, deadline=deadline)])
    assert found.by_plate_bot is ours
    assert (found.record is not None) is ours


def test_origin_text() -> None:
    assert Origin().text() == "outside plate-bot"
    rec = record("r1", T0, T0 + 1)
    assert Origin(rec, "r1", "U0BOB").text() == "plate-bot deploy 1.5.0, requested by <@U0BOB>, approved by <@U0CAROL>"
    rec["approvers"] = []
    assert Origin(rec, "r1", "U0BOB").text().endswith(", no approval needed")


def test_change_record_is_self_contained() -> None:
    rec = record("r1", T0, T0 + 42.5)
    assert rec["requester"] == "U0BOB" and rec["approvers"] == ["U0CAROL"] and rec["plan_digest"] == "e" * 64
    assert rec["channel"] == "C1" and rec["thread_ts"] == "100.200" and rec["args"] == {"image_tag": "1.5.0"}
    assert json.loads(json.dumps(rec)) == rec


def test_history_lines_join_helm_and_plate_bot() -> None:
    history = [
        Revision(1, "superseded", "plate-web-1.4.0", "1.4.0", T0 - 500, "Install complete"),
        Revision(2, "failed", "plate-web-1.4.0", "1.4.0", T0 + 1, 'Upgrade "plate-web" failed: `boom` <@U1>'),
        Revision(3, "deployed", "plate-web-1.4.0", "1.4.0", T0 + 30, "Rollback to 1"),
    ]
    rec = record("r1", T0, T0 + 42.5, outcome="failed")
    lines = history_lines("prod", "plate-web", history, [rec], {"r1": "https://x.slack.com/archives/C1/p1"}, count=2)
    assert lines[0] == "*History of `plate-web` in `prod`* (newest 2 of 3 kept by helm)"
    assert lines[1].startswith("• *3* deployed (live) · plate-web-1.4.0 · app 1.4.0 · ")
    assert (
        "plate-bot deploy 1.5.0, requested by <@U0BOB>, approved by <@U0CAROL> · plan `eeeeeeeeeeee` · "
        'job failed in 42.5s · <https://x.slack.com/archives/C1/p1|thread> · helm: "Rollback to 1"'
    ) in lines[1]
    assert lines[2].startswith("• *2* failed") and 'helm: "Upgrade "plate-web" failed: boom @U1"' in lines[2]
    assert len(lines) == 3  # count=2
    outside = history_lines("prod", "plate-web", history, [], {}, count=10)
    assert 'outside plate-bot · helm: "Install complete"' in outside[-1]
    assert history_lines("stg", "plate-web", [], [], {}, count=10) == [
        "*History of `plate-web` in `stg`*: the release is not installed."
    ]


# --- the rollback card -------------------------------------------------------------------------------------


def plan(argo: ArgoSync | None = None, target_status: str = "superseded") -> RollbackPlan:
    live = Revision(3, "deployed", "plate-web-1.4.0", "1.4.0", T0, "Upgrade complete")
    target = Revision(2, target_status, "plate-web-1.4.0", "1.4.0", T0 - 3600, "Upgrade complete")
    return RollbackPlan(
        release="plate-web",
        live=live,
        target=target,
        live_image="harbor.example.com/plate/plate-web:1.5.1",
        target_image="harbor.example.com/plate/plate-web:1.5.0",
        target_origin=Origin(),
        backup=True,
        workloads=("Deployment/plate-web",),
        digest="f" * 64,
        argo=argo,
    )


def test_rollback_summary() -> None:
    lines = plan().summary()
    assert lines[0] == "*Rollback* `plate-web`: revision *3* (live) → revision *2* · check `ffffffffffff`"
    assert lines[1].startswith("*Live* revision 3 · chart plate-web-1.4.0 · app 1.4.0 · image `1.5.1` · deployed ")
    assert lines[2].startswith("*Target* revision 2 · chart plate-web-1.4.0 · app 1.4.0 · image `1.5.0` · deployed ")
    assert lines[2].endswith("(superseded)")
    assert lines[3] == '*Target deployed by:* outside plate-bot (helm: "Upgrade complete")'
    assert lines[4] == "*plate-bot backup of revision 2:* yes"
    assert len(lines) == 5 and plan().offers == ()
    assert ":warning: Revision 2 ended `failed`" in "\n".join(plan(target_status="failed").summary())


@pytest.mark.parametrize(
    ("argo", "offers", "says"),
    [
        (ArgoSync("plate-web-prod", "argocd", automated={"prune": True, "selfHeal": True}), (PAUSE_AUTOSYNC,),
         "syncs automatically (prune, selfHeal): it will redeploy git's version"),
        (ArgoSync("plate-web-prod", "argocd", automated={}), (PAUSE_AUTOSYNC,), "syncs automatically: it will"),
        (ArgoSync("plate-web-prod", "argocd", automated=None), (), "automated sync is off"),
        (ArgoSync("plate-web-prod", "argocd", found=False), (), "was not found: nothing to pause"),
        (ArgoSync("plate-web-prod", "argocd", error="403 Forbidden"), (), "I could not read"),
    ],
)  # fmt: skip
def test_argo_cd_lines_and_the_pause_offer(argo: ArgoSync, offers: tuple[str, ...], says: str) -> None:
    result = plan(argo)
    assert result.offers == offers
    assert says in "\n".join(result.summary())


# --- the approval choice on requests and cards ----------------------------------------------------------------

ENV = Environment(namespace="plate-prod", release="plate-web", chart="chart", name="prod")


def pending(offers: tuple[str, ...] = ()):
    req = new_request(
        "r1", verb="rollback", env="prod", requester="U0BOB", channel="C1", now=0, ttl=60, approvals_required=1
    )
    return req.with_plan("d" * 64, ["*Rollback* …"], offers)


def test_an_offered_choice_is_kept_and_an_unoffered_one_refused() -> None:
    approved = pending((PAUSE_AUTOSYNC,)).with_approval("U0CAROL", 1, is_approver=True, option=PAUSE_AUTOSYNC)
    assert approved.chosen == (PAUSE_AUTOSYNC,) and approved.status.value == "approved"
    assert type(approved).from_storage(approved.for_storage()) == approved
    with pytest.raises(Conflict, match="not offered"):
        pending().with_approval("U0CAROL", 1, is_approver=True, option=PAUSE_AUTOSYNC)
    plain = pending((PAUSE_AUTOSYNC,)).with_approval("U0CAROL", 1, is_approver=True)
    assert plain.chosen == ()


def _buttons(blocks: list[dict]) -> list[tuple[str, str]]:
    actions = next(b for b in blocks if b["type"] == "actions")
    return [(e["text"]["text"], e["action_id"]) for e in actions["elements"]]


def test_card_buttons_with_and_without_the_pause_offer() -> None:
    _text, blocks = messages.request_card(pending(), ENV)
    assert _buttons(blocks) == [("Approve", "plate_approve"), ("Reject", "plate_reject"), ("Cancel", "plate_cancel")]
    _text, blocks = messages.request_card(pending((PAUSE_AUTOSYNC,)), ENV)
    assert _buttons(blocks) == [
        ("Approve and pause auto-sync", messages.APPROVE_PAUSE),
        ("Approve (auto-sync stays on)", "plate_approve"),
        ("Reject", "plate_reject"),
        ("Cancel", "plate_cancel"),
    ]
    checking = new_request("r2", verb="rollback", env="prod", requester="U0BOB", channel="C1", now=0, ttl=60,
                           approvals_required=1, planned=False)  # fmt: skip
    _text, blocks = messages.request_card(checking, ENV)
    assert "Checking the target revision against helm history" in json.dumps(blocks)
    assert _buttons(blocks) == [("Cancel", "plate_cancel")]
    paused = pending((PAUSE_AUTOSYNC,)).with_approval("U0CAROL", 1, is_approver=True, option=PAUSE_AUTOSYNC)
    assert "Argo CD auto-sync will be paused first." in json.dumps(messages.decided_card(paused, ENV)[1])


@pytest.mark.parametrize(
    "link",
    [
        "https://plate-team.slack.com/archives/C0DEPLOYS/p1795772987250000",
        "https://plate-team.slack.com/archives/C0DEPLOYS/p1795772987250000?thread_ts=1795772987.250000&cid=C0DEPLOYS",
    ],
)
def test_slack_permalinks_survive_redaction_but_secrets_next_to_them_do_not(link: str) -> None:
    secret = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA=="
    assert redact_text(f"<{link}|thread> {secret}") == f"<{link}|thread> [REDACTED]"
    assert redact_text(f"https://evil.example.com/archives/{secret}") != f"https://evil.example.com/archives/{secret}"


# --- the target's images (what the registry says now) ------------------------------------------------------

HOST = "harbor.example.com/plate/plate-web"
RAN, MOVED = "sha256:" + "a" * 64, "sha256:" + "b" * 64


def answers(names: list[str], **by_query: Resolution) -> list[TargetImage]:
    queries = image_queries(names)
    found = {q: by_query.get(q.rsplit("/", 1)[-1], Resolution(parse(q), Outcome.NOT_CHECKED)) for q in queries}
    return target_images(names, found)


def resolved(query: str, digest: str) -> Resolution:
    return Resolution(parse(query), Outcome.RESOLVED, digest=digest)


def missing(query: str, detail: str = "tag not found") -> Resolution:
    return Resolution(parse(query), Outcome.MISSING, detail=detail, tags=("1.3.0", "1.10.0", "latest"))


def test_image_queries_ask_a_pinned_image_by_digest_and_its_tag_on_its_own() -> None:
    names = [f"{HOST}:1.4.0@{RAN}", f"{HOST}:1.3.0", f"{HOST}@{RAN}"]
    assert image_queries(names) == [*names, f"{HOST}:1.4.0"]


@pytest.mark.parametrize(
    ("pulled", "tag_now", "says", "blocks"),
    [
        (resolved(f"{HOST}:1.4.0@{RAN}", RAN), resolved(f"{HOST}:1.4.0", RAN), None, False),
        (resolved(f"{HOST}:1.4.0@{RAN}", RAN), resolved(f"{HOST}:1.4.0", MOVED),
         f"tag `1.4.0` of `{HOST}` now points at `{MOVED[:19]}…`, revision 2 ran `{RAN[:19]}…`; the rollback runs "
         "the revision's digest", False),
        (resolved(f"{HOST}:1.4.0@{RAN}", RAN), missing(f"{HOST}:1.4.0"),
         f"tag `1.4.0` of `{HOST}` no longer exists (newest tags: `1.10.0`, `1.3.0`); the rollback runs revision 2's "
         "digest, which the registry still has", False),
        (missing(f"{HOST}:1.4.0@{RAN}"), resolved(f"{HOST}:1.4.0", MOVED),
         f"revision 2 runs `{HOST}@{RAN}`, which the registry no longer has: no pod could pull it; tag `1.4.0` now "
         f"points at `{MOVED[:19]}…`: deploy it instead if that is wanted", True),
        (missing(f"{HOST}:1.4.0@{RAN}"), missing(f"{HOST}:1.4.0"),
         "deploy one of its newest tags instead: `1.10.0`, `1.3.0`", True),
    ],
    ids=["unchanged", "tag-moved", "tag-gone", "digest-gone", "both-gone"],
)  # fmt: skip
def test_a_pinned_target_image(pulled: Resolution, tag_now: Resolution, says: str | None, blocks: bool) -> None:
    [target] = answers([f"{HOST}:1.4.0@{RAN}"], **{"plate-web:1.4.0@" + RAN: pulled, "plate-web:1.4.0": tag_now})
    lines = "\n".join(target_image_lines([target], 2, "prod"))
    reason = target_images_blocking([target], 2)
    assert (reason is not None) == blocks
    if says is None:
        assert ":warning:" not in lines and reason is None, lines
    else:
        assert says in (reason if blocks else lines), (reason, lines)
    assert target_image_pins([target]) == {}  # the manifest names the digest: nothing more to bind


def test_a_tag_only_target_image_binds_the_digest_its_tag_points_at_now() -> None:
    spec = f"{HOST}:1.3.0"
    [target] = answers([spec], **{"plate-web:1.3.0": resolved(spec, RAN)})
    lines = target_image_lines([target], 2, "prod")
    assert lines[1] == f"`{spec}` @ `{RAN[:19]}…`"
    assert (
        "Revision 2 recorded no digest for `plate-web:1.3.0`: the rollback pulls what the tag points at now"
        in (lines[2])
    )
    assert target_image_pins([target]) == {spec: RAN} and target_images_blocking([target], 2) is None
    assert target_images_moved({spec: RAN}, [target]) is None
    assert target_images_moved({spec: MOVED}, [target]) == (
        f"tag `1.3.0` of `{HOST}` moved after the approval: approved `{MOVED[:19]}…`, now `{RAN[:19]}…`; "
        "request the rollback again"
    )
    [gone] = answers([spec], **{"plate-web:1.3.0": missing(spec)})
    assert "it no longer exists" in (target_images_moved({spec: RAN}, [gone]) or "")
    assert target_images_blocking([gone], 2) is None  # a warning: the tag may be pushed again
    assert f":warning: tag `{spec}` no longer exists (newest tags: `1.10.0`, `1.3.0`)" in "\n".join(
        target_image_lines([gone], 2, "prod")
    )
    [away] = answers([spec], **{"plate-web:1.3.0": Resolution(parse(spec), Outcome.UNREACHABLE, detail="refused")})
    assert target_images_moved({spec: RAN}, [away]) is None  # unchecked now: the kubelet will tell
    assert ":warning: could not reach harbor.example.com to check the target's images" in "\n".join(
        target_image_lines([away], 2, "prod")
    )


def test_refused_credentials_point_at_harbor_verify() -> None:
    spec = f"{HOST}:1.3.0"
    refused = Resolution(parse(spec), Outcome.REFUSED, detail="401", credential="harbor-docker-secret")
    [target] = answers([spec], **{"plate-web:1.3.0": refused})
    lines = "\n".join(target_image_lines([target], 2, "prod"))
    assert "refused plate-bot's credentials (Secret `harbor-docker-secret`)" in lines
    assert "`/plate harbor-verify prod`" in lines and target_images_blocking([target], 2) is None
    assert target_image_lines([], 2, "prod") == ()


def test_the_card_puts_the_image_lines_under_the_target() -> None:
    lines = dataclasses.replace(plan(), image_lines=("*Target images* …", "`x` @ `sha256:…`")).summary()
    assert lines[2].startswith("*Target* revision 2") and lines[3:5] == ["*Target images* …", "`x` @ `sha256:…`"]
