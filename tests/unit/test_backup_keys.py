"""core.backupkeys: which backups a worker keeps, encrypted with which keys (no I/O)."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from config.settings import Settings
from core.backupkeys import BackupKeyError, backup_policy, parse_keys

OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()


def _settings(**env: str | None) -> Settings:
    base = {"redis_url": "redis://redis:6379/0", "plate_backup_key": None, "plate_backups": None}
    return Settings(**{**base, **env})


def test_a_key_means_encrypted() -> None:
    policy = backup_policy(_settings(plate_backup_key=NEW))
    assert policy.mode == "encrypted"
    token = policy.seal("password: hunter2")
    assert "hunter2" not in token and policy.open(token) == "password: hunter2"


def test_no_key_with_a_redis_url_refuses_instead_of_storing_plaintext() -> None:
    with pytest.raises(BackupKeyError, match=r"PLATE_BACKUP_KEY .*PLATE_BACKUPS=off"):
        backup_policy(_settings())
    with pytest.raises(BackupKeyError, match="needs PLATE_BACKUP_KEY"):
        backup_policy(_settings(plate_backups="encrypted"))


def test_explicit_choices_and_the_embedded_default() -> None:
    assert backup_policy(_settings(plate_backups="off")).mode == "off"
    assert backup_policy(_settings(plate_backups="plaintext")).mode == "plaintext"
    assert backup_policy(_settings(redis_url=None)).mode == "plaintext"  # the README's laptop and demo mode
    assert backup_policy(_settings(redis_url=None, plate_backup_key=NEW)).mode == "encrypted"


def test_rotation_first_key_encrypts_every_key_decrypts() -> None:
    before = backup_policy(_settings(plate_backup_key=OLD))
    sealed_old = before.seal("values v1")
    during = backup_policy(_settings(plate_backup_key=f"{NEW}, {OLD}"))
    sealed_new = during.seal("values v2")
    assert during.open(sealed_old) == "values v1" and during.open(sealed_new) == "values v2"
    after = backup_policy(_settings(plate_backup_key=NEW))
    assert after.open(sealed_new) == "values v2" and after.open(during.rotate(sealed_old)) == "values v1"
    with pytest.raises(BackupKeyError, match="no longer lists"):
        after.open(sealed_old)


def test_a_bad_key_is_named_by_position_never_echoed() -> None:
    with pytest.raises(BackupKeyError) as info:
        parse_keys(f"{NEW},not-a-fernet-key-SECRETVALUE")
    assert "key 2 of 2" in str(info.value) and "SECRETVALUE" not in str(info.value)
    with pytest.raises(BackupKeyError, match="encrypted and PLATE_BACKUP_KEY is not set"):
        backup_policy(_settings(plate_backups="plaintext")).open("gAAAA")
