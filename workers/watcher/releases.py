"""PURE. Helm's release records as the watcher reads them, which revisions to announce, and the notice.

Helm keeps each revision of a release in the release's namespace: a Secret of type `helm.sh/release.v1`
(the default driver) or a ConfigMap (`HELM_DRIVER=configmap`), named `sh.helm.release.v1.<release>.v<N>`,
labelled `owner=helm`, `name=<release>`, `version=<N>`, `status=<status>`. Its `data.release` is base64 of
gzip of the release JSON (name, namespace, version, info{status, description, first_deployed,
last_deployed}, chart{metadata{name, version, appVersion}}, config, manifest); a Secret's data is base64
once more, as every Secret value is. Cluster data is not trusted: the encoded field and the decompressed
JSON are size-capped, every decoding error becomes `ReleaseRecordError` (logged and skipped by the
caller), and every string that reaches Slack is redacted, cut and stripped of markup.

Which revisions are announced (`verdict`), once each, in the environment's deploy channel:

- **New only.** At a release's first sight (its records' first list, kept in Redis per driver: `Baseline`)
  the watcher notes the newest revision listed and the time. A revision is new when its number is above
  that, or (a reinstall starts again at 1) it was deployed after that time. What was there at first sight
  is history and never announced: a fresh install does not flood the channel; a restarted watcher keeps
  the baseline, so what changed while it was down is announced. Revisions deployed more than `MAX_AGE`
  ago are history too (their notice records expire later than that).
- **Not plate-bot's.** A revision plate-bot made is not announced, by the same test `/plate history` uses
  (`workers.revisions.origin_of`: its description names a plate-bot request, or it was stamped while a
  plate-bot job of that release ran, by plate-bot's change records).
- **Settled, after a grace.** A revision helm is still working on (`pending-*`) waits until it ends (at
  most `PENDING_MAX`), so the notice says how it went; and an unmatched revision waits `GRACE` seconds
  after the watcher first saw it, in case plate-bot's change record is written after helm's (a job
  writes its record before it runs helm; the grace covers a record that lags anyway).
"""

from __future__ import annotations

import base64
import json
import zlib
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

from core.blocks import Blocks, context, section
from core.home import image_tag as home_image_tag
from core.text import clip
from workers.revisions import Revision, image_of, image_tag, origin_of, parse_time, when
from workers.watcher.render import bounded

Obj = dict[str, Any]
SECRET_TYPE = "helm.sh/release.v1"  # noqa: S105 - a type name, not a secret
SECRET, CONFIGMAP = "secret", "configmap"  # helm's storage drivers, as the watcher follows them
GZIP_MAGIC = b"\x1f\x8b\x08"
MAX_ENCODED = 4 * 1024 * 1024  # characters of `data.release` (an object is at most ~1.5 MiB in etcd)
MAX_RELEASE = 8 * 1024 * 1024  # bytes of release JSON after gunzip: a gzip bomb stops here
MAX_MANIFEST = 1024 * 1024  # a larger manifest is not parsed for its image (YAML is slow): values' image.tag
GRACE = 10.0  # seconds an unmatched revision waits for plate-bot's change record
PENDING_MAX = 900.0  # a revision still pending after this long (helm killed) is announced as it is
MAX_AGE = 7 * 86400.0  # revisions deployed longer ago than this are history


class ReleaseRecordError(ValueError):
    """A release record that cannot be read; the message says why, never what the record holds."""


class RecordRef(NamedTuple):
    """What a release record's labels say, read without decoding it."""

    release: str
    revision: int
    status: str


def record_ref(obj: Obj, driver: str) -> RecordRef | None:
    """The labels of a helm release record (Secret of type helm.sh/release.v1 or ConfigMap); None for any
    other object or labels that do not say which revision of which release it is."""
    meta = obj.get("metadata") or {}
    labels = meta.get("labels") or {}
    if not isinstance(labels, dict) or labels.get("owner") != "helm":
        return None
    if driver == SECRET and obj.get("type", SECRET_TYPE) != SECRET_TYPE:
        return None
    name, version = labels.get("name"), labels.get("version")
    if not isinstance(name, str) or not name or not isinstance(version, str) or not version.isdigit():
        return None
    return RecordRef(name, int(version), str(labels.get("status") or ""))


@dataclass(frozen=True)
class HelmRevision:
    """One revision of a release, from its record."""

    release: str
    namespace: str
    revision: int
    status: str
    description: str = ""
    first_deployed: float | None = None
    last_deployed: float | None = None
    chart: str = ""
    chart_version: str = ""
    app_version: str = ""

    @property
    def install(self) -> str:
        """Which installation of the release: its first deployment's second (a reinstall starts numbering
        revisions at 1 again), "0" when the record does not say."""
        return str(int(self.first_deployed)) if self.first_deployed else "0"

    def as_revision(self) -> Revision:
        """As `helm history` shows it (what `origin_of` and `/plate history` read)."""
        chart = f"{self.chart}-{self.chart_version}" if self.chart_version else self.chart
        return Revision(self.revision, self.status, chart, self.app_version, self.last_deployed, self.description)


def _payload(obj: Obj, driver: str) -> bytes:
    raw = (obj.get("data") or {}).get("release") if isinstance(obj.get("data"), dict) else None
    if not isinstance(raw, str) or not raw:
        raise ReleaseRecordError("the record has no data.release")
    if len(raw) > MAX_ENCODED:
        raise ReleaseRecordError(f"data.release is {len(raw)} characters long, over the cap of {MAX_ENCODED}")
    try:
        # A Secret's value is base64 (Kubernetes) of helm's base64; a ConfigMap holds helm's base64 as text.
        encoded = base64.b64decode(raw, validate=True) if driver == SECRET else raw.encode("ascii")
        return base64.b64decode(encoded, validate=True)
    except ValueError:  # binascii.Error and UnicodeEncodeError are ValueErrors
        raise ReleaseRecordError("data.release is not base64") from None


def _gunzip(payload: bytes, limit: int) -> bytes:
    if payload[:3] != GZIP_MAGIC:  # helm reads uncompressed JSON too
        if len(payload) > limit:
            raise ReleaseRecordError(f"the release JSON is over {limit} bytes")
        return payload
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        data = inflate.decompress(payload, limit + 1)
    except zlib.error:
        raise ReleaseRecordError("data.release is not valid gzip") from None
    if len(data) > limit or inflate.unconsumed_tail:
        raise ReleaseRecordError(f"the release JSON inflates to over {limit} bytes")
    if not inflate.eof:
        raise ReleaseRecordError("data.release is truncated gzip")
    return data


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _dict(value: Any) -> Obj:
    return value if isinstance(value, dict) else {}


def decode_release(obj: Obj, driver: str, *, limit: int = MAX_RELEASE) -> tuple[HelmRevision, Obj]:
    """A release record's revision and its release JSON (for the image); ReleaseRecordError when it cannot
    be read: not base64, not gzip, inflating past `limit`, not JSON, or not shaped like a release."""
    data = _gunzip(_payload(obj, driver), limit)
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ReleaseRecordError("the release is not JSON") from None
    if not isinstance(doc, dict):
        raise ReleaseRecordError("the release JSON is not an object")
    name, version = doc.get("name"), doc.get("version")
    if not isinstance(name, str) or not name or not isinstance(version, int) or isinstance(version, bool):
        raise ReleaseRecordError("the release JSON has no name or version")
    info = _dict(doc.get("info"))
    meta = _dict(_dict(doc.get("chart")).get("metadata"))
    rev = HelmRevision(
        release=name,
        namespace=_str(doc.get("namespace")),
        revision=version,
        status=_str(info.get("status")) or "unknown",
        description=_str(info.get("description")),
        first_deployed=parse_time(_str(info.get("first_deployed"))),
        last_deployed=parse_time(_str(info.get("last_deployed"))),
        chart=_str(meta.get("name")),
        chart_version=_str(meta.get("version")),
        app_version=_str(meta.get("appVersion")),
    )
    return rev, doc


def release_image_tag(doc: Obj) -> str:
    """The image tag a revision runs: its manifest's first container image (`workers.revisions.image_of`,
    what the rollback card shows), else what App Home reads from the values (`core.home.image_tag`: the
    values' `image.tag`, the chart's default, its appVersion); "unknown" when none says."""
    manifest = doc.get("manifest")
    if isinstance(manifest, str) and len(manifest) <= MAX_MANIFEST:
        try:
            image = image_of(manifest)
        except Exception:  # hostile YAML of any kind: fall back on the values
            image = None
        if image:
            return image_tag(image)
    try:
        return home_image_tag(doc) or "unknown"
    except (AttributeError, TypeError):  # hostile record shapes: the values are not what helm writes
        return "unknown"


# --- which revisions to announce ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Baseline:
    """A release's first sight: the newest revision its records' first list held (0: none), and when."""

    revision: int
    at: float


class Verdict(StrEnum):
    HISTORY = "history"  # there before the watcher first saw the release, or too old
    OURS = "ours"  # plate-bot made it
    WAIT = "wait"  # helm is still at it, or plate-bot's record may still come
    ANNOUNCE = "announce"


def is_new(rev: HelmRevision, baseline: Baseline, now: float, max_age: float = MAX_AGE) -> bool:
    """Made after the release's first sight: a higher revision number, or deployed later (a reinstall)."""
    deployed = rev.last_deployed
    if deployed is not None and now - deployed > max_age:
        return False
    if rev.revision > baseline.revision:
        return True
    return deployed is not None and deployed > baseline.at


def made_by_plate_bot(rev: HelmRevision, records: list[Obj]) -> bool:
    """`/plate history`'s own test (`origin_of`) against plate-bot's change records of this release."""
    return origin_of(rev.as_revision(), records).by_plate_bot


def verdict(
    rev: HelmRevision,
    baseline: Baseline,
    *,
    ours: bool,
    first_seen: float,
    now: float,
    grace: float = GRACE,
    pending_max: float = PENDING_MAX,
    max_age: float = MAX_AGE,
) -> Verdict:
    """What to do about a revision now. `first_seen`: when this watcher first saw it; `ours`:
    `made_by_plate_bot`. WAIT is asked again later; the others are final."""
    if not is_new(rev, baseline, now, max_age):
        return Verdict.HISTORY
    if ours:
        return Verdict.OURS
    if rev.status.startswith("pending-") and now - first_seen < pending_max:
        return Verdict.WAIT
    if now - first_seen < grace:
        return Verdict.WAIT
    return Verdict.ANNOUNCE


def notice_id(release_key: str, rev: HelmRevision) -> str:
    """Names one revision of one installation of a release (Environment.key) in the watcher's store."""
    return f"{release_key}:{rev.install}:{rev.revision}"


# --- the notice ----------------------------------------------------------------------------------------------


def _code(value: str, limit: int = 80) -> str:
    """Cluster text as inline code: redacted and cut (`clip`), no backtick to close it, `<>&` escaped so it
    cannot become a mention or a link."""
    text = clip(value, limit).replace("`", "'")
    return "`" + text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") + "`"


_ICON = {"deployed": ":package:", "failed": ":x:", "superseded": ":package:", "uninstalled": ":wastebasket:"}


def notice_message(rev: HelmRevision, *, label: str, image: str) -> tuple[str, Blocks]:
    """The deploy channel's notice of a revision made outside plate-bot: app, revision, chart and app
    version, image tag, status, helm's description, when; and where to see who made what."""
    icon = _ICON.get(rev.status, ":hourglass_flowing_sand:" if rev.status.startswith("pending-") else ":package:")
    status = _code(rev.status, 40)
    head = (
        f"{icon} *Helm release changed outside plate-bot* in `{label}`: release `{rev.release}` "
        f"revision *{rev.revision}* is {status}"
    )
    chart = f"{rev.chart}-{rev.chart_version}" if rev.chart_version else rev.chart
    facts = [f"chart {_code(chart or '?')}"]
    if rev.app_version:
        facts.append(f"app version {_code(rev.app_version, 40)}")
    facts += [f"image {_code(image, 80)}", f"deployed {when(rev.last_deployed)}"]
    lines = [head, " · ".join(facts)]
    if rev.description:
        lines.append(f"helm: {_code(rev.description, 200)}")
    history = f"/plate history {label.replace('/', ' ')}"
    blocks: Blocks = [
        section(bounded("\n".join(lines))),
        context(bounded(f"Who made it and what came before: `{history}`")),
    ]
    text = f"{label}: helm revision {rev.revision} of {rev.release} made outside plate-bot ({clip(rev.status, 40)})"
    return bounded(text), blocks
