"""Backup and restore of plate-bot's Redis state, the way docs/redis.md tells an operator to (issue 16).

A redis-server of the test's own (free loopback port, temporary directory; never the machine's Redis)
holds what a running plate-bot wrote through its own code: a prod deploy waiting for approval (its plan
made by a real worker), a stg deploy queued with its release locked, a backup of helm values, and the
audit records of all that. The state is copied the two documented ways: the RDB after BGSAVE, and the
append-only files with rewrites paused. A fresh append-only redis-server, as the chart runs it, is
started from each copy (an RDB loaded first with AOF off: see restore_rdb), and plate-bot's
store reads it back: the pending approval, the audit stream (same ids, same fields), the lock with its
lease, the backup and the queued RQ job; then a bot on the restored server approves the pending deploy.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from core.queue import fetch_job, queue_for
from core.requests import Status
from core.store import Store
from tests.conftest import Service
from tests.faults.conftest import redis_server_binary, running_service
from tests.processes import free_port, stop
from tests.waiting import wait_until


class Server:
    """redis-server on a free loopback port, its files in `directory`."""

    def __init__(self, directory: Path, *, appendonly: bool) -> None:
        self.dir, self.port = directory, free_port()
        directory.mkdir(exist_ok=True)
        self.proc = subprocess.Popen(
            [
                redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(directory),
                "--dbfilename", "dump.rdb", "--appendonly", "yes" if appendonly else "no",
                "--appendfsync", "always", "--save", "", "--daemonize", "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.client = redis.Redis(port=self.port, socket_timeout=5, socket_connect_timeout=1)
        wait_until(self._answers, 15, f"redis-server on {directory.name} to load its data and answer")

    def _answers(self) -> bool:
        try:
            return bool(self.client.ping())
        except redis.BusyLoadingError:
            return False
        except redis.ConnectionError:
            return False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.client.close()
        assert stop(self.proc, 10), "redis-server did not stop within 10 s of SIGTERM"


def backup_rdb(server: Server, to: Path) -> None:
    """docs/redis.md, RDB: BGSAVE, wait until LASTSAVE moves and the save succeeded, copy dump.rdb."""
    before = server.client.lastsave()
    # LASTSAVE counts whole seconds: a save within the second of the last one would not move it.
    wait_until(lambda: server.client.time()[0] > before.timestamp(), 3, "a new second for LASTSAVE", interval=0.1)
    server.client.bgsave()

    def saved() -> bool:
        info = server.client.info("persistence")
        return not info["rdb_bgsave_in_progress"] and server.client.lastsave() != before

    wait_until(saved, 30, "BGSAVE to finish")
    assert server.client.info("persistence")["rdb_last_bgsave_status"] == "ok"
    to.mkdir()
    shutil.copy2(server.dir / "dump.rdb", to / "dump.rdb")


def backup_aof(server: Server, to: Path) -> None:
    """docs/redis.md, AOF: pause automatic rewrites, wait for none to run, copy the append-only files
    (Redis 7: the appendonlydir directory; before 7: appendonly.aof), resume rewrites."""
    server.client.config_set("auto-aof-rewrite-percentage", "0")
    try:
        wait_until(lambda: not server.client.info("persistence")["aof_rewrite_in_progress"], 30, "no AOF rewrite")
        to.mkdir()
        if (server.dir / "appendonlydir").is_dir():
            shutil.copytree(server.dir / "appendonlydir", to / "appendonlydir")
        else:
            shutil.copy2(server.dir / "appendonly.aof", to / "appendonly.aof")
    finally:
        server.client.config_set("auto-aof-rewrite-percentage", "100")


def restore_rdb(copy: Path) -> Server:
    """docs/redis.md, an RDB into a server that runs append-only (the chart's Redis does): a server started
    with appendonly on ignores dump.rdb and starts empty, so the copy is loaded with it off, AOF is then
    turned on (Redis writes it from memory) and the server restarts as it normally runs."""
    loader = Server(copy, appendonly=False)
    loader.client.config_set("appendonly", "yes")

    def written() -> bool:
        info = loader.client.info("persistence")
        return info["aof_enabled"] == 1 and not info["aof_rewrite_in_progress"] and not info["aof_rewrite_scheduled"]

    wait_until(written, 30, "the append-only file to be written from the loaded RDB")
    assert loader.client.info("persistence")["aof_last_bgrewrite_status"] == "ok"
    loader.stop()
    return Server(copy, appendonly=True)


def test_an_rdb_alone_is_not_loaded_by_an_append_only_server(live: Server, tmp_path: Path) -> None:
    """Why restore_rdb takes the long way: started with appendonly on, Redis finds no AOF, creates an
    empty one and ignores the RDB beside it. (If this ever fails, docs/redis.md's warning is stale.)"""
    live.client.set("plate:test:backup", "1")
    backup_rdb(live, tmp_path / "naive")
    naive = Server(tmp_path / "naive", appendonly=True)
    try:
        assert naive.client.dbsize() == 0
    finally:
        naive.stop()


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Server]:
    server = Server(tmp_path / "live", appendonly=True)
    yield server
    server.stop()


def _pending_and_locked(service: Service) -> tuple[str, str]:
    """A prod deploy waiting for approval with its plan on the card, and a stg deploy queued (no worker
    runs it) with the release locked. Returns (prod request id, stg request id)."""
    assert service.command("deploy prod 1.5.0")[0] == 200
    prod = service.wait(lambda: service.request_ids(), 10, "the prod request")[0]
    service.wait(lambda: service.runtime.queue.count == 1, 10, "the plan job")
    service.run_worker()
    assert service.runtime.store.get(prod).planned
    assert service.command("deploy stg 1.5.0")[0] == 200
    queued = lambda: (service.runtime.store.lock_holder("stg") or {}).get("state") == "queued"  # noqa: E731
    service.wait(queued, 10, "the stg lock held for the queued job")
    (stg,) = set(service.request_ids()) - {prod}
    # The audit records of the queued request are written just after the lock: wait for the last of them.
    taken = lambda: any(r["event"] == "lock.taken" and r.get("request") == stg  # noqa: E731
                        for r in service.runtime.store.audit_entries(500))  # fmt: skip
    service.wait(taken, 10, "the stg request's lock.taken audit record")
    return prod, stg


@pytest.mark.parametrize("method", ["rdb", "aof"], ids=["rdb-after-bgsave", "aof-files"])
def test_pending_approvals_and_the_audit_stream_come_back_from_a_copy(
    method: str, live: Server, plate_env, fake_slack, worker_imports, monkeypatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("REDIS_URL", live.url)
    with running_service(fake_slack) as service:
        prod, stg = _pending_and_locked(service)
        store = service.runtime.store
        store.save_backup("stg", 3, values="image:\n  tag: 1.4.0\n", manifest="kind: Deployment\n", meta={"rev": 3})
        audit_before = store.audit_entries(500)
        lock_before = store.lock_holder("stg")
        job_id = store.get(stg).job_id

    copy = tmp_path / "copy"
    (backup_rdb if method == "rdb" else backup_aof)(live, copy)
    restored = restore_rdb(copy) if method == "rdb" else Server(copy, appendonly=True)
    try:
        store = Store(restored.client)
        pending = store.home_snapshot(["prod", "stg"])["pending"]
        assert [r.id for r in pending] == [prod]
        assert pending[0].status is Status.PENDING and pending[0].plan_digest
        assert store.audit_entries(500) == audit_before  # same ids, same fields, readable as AuditRecord
        assert {"request.created", "request.planned", "request.queued", "lock.taken"} <= {
            r["event"] for r in audit_before
        }
        assert store.lock_holder("stg") == lock_before and restored.client.pttl("plate:lock:stg") > 0
        assert store.backup("stg", 3)["values"] == "image:\n  tag: 1.4.0\n"
        assert queue_for(restored.client).job_ids == [job_id]
        assert fetch_job(job_id, restored.client).get_status() == "queued"

        # plate-bot itself carries on from the copy: the pending deploy is approved there.
        monkeypatch.setenv("REDIS_URL", restored.url)
        with running_service(fake_slack) as service:
            assert service.click("plate_approve", prod, user="U0ALICE") == 200
            service.wait(lambda: service.runtime.store.get(prod).status is Status.APPROVED, 10, "the approval")
            assert service.runtime.store.lock_holder("prod")["request"] == prod
            assert "request.approved" in [r["event"] for r in service.runtime.store.audit_entries(5)]
    finally:
        restored.stop()
