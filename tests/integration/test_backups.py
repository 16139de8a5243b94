"""Backups of `helm get values --all` and the manifest are encrypted at rest in Redis (PLATE_BACKUP_KEY,
Fernet), or not stored at all (PLATE_BACKUPS=off); a worker that would store them in plaintext without
being told so does not start; records from before the change (plaintext, no `v`) still read."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
from cryptography.fernet import Fernet

from config.settings import Settings
from core.backupkeys import backup_policy
from core.store import Store
from sandbox.cluster import SimulatedCluster
from tests.conftest import ROOT, Service
from tests.integration.test_deploy import status_message

SECRET_VALUE = "db-password-Zq81xL"  # in the chart's values: must never be in Redis in clear


def _live_stg(helm_bin, cluster: SimulatedCluster) -> None:
    """Revision 1 installed by hand, with a secret among its values."""
    chart = ROOT / "examples" / "plate-web"
    subprocess.run(
        [str(helm_bin), "upgrade", "--install", "plate-web", str(chart), "-f", str(chart / "values-staging.yaml"),
         "--set-string", f"database.password={SECRET_VALUE}", "--kube-context", "plate-stg", "-n", "plate-stg"],
        check=True, capture_output=True,
    )  # fmt: skip
    cluster.settle()


def _deploy_stg(service: Service) -> str:
    service.command("deploy stg 1.5.0")
    service.wait(lambda: service.runtime.queue.count == 1)
    service.run_worker()
    return status_message(service, "deploy stg")


def test_a_deploy_keeps_its_backup_encrypted_at_rest(service, cluster, helm_bin, redis_conn) -> None:
    """The backup step says "encrypted"; in Redis the record is `v` 2, `enc` fernet, and neither the
    secret value nor the image appears anywhere in it; with the key it reads back whole."""
    _live_stg(helm_bin, cluster)
    status = _deploy_stg(service)
    assert "deploy stg* — succeeded" in status and "revision 1 saved encrypted" in status
    raw = {k.decode(): v for k, v in redis_conn.hgetall("plate:backup:stg:1").items()}
    assert raw["v"] == b"2" and raw["enc"] == b"fernet"
    everything = b" ".join(raw.values())
    assert SECRET_VALUE.encode() not in everything and b"plate-web:" not in everything
    backup = Store(redis_conn).backup("stg", 1, backup_policy(Settings()).open)
    assert SECRET_VALUE in backup["values"] and "kind: Deployment" in backup["manifest"]
    with pytest.raises(ValueError, match="encrypted"):
        Store(redis_conn).backup("stg", 1)


def test_backups_off_stores_nothing_and_the_step_says_so(service, cluster, helm_bin, redis_conn, monkeypatch) -> None:
    monkeypatch.setenv("PLATE_BACKUPS", "off")
    _live_stg(helm_bin, cluster)
    status = _deploy_stg(service)
    assert "deploy stg* — succeeded" in status and "backups are off (PLATE_BACKUPS=off)" in status
    assert Store(redis_conn).backup_revisions("stg") == [] and not redis_conn.keys("plate:backup:*")


def test_records_from_before_encryption_still_read_and_rotation_keeps_old_ones_readable(redis_conn) -> None:
    """Rolling upgrade: a plaintext record as 0.1 wrote it (no `v`) reads as before; a record sealed
    with the old key reads after the new key is put first."""
    store = Store(redis_conn)
    redis_conn.hset(
        "plate:backup:prod:3",
        mapping={"values": "a: 1\n", "manifest": "kind: Service\n", "meta": json.dumps({}), "taken_at": 5},
    )
    assert store.backup("prod", 3)["values"] == "a: 1\n"
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    before = backup_policy(Settings(plate_backup_key=old))
    store.save_backup("prod", 4, values="b: 2\n", manifest="kind: Pod\n", meta={}, seal=before.seal)
    rotated = backup_policy(Settings(plate_backup_key=f"{new},{old}"))
    assert store.backup("prod", 4, rotated.open)["values"] == "b: 2\n"
    assert store.backup("prod", 3, rotated.open)["values"] == "a: 1\n"  # plaintext needs no key


def _worker(env: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", "worker", "--burst"],
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_worker_without_a_key_does_not_start(plate_env) -> None:
    """With REDIS_URL and no PLATE_BACKUP_KEY (nor PLATE_BACKUPS) the worker exits 2 naming both
    settings; a malformed key is refused without being printed; PLATE_BACKUPS=off starts."""
    env = {k: v for k, v in os.environ.items() if k not in ("PLATE_BACKUP_KEY", "PLATE_BACKUPS")}
    refused = _worker(env)
    assert refused.returncode == 2 and "PLATE_BACKUP_KEY" in refused.stderr and "PLATE_BACKUPS=off" in refused.stderr
    bad = _worker({**env, "PLATE_BACKUP_KEY": "not-a-key-SECRETVALUE"})
    assert bad.returncode == 2 and "not a Fernet key" in bad.stderr and "SECRETVALUE" not in bad.stdout + bad.stderr
    assert _worker({**env, "PLATE_BACKUPS": "off"}).returncode == 0
