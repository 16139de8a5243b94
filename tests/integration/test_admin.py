"""`plate-bot admin` through the real CLI entry point (`bot.cli.main`) against a real Redis (this test's
own database): held locks listed, a stuck one broken by an admin and audited, anyone else refused, the
audit stream exported as JSON lines; one-line errors and exit codes, never a traceback or a password.

The stuck lock is the real thing: `/plate deploy stg` with no worker running leaves the job queued and
the release locked.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from bot.cli import main
from tests.conftest import Service, plate_config
from tests.processes import free_port

ADMIN, OTHER, IN_GROUP = "U0ADMIN", "U0BOB", "U0CAROL"  # U0CAROL is in S0SRE (the fake Slack's group)


@pytest.fixture
def admins(plate_env: dict) -> None:
    """The config's admins: one user and one group; audit records mirrored to #C0AUDIT."""
    config = {**plate_config(), "admins": [ADMIN, "S0SRE"], "audit_channel": "C0AUDIT"}
    Path(plate_env["config_path"]).write_text(yaml.safe_dump(config))


def admin(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["admin", *argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def _stuck_deploy(service: Service) -> str:
    """A deploy approved and queued with no worker to run it: the release stays locked."""
    assert service.command("deploy stg 1.5.0")[0] == 200
    queued = lambda: (service.runtime.store.lock_holder("stg") or {}).get("state") == "queued"  # noqa: E731
    service.wait(queued, 10, "the stg lock held for the queued job")
    (request_id,) = service.request_ids()
    return request_id


def _audit(service: Service, event: str) -> list[dict[str, str]]:
    return [r for r in service.runtime.store.audit_entries(200) if r["event"] == event]


def test_locks_lists_the_held_locks(admins, service: Service, capsys) -> None:
    assert admin(capsys, "locks") == (0, "no locks held\n", "")
    request_id = _stuck_deploy(service)

    code, out, _err = admin(capsys, "locks")
    header, row = out.splitlines()
    assert code == 0 and header.split() == ["NAME", "REQUEST", "VERB", "USER", "STATE", "SINCE", "LEASE", "LEFT"]
    assert row.split()[:5] == ["stg", request_id, "deploy", "U0BOB", "queued"]

    code, out, _err = admin(capsys, "locks", "--format", "jsonl")
    (lock,) = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and (lock["name"], lock["request"], lock["verb"]) == ("stg", request_id, "deploy")
    assert lock["since"].endswith("Z") and 1800 < lock["lease"] < 3 * 3600  # queue allowance + job timeout


def test_an_admin_breaks_a_stuck_lock_and_it_is_audited(admins, service: Service, fake_slack, capsys) -> None:
    request_id = _stuck_deploy(service)
    code, out, err = admin(capsys, "break-lock", "stg", "--as", ADMIN, "--reason", "worker pool gone, INC-42")
    assert code == 0, err
    assert out.startswith(f"broke lock stg: held by request {request_id} (deploy by U0BOB since ")
    assert service.runtime.store.lock_holder("stg") is None
    (record,) = _audit(service, "lock.broken")
    assert (record["user"], record["request"], record["env"], record["verb"]) == (ADMIN, request_id, "stg", "deploy")
    assert "lock stg of request" in record["detail"] and "reason: worker pool gone, INC-42" in record["detail"]
    service.wait(lambda: any("lock.broken" in m.text for m in fake_slack.messages("C0AUDIT")), 5, "the mirror")
    # The job approved under that lock was still queued: cancelled, so it cannot run later without it.
    assert "its queued job was cancelled" in record["detail"]
    assert out.splitlines()[1] == f"its job {record['job']} was still queued and is cancelled: it will not run"
    assert service.runtime.queue.count == 0
    told = [m.text for m in fake_slack.messages("C0DEPLOYS") if "broke the lock" in m.text]
    assert told == [
        f":unlock: <@{ADMIN}> broke the lock on `stg`: worker pool gone, INC-42. "
        "This deploy was still queued and will not run; ask again when ready."
    ]
    # Gone now: a second break changes nothing.
    code, _out, err = admin(capsys, "break-lock", "plate:lock:stg", "--as", ADMIN)
    assert code == 1 and err == "plate-bot admin: no lock named 'stg' is held (plate-bot admin locks lists them)\n"


def test_a_member_of_an_admin_group_may_break_a_lock(admins, service: Service, fake_slack, capsys) -> None:
    """Here the job is no longer waiting (as if a worker had taken it): nothing is cancelled."""
    request_id = _stuck_deploy(service)
    service.runtime.queue.remove(service.runtime.store.get(request_id).job_id)
    code, out, _err = admin(capsys, "break-lock", "stg", "--as", IN_GROUP)
    assert code == 0 and len(out.splitlines()) == 1
    assert service.runtime.store.lock_holder("stg") is None
    (record,) = _audit(service, "lock.broken")
    assert record["user"] == IN_GROUP and "cancelled" not in record["detail"]
    told = [m.text for m in fake_slack.messages("C0DEPLOYS") if "broke the lock" in m.text]
    assert told == [f":unlock: <@{IN_GROUP}> broke the lock on `stg`."]


def test_anyone_else_is_refused_and_that_is_audited(admins, service: Service, capsys) -> None:
    _stuck_deploy(service)
    code, out, err = admin(capsys, "break-lock", "stg", "--as", OTHER)
    assert (code, out) == (3, "")
    assert err.count("\n") == 1 and f"{OTHER} is not one of the admins" in err
    assert service.runtime.store.lock_holder("stg") is not None
    (record,) = _audit(service, "lock.break_refused")
    assert record["user"] == OTHER and "lock stg" in record["detail"]
    assert not _audit(service, "lock.broken")


def test_nobody_is_an_admin_by_default(service: Service, capsys) -> None:
    _stuck_deploy(service)
    assert admin(capsys, "break-lock", "stg", "--as", ADMIN)[0] == 3
    assert service.runtime.store.lock_holder("stg") is not None


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["break-lock", "stg", "--as", "bob"], "--as takes your Slack user id"),
        (["audit-export", "--since", "last tuesday"], "--since 'last tuesday': give an ISO date"),
    ],
    ids=["as-not-a-user-id", "since-unreadable"],
)
def test_usage_errors_are_one_line_and_exit_2(admins, plate_env, capsys, argv: list[str], says: str) -> None:
    code, out, err = admin(capsys, *argv)
    assert (code, out) == (2, "") and err.count("\n") == 1 and says in err


def test_audit_export_writes_the_stream_as_json_lines(admins, service: Service, capsys) -> None:
    _stuck_deploy(service)
    assert service.command("deploy prod 1.5.0")[0] == 200  # pending approval
    service.wait(lambda: len(service.request_ids()) == 2, 10, "the prod request")
    stored = list(reversed(service.runtime.store.audit_entries(100)))  # oldest first

    code, out, _err = admin(capsys, "audit-export")
    exported = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["id"] for r in exported] == [r["id"] for r in stored]
    assert {r["event"] for r in exported} >= {"request.created", "request.queued", "lock.taken"}
    assert all(r["time"].endswith("Z") and r["at"] for r in exported)
    assert exported[0] == {"id": stored[0]["id"], "time": exported[0]["time"], **stored[0]}

    middle = exported[len(exported) // 2]["id"]
    later = [json.loads(line) for line in admin(capsys, "audit-export", "--since", middle)[1].splitlines()]
    assert [r["id"] for r in later] == [r["id"] for r in exported[len(exported) // 2 :]]
    assert len(admin(capsys, "audit-export", "--since", "1h")[1].splitlines()) == len(exported)
    tomorrow = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 86400))
    assert admin(capsys, "audit-export", "--since", tomorrow)[:2] == (0, "")


def test_audit_export_pages_through_a_long_stream(admins, plate_env, redis_conn, capsys) -> None:
    from bot.admin import EXPORT_BATCH
    from core.audit import Event, entry
    from core.store import Store

    store = Store(redis_conn)
    for n in range(EXPORT_BATCH + 5):
        store.append_audit(entry(Event.JOB_STARTED, at=1_700_000_000 + n, job=f"job-{n}"))
    code, out, _err = admin(capsys, "audit-export", "--since", "2023-01-01")
    assert code == 0 and [json.loads(line)["job"] for line in out.splitlines()] == [
        f"job-{n}" for n in range(EXPORT_BATCH + 5)
    ]


def test_redis_unreachable_is_one_line_without_the_password(admins, plate_env, monkeypatch, capsys) -> None:
    monkeypatch.setenv("REDIS_URL", f"redis://:hunter2-pw@127.0.0.1:{free_port()}/0")
    code, out, err = admin(capsys, "locks")
    assert (code, out) == (1, "") and err.count("\n") == 1
    assert "cannot reach Redis at redis://:***@127.0.0.1:" in err and "hunter2" not in err


def test_without_redis_url_it_says_what_to_set(admins, plate_env, monkeypatch, capsys) -> None:
    monkeypatch.delenv("REDIS_URL")
    code, _out, err = admin(capsys, "locks")
    assert code == 2 and "set REDIS_URL (or REDIS_SENTINELS)" in err


def test_a_bad_sentinel_url_stops_any_command_with_one_line(plate_env, monkeypatch, capsys) -> None:
    monkeypatch.setenv("REDIS_URL", "redis+sentinel://:hunter2-pw@s1:26379/")
    with pytest.raises(SystemExit) as stopped:
        main(["admin", "locks"])
    _out, err = capsys.readouterr()
    assert stopped.value.code == 2 and err.count("\n") == 1
    assert err.startswith("plate-bot: REDIS_URL: a Sentinel URL's path is /<service name>") and "hunter2" not in err
