"""Records outlive processes: during a rolling upgrade the previous version and this one read each
other's Requests, Incidents and audit records (in Redis and inside queued jobs). Old shapes go through the
new code and back; a newer version's record (unknown fields, missing ones) is read without failing."""

from __future__ import annotations

import json

from core.audit import AuditRecord, Event, entry
from core.requests import Request, Status, Vote
from workers.watcher.classify import Reason
from workers.watcher.incidents import Incident, Phase

# A Request exactly as plate-bot 0.1 stored it (dataclasses.asdict, sorted keys): every field, no format.
OLD_REQUEST = (
    '{"approvals":[{"at":1700000060.5,"user":"U0ALICE"}],"approvals_required":1,"args":{"image_tag":"1.5.0"},'
    '"channel":"C0DEPLOYS","chosen":[],"created_at":1700000000.0,"decided_at":1700000060.5,'
    '"decided_by":"U0ALICE","env":"prod","expires_at":1700000900.0,"id":"0a1b2c3d4e5f","message_ts":"1700000000.000100",'
    '"notes":[],"offers":["pause-autosync"],"plan_digest":"ab12","plan_summary":["1 changed"],"planned":true,'
    '"reason":null,"requester":"U0BOB","status":"approved","verb":"deploy"}'
)
# 0.1's reader: `Request(**data)` after converting a few fields, so it refused any field it did not know
# and needed these (no default in its dataclass, or read by key).
OLD_REQUEST_FIELDS = set(json.loads(OLD_REQUEST))
OLD_REQUEST_REQUIRED = {"id", "verb", "env", "requester", "channel", "created_at", "expires_at"}
OLD_REQUEST_REQUIRED |= {"approvals_required", "status"}

OLD_INCIDENT = (
    '{"channel":"C0INCIDENTS","count":3,"detail":"ErrImagePull","diagnosed":true,"env":"prod",'
    '"first_seen":1700000000.0,"key":"prod:Deployment/plate-web:image_pull","kind":"Deployment",'
    '"last_seen":1700000100.0,"name":"plate-web","namespace":"plate-prod","pending":null,"pending_at":0.0,'
    '"phase":"open","reason":"image_pull","reopen_posted":0,"reopened":0,"resolved_at":null,'
    '"resolved_posted":false,"root_ts":"1700000001.000200","severity":"critical","shown_at":1700000001.0,'
    '"shown_count":1,"shown_phase":"open","source":"pod plate-web-1","v":4}'
)
OLD_INCIDENT_FIELDS = set(json.loads(OLD_INCIDENT))


def test_an_old_request_reads_and_writes_back_in_a_shape_the_old_reader_takes() -> None:
    request = Request.from_storage(OLD_REQUEST)
    assert request.status is Status.APPROVED and request.approvals == (Vote(user="U0ALICE", at=1700000060.5),)
    assert request.args == {"image_tag": "1.5.0"} and request.offers == ("pause-autosync",)
    back = json.loads(request.for_storage())
    assert set(back) <= OLD_REQUEST_FIELDS and set(back) >= OLD_REQUEST_REQUIRED
    assert back == json.loads(OLD_REQUEST)  # nothing changed on the way through
    assert Request.from_storage(request.for_storage()) == request


def test_a_newer_request_with_unknown_and_missing_fields_is_read() -> None:
    newer = json.loads(OLD_REQUEST)
    newer.update(format=2, app="plate-api", readers=["U0CAROL"])  # fields a later version may add
    for gone in ("offers", "chosen", "notes", "plan_summary", "message_ts"):  # and ones it may stop writing
        del newer[gone]
    request = Request.from_storage(json.dumps(newer))
    assert request.id == "0a1b2c3d4e5f" and request.format == 2
    assert request.offers == () and request.message_ts is None
    assert "readers" not in json.loads(request.for_storage())
    assert json.loads(request.for_storage())["app"] == "plate-api"


def test_fields_added_since_0_1_are_written_only_when_used() -> None:
    """A one-app environment's requests keep 0.1's shape (its reader refuses unknown fields); the app, the
    release lock and the incident link appear only where they mean something."""
    request = Request.from_storage(OLD_REQUEST)
    assert request.app == "" and request.lock == "" and request.lock_name == "prod"
    assert set(json.loads(request.for_storage())) <= OLD_REQUEST_FIELDS
    several = request.evolve(app="plate-api", lock="prod/plate-prod/plate-api", origin="https://x/archives/C1/p1")
    back = json.loads(several.for_storage())
    assert back["app"] == "plate-api" and back["lock"] == "prod/plate-prod/plate-api" and back["origin"]
    assert Request.from_storage(several.for_storage()) == several
    assert several.lock_name == "prod/plate-prod/plate-api" and several.where == "prod/plate-api"
    dry = request.evolve(args={"dry_run": True})
    assert dry.lock_name is None


def test_a_transition_keeps_the_record_readable_by_the_old_version() -> None:
    request = Request.from_storage(OLD_REQUEST).evolve(status=Status.PENDING, approvals=(), decided_by=None)
    approved = request.with_approval("U0CAROL", 1700000100.0, is_approver=True)
    back = json.loads(approved.for_storage())
    assert set(back) <= OLD_REQUEST_FIELDS and set(back) >= OLD_REQUEST_REQUIRED


def test_an_old_incident_reads_and_writes_back_unchanged() -> None:
    incident = Incident.from_storage(OLD_INCIDENT)
    assert incident.reason is Reason.IMAGE_PULL and incident.phase is Phase.OPEN and incident.v == 4
    assert json.loads(incident.for_storage()) == json.loads(OLD_INCIDENT)
    observed = incident.resolved(1700000200.0)
    assert set(json.loads(observed.for_storage())) <= OLD_INCIDENT_FIELDS


def test_a_newer_incident_is_read() -> None:
    newer = json.loads(OLD_INCIDENT) | {"format": 2, "app": "plate-web", "rollback_requested_by": "U0EVE"}
    del newer["shown_phase"]
    incident = Incident.from_storage(json.dumps(newer))
    assert incident.count == 3 and incident.shown_phase == ""


def test_audit_records_are_read_whatever_version_wrote_them() -> None:
    record = entry(Event.JOB_ENDED, at=1700000000.0, job="plate-x", outcome="succeeded")
    assert "format" not in record and record["event"] == "job.ended"
    newer = {**record, "format": "2", "app": "plate-api", "trace": "abc"}
    read = AuditRecord.model_validate(newer).fields()
    assert read["outcome"] == "succeeded" and "trace" not in read and read["format"] == "2"
    older = {"event": "lock.taken", "at": "1.000"}  # fields an old writer left out
    assert AuditRecord.model_validate(older).fields() == older
