"""How backups of `helm get values --all` (and the manifest) are kept in Redis: encrypted, plaintext,
or not at all. No I/O: settings in, a policy out.

`PLATE_BACKUP_KEY` holds one or more Fernet keys, comma-separated (mount it from a Secret). The first
encrypts; every one decrypts (`MultiFernet`), so a key is rotated by putting the new one first, rolling
the workers, and dropping the old one once the backups it sealed have expired (30 days) or been
re-sealed (docs/operations.md). `PLATE_BACKUPS` is `encrypted` (the default with a key), `plaintext`,
or `off` (no backup is stored; the step says so).

Without a key, a worker refuses to start unless `PLATE_BACKUPS` says what to do, with one exception:
the embedded mode (`REDIS_URL` unset: one process, a private redis-server on a unix socket in the data
directory, the README's laptop and demo command) defaults to plaintext.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from config.settings import Settings

Mode = Literal["encrypted", "plaintext", "off"]
FORMAT_FERNET = "fernet"  # the `enc` field of an encrypted record; absent: plaintext (records before 0.2)


class BackupKeyError(ValueError):
    """The backup settings cannot be used; the message names the setting, never a key."""


def parse_keys(value: str) -> MultiFernet:
    keys = [k.strip() for k in value.split(",") if k.strip()]
    if not keys:
        raise BackupKeyError("PLATE_BACKUP_KEY is empty")
    fernets = []
    for index, key in enumerate(keys, start=1):
        try:
            fernets.append(Fernet(key))
        except (ValueError, TypeError):
            raise BackupKeyError(
                f"PLATE_BACKUP_KEY: key {index} of {len(keys)} is not a Fernet key (32 url-safe base64-encoded "
                "bytes; make one with `python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'`)"
            ) from None
    return MultiFernet(fernets)


@dataclass(frozen=True)
class BackupPolicy:
    mode: Mode
    keys: MultiFernet | None = None

    def seal(self, text: str) -> str:
        assert self.keys is not None
        return self.keys.encrypt(text.encode()).decode()

    def open(self, token: str) -> str:
        if self.keys is None:
            raise BackupKeyError("this backup is encrypted and PLATE_BACKUP_KEY is not set")
        try:
            return self.keys.decrypt(token.encode()).decode()
        except InvalidToken:
            raise BackupKeyError("this backup was encrypted with a key PLATE_BACKUP_KEY no longer lists") from None

    def rotate(self, token: str) -> str:
        """Re-encrypt a sealed value with the first key (after a rotation)."""
        assert self.keys is not None
        return self.keys.rotate(token.encode()).decode()


def backup_policy(settings: Settings) -> BackupPolicy:
    key = settings.plate_backup_key.get_secret_value() if settings.plate_backup_key else ""
    keys = parse_keys(key) if key.strip() else None
    mode = settings.plate_backups
    if mode is None:
        if keys is not None:
            mode = "encrypted"
        elif settings.redis_url is None:
            mode = "plaintext"  # embedded: a private redis-server on a unix socket (laptop, demo)
        else:
            raise BackupKeyError(
                "backups of helm values would be stored in Redis in plaintext: set PLATE_BACKUP_KEY (a Fernet "
                "key, from a Secret) or PLATE_BACKUPS=off (no backups) or PLATE_BACKUPS=plaintext"
            )
    if mode == "encrypted" and keys is None:
        raise BackupKeyError("PLATE_BACKUPS=encrypted needs PLATE_BACKUP_KEY")
    return BackupPolicy(mode, keys)  # type: ignore[arg-type]
