"""workers.watcher.releases (issue 14): helm's release records decoded defensively (hostile cluster data),
which revisions are announced (new since first sight, not plate-bot's, settled, after a grace), and the
notice's text."""

from __future__ import annotations

import base64
import gzip
import json
from typing import Any

import pytest

from core.redact import REDACTOR
from sandbox.helm import release_secret
from workers.watcher.releases import (
    CONFIGMAP,
    GRACE,
    MAX_ENCODED,
    MAX_MANIFEST,
    MAX_RELEASE,
    PENDING_MAX,
    SECRET,
    Baseline,
    HelmRevision,
    ReleaseRecordError,
    Verdict,
    decode_release,
    is_new,
    made_by_plate_bot,
    notice_id,
    notice_message,
    record_ref,
    release_image_tag,
    verdict,
)

NOW = 1_800_000_000.0
MANIFEST = """---
# Source: plate-api/templates/service.yaml
apiVersion: v1
kind: Service
metadata:
  name: plate-api
---
# Source: plate-api/templates/deployment.yaml
apiVersion: apps/v1
kind: Deployment
metadata:
  name: plate-api
spec:
  template:
    spec:
      containers:
        - name: api
          image: harbor.example.com/plate/plate-api:2.2.0
"""


def iso(ts: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.123456789Z")


def release_json(version: int = 3, **info: Any) -> dict[str, Any]:
    return {
        "name": "plate-api",
        "namespace": "plate-prod",
        "version": version,
        "info": {
            "status": "deployed",
            "description": "Upgrade complete",
            "first_deployed": iso(NOW - 86400),
            "last_deployed": iso(NOW - 60),
            **info,
        },
        "chart": {"metadata": {"name": "plate-api", "version": "0.3.0", "appVersion": "2.2.0"}},
        "config": {"image": {"tag": "2.2.0-values"}},
        "manifest": MANIFEST,
    }


def labels(version: int = 3, status: str = "deployed") -> dict[str, str]:
    return {"name": "plate-api", "owner": "helm", "status": status, "version": str(version)}


def secret_with(release: str, version: int = 3) -> dict[str, Any]:
    """A Secret as the API returns it, with `release` as data.release (already the Secret's base64)."""
    return {
        "metadata": {"name": f"sh.helm.release.v1.plate-api.v{version}", "namespace": "plate-prod",
                     "labels": labels(version)},
        "type": "helm.sh/release.v1",
        "data": {"release": release},
    }  # fmt: skip


def helm_encoded(doc: Any, *, compress: bool = True) -> str:
    """What helm stores: base64 of gzip of the JSON (the secret driver's bytes; a ConfigMap's text)."""
    raw = json.dumps(doc).encode() if not isinstance(doc, bytes) else doc
    return base64.b64encode(gzip.compress(raw, mtime=0) if compress else raw).decode()


def as_secret(doc: Any, **kw: Any) -> dict[str, Any]:
    return secret_with(base64.b64encode(helm_encoded(doc, **kw).encode()).decode())


# --- decoding ---------------------------------------------------------------------------------------------


def test_a_secret_and_a_configmap_record_decode_to_the_revision() -> None:
    rev, doc = decode_release(as_secret(release_json()), SECRET)
    assert (rev.release, rev.namespace, rev.revision, rev.status) == ("plate-api", "plate-prod", 3, "deployed")
    assert (rev.chart, rev.chart_version, rev.app_version) == ("plate-api", "0.3.0", "2.2.0")
    assert rev.description == "Upgrade complete"
    assert rev.last_deployed == pytest.approx(NOW - 60 + 0.123456, abs=1e-3)  # helm's nanoseconds
    assert rev.install == str(int(NOW - 86400))
    assert doc["manifest"] == MANIFEST
    configmap = {"metadata": {"name": "sh.helm.release.v1.plate-api.v3", "labels": labels()},
                 "data": {"release": helm_encoded(release_json())}}  # fmt: skip
    assert decode_release(configmap, CONFIGMAP)[0] == rev
    plain = as_secret(release_json(), compress=False)  # helm reads uncompressed JSON too
    assert decode_release(plain, SECRET)[0] == rev


def test_the_fake_helm_writes_what_the_watcher_reads() -> None:
    stored = {**release_json(4), "computed": {"x": 1}, "hooks": []}
    secret = release_secret(stored)
    assert secret["metadata"]["name"] == "sh.helm.release.v1.plate-api.v4"
    assert secret["type"] == "helm.sh/release.v1" and secret["metadata"]["labels"] == labels(4)
    rev, doc = decode_release(secret, SECRET)
    assert rev.revision == 4 and "computed" not in doc
    assert record_ref(secret, SECRET) == ("plate-api", 4, "deployed")


@pytest.mark.parametrize(
    ("release", "why"),
    [
        (None, "no data.release"),
        ("%%%not base64%%%", "not base64"),
        (base64.b64encode(b"@@ not base64 inside @@").decode(), "not base64"),
        (base64.b64encode(base64.b64encode(b"\x1f\x8b\x08garbage-not-deflate")).decode(), "not valid gzip"),
        (base64.b64encode(base64.b64encode(gzip.compress(b"{}", mtime=0)[:-12])).decode(), "truncated gzip"),
        (base64.b64encode(helm_encoded(b"{not json").encode()).decode(), "not JSON"),
        (base64.b64encode(helm_encoded(b"\xff\xfe\x00").encode()).decode(), "not JSON"),
        (base64.b64encode(helm_encoded(b"[" * 100_000 + b"]" * 100_000).encode()).decode(), "not JSON"),
        (base64.b64encode(helm_encoded(["a", "list"]).encode()).decode(), "not an object"),
        (base64.b64encode(helm_encoded({"name": "plate-api"}).encode()).decode(), "no name or version"),
        (base64.b64encode(helm_encoded({"name": "x", "version": True}).encode()).decode(), "no name or version"),
        (base64.b64encode(helm_encoded({"name": 7, "version": 3}).encode()).decode(), "no name or version"),
    ],
)
def test_hostile_records_are_refused_with_a_reason_not_an_exception(release: Any, why: str) -> None:
    secret = secret_with(release)
    if release is None:
        del secret["data"]
    with pytest.raises(ReleaseRecordError, match=why):
        decode_release(secret, SECRET)


def test_a_gzip_bomb_stops_at_the_cap() -> None:
    bomb = gzip.compress(b'{"name": "plate-api", "version": 3, "pad": "' + b"A" * (MAX_RELEASE + 10) + b'"}')
    assert len(bomb) < 64 * 1024  # small on the wire
    secret = secret_with(base64.b64encode(base64.b64encode(bomb)).decode())
    with pytest.raises(ReleaseRecordError, match="inflates to over"):
        decode_release(secret, SECRET)
    with pytest.raises(ReleaseRecordError, match="over 100 bytes"):  # a plain one over the cap, too
        decode_release(as_secret(release_json(), compress=False), SECRET, limit=100)
    with pytest.raises(ReleaseRecordError, match="over the cap"):
        decode_release(secret_with("A" * (MAX_ENCODED + 4)), SECRET)


def test_odd_field_types_are_read_as_absent() -> None:
    doc = release_json()
    doc["info"] = {"status": ["deployed"], "description": {"x": 1}, "last_deployed": 12}
    doc["chart"] = "not a map"
    rev, _doc = decode_release(as_secret(doc), SECRET)
    assert (rev.status, rev.description, rev.last_deployed, rev.chart) == ("unknown", "", None, "")
    assert rev.install == "0"


def test_labels_say_which_record_it_is_without_decoding() -> None:
    secret = as_secret(release_json())
    assert record_ref(secret, SECRET) == ("plate-api", 3, "deployed")
    assert record_ref({**secret, "type": "Opaque"}, SECRET) is None
    for bad in ({"owner": "someone"}, {"version": "v3"}, {"name": ""}):
        assert record_ref({**secret, "metadata": {"labels": {**labels(), **bad}}}, SECRET) is None
    assert record_ref({"metadata": {"labels": labels()}}, CONFIGMAP) == ("plate-api", 3, "deployed")


def test_image_tag_from_the_manifest_else_the_values() -> None:
    assert release_image_tag(release_json()) == "2.2.0"
    assert release_image_tag({**release_json(), "manifest": ""}) == "2.2.0-values"
    assert release_image_tag({**release_json(), "manifest": "a: [unclosed\n  - {"}) == "2.2.0-values"
    assert release_image_tag({**release_json(), "manifest": MANIFEST + "#" * MAX_MANIFEST}) == "2.2.0-values"
    assert release_image_tag({"manifest": 5, "config": {"image": {"tag": True}}}) == "unknown"
    assert release_image_tag({"config": {"image": {"tag": 3}}}) == "3"
    # No tag in the values: the chart's default, then its appVersion, as App Home reads them.
    chart = {"values": {"image": {"tag": "2.1.0-default"}}, "metadata": {"appVersion": "2.1.0"}}
    assert release_image_tag({"chart": chart}) == "2.1.0-default"
    assert release_image_tag({"chart": {"metadata": {"appVersion": "2.1.0"}}}) == "2.1.0"
    assert release_image_tag({"chart": "garbage", "config": []}) == "unknown"


# --- which revisions are announced --------------------------------------------------------------------------


def rev(revision: int = 3, status: str = "deployed", deployed: float | None = NOW - 60, **kw: Any) -> HelmRevision:
    return HelmRevision("plate-api", "plate-prod", revision, status, last_deployed=deployed,
                        first_deployed=NOW - 86400, **kw)  # fmt: skip


def test_first_sight_marks_what_was_there_as_history() -> None:
    seen = Baseline(revision=5, at=NOW - 600)  # revisions 1..5 were there when the watcher first listed
    assert not is_new(rev(5, deployed=NOW - 3600), seen, NOW)
    assert not is_new(rev(2, status="superseded", deployed=NOW - 7200), seen, NOW)  # a status label moved
    assert is_new(rev(6), seen, NOW)
    assert is_new(rev(6, deployed=NOW - 900), seen, NOW)  # a client clock behind ours: the number says new
    assert is_new(rev(1, deployed=NOW - 60), seen, NOW)  # reinstalled: numbering starts again
    assert not is_new(rev(9, deployed=NOW - 8 * 86400), seen, NOW)  # too old to be news
    fresh_install = Baseline(revision=0, at=NOW - 10)  # not installed at first sight
    assert is_new(rev(1), fresh_install, NOW)


def test_own_revisions_by_description_or_by_the_jobs_window() -> None:
    assert made_by_plate_bot(rev(description="plate-bot 0a1b2c3d4e5f by U0BOB"), [])
    job = {"request": "9f8e7d6c5b4a", "requester": "U0BOB", "started": NOW - 120, "ended": None,
           "deadline": NOW + 600}  # fmt: skip
    rollback = rev(description="Rollback to 2")
    assert made_by_plate_bot(rollback, [job])  # stamped while the job ran (its record says "running")
    assert not made_by_plate_bot(rollback, [{**job, "started": NOW - 30}])  # before the job started
    assert not made_by_plate_bot(rev(description="Upgrade complete"), [])


def test_the_verdict_waits_for_helm_and_for_plate_bots_record_then_is_final() -> None:
    base = Baseline(2, NOW - 3600)
    kw = {"first_seen": NOW - 1, "now": NOW}
    assert verdict(rev(2, deployed=NOW - 7200), base, ours=False, **kw) is Verdict.HISTORY
    assert verdict(rev(3), base, ours=True, **kw) is Verdict.OURS
    assert verdict(rev(3), base, ours=False, **kw) is Verdict.WAIT  # within the grace
    assert verdict(rev(3), base, ours=False, first_seen=NOW - GRACE, now=NOW) is Verdict.ANNOUNCE
    pending = rev(3, status="pending-upgrade")
    assert verdict(pending, base, ours=False, first_seen=NOW - 60, now=NOW) is Verdict.WAIT
    assert verdict(pending, base, ours=False, first_seen=NOW - PENDING_MAX, now=NOW) is Verdict.ANNOUNCE
    assert verdict(rev(3), base, ours=False, first_seen=NOW, now=NOW, grace=0) is Verdict.ANNOUNCE


def test_a_notice_names_one_revision_of_one_installation() -> None:
    assert notice_id("prod/plate-prod/plate-api", rev(3)) == f"prod/plate-prod/plate-api:{int(NOW - 86400)}:3"
    reinstalled = HelmRevision("plate-api", "plate-prod", 3, "deployed", first_deployed=NOW)
    assert notice_id("prod", reinstalled) != notice_id("prod", rev(3))


# --- the notice ----------------------------------------------------------------------------------------------


def test_the_notice_says_what_changed_and_points_at_history() -> None:
    r = rev(7, chart="plate-api", chart_version="0.3.0", app_version="2.2.0", description="Upgrade complete")
    text, blocks = notice_message(r, label="prod/plate-api", image="2.2.0")
    assert text == "prod/plate-api: helm revision 7 of plate-api made outside plate-bot (deployed)"
    body = blocks[0]["text"]["text"]
    assert "*Helm release changed outside plate-bot* in `prod/plate-api`: release `plate-api` revision *7*" in body
    assert "chart `plate-api-0.3.0` · app version `2.2.0` · image `2.2.0` · deployed " in body
    assert "helm: `Upgrade complete`" in body
    assert blocks[1]["elements"][0]["text"] == "Who made it and what came before: `/plate history prod plate-api`"


def test_the_notice_keeps_hostile_descriptions_harmless() -> None:
    REDACTOR.set(("test", "notice"), ["s3cr3t-Value-42x"])
    try:
        hostile = "pw s3cr3t-Value-42x <!channel> `code` & <https://evil|click> " + "x" * 500
        _text, blocks = notice_message(rev(description=hostile, app_version="<@U0EVE>"), label="prod", image="1")
    finally:
        REDACTOR.remove(("test", "notice"))
    body = blocks[0]["text"]["text"]
    assert "s3cr3t-Value-42x" not in body and "<!channel>" not in body and "<@U0EVE>" not in body
    assert "&lt;!channel&gt;" in body and "'code'" in body and "<https://evil" not in body
    assert len(body) < 800
    assert "`/plate history prod`" in blocks[1]["elements"][0]["text"]
