"""The one module that talks HTTP to container registries and Helm repositories (httpx): harbor-verify's
pull check, and the chart fetcher's downloads (OCI chart artifacts, a repository's index.yaml and archives).

It does what a container runtime does before pulling: `GET /v2/`, read the `WWW-Authenticate`
challenge, then either Basic auth or the Bearer token flow (realm, service, scope
`repository:<repo>:pull`, as Harbor uses), and `GET /v2/<repo>/manifests/<ref>` with the manifest
media types. The outcome tells apart: unreachable, TLS, credentials rejected (401), no pull permission
(403, or a token without the pull scope), image or tag not found (404).

Credentials and tokens live only in this call's memory; tokens are registered with the redaction
layer as soon as they arrive. Errors never carry request headers.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import ssl
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import quote

import httpx

from core.redact import REDACTOR
from core.text import clip
from workers.harbor.chain import MANIFEST_ACCEPT, Cause, ImageRef, parse_challenge, registry_errors
from workers.images import Artifact, Image, Outcome, Resolution, parse_artifact

TIMEOUT = httpx.Timeout(10.0, connect=5.0)
QUICK = httpx.Timeout(3.0, connect=2.0)


@functools.cache
def _tls() -> ssl.SSLContext:
    """One TLS context for every client here (building one per client costs 30-50 ms: bench/image_resolve.py);
    the same trust store httpx would build (certifi, or SSL_CERT_FILE / SSL_CERT_DIR)."""
    return httpx.create_ssl_context()


USER_AGENT = "plate-bot harbor-verify (containerd-compatible pull check)"


@dataclass(frozen=True)
class PullCheck:
    cause: Cause  # Cause.OK when the manifest was readable
    detail: str  # safe to show: no credentials, no tokens
    auth: str = ""  # "anonymous" | "basic" | "bearer"
    digest: str | None = None


def _is_tls(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError | ssl.CertificateError):
            return True
        seen = seen.__cause__ or seen.__context__
    text = str(exc)
    return "SSL" in text or "certificate" in text.lower()


def _basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def _transport_failure(base_url: str, exc: httpx.TransportError) -> PullCheck:
    if _is_tls(exc):
        return PullCheck(Cause.TLS, f"TLS handshake with {base_url} failed: {clip(REDACTOR(str(exc)), 160)}")
    if isinstance(exc, httpx.TimeoutException):
        return PullCheck(Cause.UNREACHABLE, f"{base_url} did not answer in time ({type(exc).__name__})")
    reason = clip(REDACTOR(str(exc)), 160) or type(exc).__name__
    if "Name or service not known" in reason or "nodename nor servname" in reason:
        reason = f"DNS: {reason}"
    return PullCheck(Cause.UNREACHABLE, f"cannot connect to {base_url}: {reason}")


def check_pull(
    base_url: str,
    image: ImageRef,
    username: str | None,
    password: str | None,
    *,
    timeout: httpx.Timeout = TIMEOUT,
    quick: bool = False,
) -> PullCheck:
    """Fetch the manifest of `image` from the registry at `base_url` as a runtime would. `quick`: a few
    seconds at most (the watcher's diagnosis, where this is extra evidence and must not hold the thread)."""
    base_url = base_url.rstrip("/")
    timeout = QUICK if quick else timeout
    headers = {"User-Agent": USER_AGENT}
    try:
        with httpx.Client(verify=_tls(), timeout=timeout, headers=headers, follow_redirects=False) as http:
            return _check(http, base_url, image, username, password)
    except httpx.TransportError as exc:
        return _transport_failure(base_url, exc)
    except httpx.HTTPError as exc:  # anything else httpx raises: still an answer, never a traceback
        return PullCheck(Cause.ERROR, f"registry check failed: {type(exc).__name__}")


def _authorize(
    http: httpx.Client, base_url: str, repository: str, username: str | None, password: str | None
) -> tuple[str, dict[str, str]] | PullCheck:
    """`GET /v2/` and answer its challenge: (auth method, headers for `repository:<repo>:pull`), or why not."""
    return _answer(http, http.get(f"{base_url}/v2/"), repository, username, password)


def _answer(
    http: httpx.Client, ping: httpx.Response, repository: str, username: str | None, password: str | None
) -> tuple[str, dict[str, str]] | PullCheck:
    """The headers that answer `/v2/`'s challenge (`ping`) for pulling `repository`."""
    if ping.status_code == 200:
        return "anonymous", {}
    if ping.status_code != 401:
        return PullCheck(Cause.ERROR, f"/v2/ answered {ping.status_code}: not a registry v2 API?")
    scheme, params = parse_challenge(ping.headers.get("www-authenticate", ""))
    if not (username and password):
        return PullCheck(Cause.UNAUTHORIZED, "the registry wants credentials and the Secret has none")
    if scheme == "basic":
        return "basic", {"Authorization": _basic(username, password)}
    if scheme == "bearer" and params.get("realm"):
        token = _bearer_token(http, params, repository, username, password)
        if isinstance(token, PullCheck):
            return token
        return "bearer", {"Authorization": f"Bearer {token}"}
    return PullCheck(Cause.ERROR, f"unsupported auth challenge `{scheme or 'none'}` at /v2/")


def _check(http: httpx.Client, base_url: str, image: ImageRef, username: str | None, password: str | None) -> PullCheck:
    authorized = _authorize(http, base_url, image.repository, username, password)
    if isinstance(authorized, PullCheck):
        return authorized
    method, auth_headers = authorized
    url = f"{base_url}/v2/{image.repository}/manifests/{image.reference}"
    answer = http.get(url, headers={"Accept": MANIFEST_ACCEPT, **auth_headers})
    codes = registry_errors(answer.text)
    what = f"`{image.repository}:{image.reference}`" if ":" not in image.reference else f"`{image}`"
    code_note = f" ({', '.join(codes)})" if codes else ""
    if answer.status_code == 200:
        digest = answer.headers.get("docker-content-digest")
        media = answer.headers.get("content-type", "").split(";")[0]
        return PullCheck(Cause.OK, f"manifest of {what} readable ({method} auth, {media})", method, digest)
    if answer.status_code == 401:
        _scheme, params = parse_challenge(answer.headers.get("www-authenticate", ""))
        if params.get("error") == "insufficient_scope" or "DENIED" in codes:
            return PullCheck(Cause.DENIED, f"no pull permission on `{image.repository}`{code_note}", method)
        return PullCheck(Cause.UNAUTHORIZED, f"credentials rejected (401 at the manifest, {method}){code_note}", method)
    if answer.status_code == 403:
        return PullCheck(Cause.DENIED, f"no pull permission on `{image.repository}` (403){code_note}", method)
    if answer.status_code == 404:
        missing = "repository" if "NAME_UNKNOWN" in codes else "tag or digest"
        return PullCheck(Cause.NOT_FOUND, f"{missing} not found: {what} (404){code_note}", method)
    return PullCheck(Cause.ERROR, f"the manifest request answered {answer.status_code}{code_note}", method)


def _bearer_token(
    http: httpx.Client, challenge: dict[str, str], repository: str | Sequence[str], username: str, password: str
) -> str | PullCheck:
    """The token endpoint's answer for `repository:<repo>:pull` (one `scope` per repository: Docker's token
    spec lets one token carry several), as Docker's token spec defines it."""
    repositories = [repository] if isinstance(repository, str) else list(repository)
    params: list[tuple[str, str | int | float | bool | None]] = [
        ("scope", f"repository:{r}:pull") for r in repositories
    ]
    if challenge.get("service"):
        params.append(("service", challenge["service"]))
    answer = http.get(challenge["realm"], params=params, auth=httpx.BasicAuth(username, password))
    if answer.status_code == 401:
        return PullCheck(Cause.UNAUTHORIZED, "credentials rejected by the token service (401)", "bearer")
    if answer.status_code == 403:
        return PullCheck(Cause.DENIED, f"the token service refused pull on `{', '.join(repositories)}` (403)", "bearer")
    if answer.status_code != 200:
        return PullCheck(Cause.ERROR, f"the token service answered {answer.status_code}", "bearer")
    try:
        body = answer.json()
    except ValueError:
        return PullCheck(Cause.ERROR, "the token service did not answer JSON", "bearer")
    token = (body.get("token") or body.get("access_token")) if isinstance(body, dict) else None
    if not token:
        return PullCheck(Cause.ERROR, "the token service answered without a token", "bearer")
    REDACTOR.add(str(token))
    return str(token)


# --- charts ---------------------------------------------------------------------------------------------

# Helm's OCI media types (helm.sh/helm/v3/pkg/registry/constants.go).
HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json"
HELM_CHART = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
HELM_PROVENANCE = "application/vnd.cncf.helm.chart.provenance.v1.prov"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
# Docker's type too: a tag holding an image (not a chart) is then told apart instead of answering 400/404.
CHART_ACCEPT = f"{OCI_MANIFEST}, application/vnd.docker.distribution.manifest.v2+json;q=0.5"
# A chart archive is kilobytes; a repository index can be megabytes. Beyond these, refuse.
MAX_CHART_BYTES = 20 * 1024 * 1024
MAX_INDEX_BYTES = 50 * 1024 * 1024
CHART_AGENT = "plate-bot chart fetcher"


class ChartFetchError(Exception):
    """A chart could not be fetched; the message is safe to show (no credentials)."""


@dataclass(frozen=True)
class OciChart:
    digest: str  # the manifest's digest: what the tag pointed at
    archive: bytes  # the chart layer, checked against its descriptor's digest
    provenance: bytes | None


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _read_capped(answer: httpx.Response, limit: int, what: str) -> bytes:
    body = b""
    for chunk in answer.iter_bytes():
        body += chunk
        if len(body) > limit:
            raise ChartFetchError(f"{what} is larger than {limit // (1024 * 1024)} MiB")
    return body


def _transport(base_url: str, exc: httpx.HTTPError) -> ChartFetchError:
    if isinstance(exc, httpx.TransportError):
        return ChartFetchError(_transport_failure(base_url, exc).detail)
    return ChartFetchError(f"{base_url}: {type(exc).__name__}")


def pull_chart(
    base_url: str,
    repository: str,
    tag: str,
    username: str | None,
    password: str | None,
    *,
    timeout: httpx.Timeout = TIMEOUT,
) -> OciChart:
    """Pull a Helm chart artifact as `helm pull oci://` does: the manifest for `tag`, then its chart layer
    (and provenance layer, when pushed with one), each blob checked against the digest that names it."""
    base_url = base_url.rstrip("/")
    try:
        with httpx.Client(
            verify=_tls(), timeout=timeout, headers={"User-Agent": CHART_AGENT}, follow_redirects=False
        ) as http:
            authorized = _authorize(http, base_url, repository, username, password)
            if isinstance(authorized, PullCheck):
                raise ChartFetchError(f"{base_url}/{repository}: {authorized.detail}")
            _method, auth = authorized
            answer = http.get(f"{base_url}/v2/{repository}/manifests/{tag}", headers={"Accept": CHART_ACCEPT, **auth})
            if answer.status_code == 404:
                raise ChartFetchError(f"chart version {tag} not found in {repository} (404)")
            if answer.status_code == 401:
                raise ChartFetchError(f"credentials rejected, or no pull permission on {repository} (401)")
            if answer.status_code == 403:
                raise ChartFetchError(f"no pull permission on {repository} (403)")
            if answer.status_code != 200:
                raise ChartFetchError(f"the manifest of {repository}:{tag} answered {answer.status_code}")
            raw = answer.content
            digest = _sha256(raw)
            told = answer.headers.get("docker-content-digest")
            if told and told != digest:
                raise ChartFetchError(f"the manifest of {repository}:{tag} does not match its digest {told}")
            try:
                manifest = json.loads(raw)
            except ValueError:
                raise ChartFetchError(f"the manifest of {repository}:{tag} is not JSON") from None
            layers = manifest.get("layers") if isinstance(manifest, dict) else None
            config = manifest.get("config") if isinstance(manifest, dict) else None
            if not isinstance(config, dict) or config.get("mediaType") != HELM_CONFIG or not isinstance(layers, list):
                raise ChartFetchError(f"{repository}:{tag} is not a Helm chart artifact")
            by_type = {layer.get("mediaType"): layer for layer in layers if isinstance(layer, dict)}
            if HELM_CHART not in by_type:
                raise ChartFetchError(f"{repository}:{tag} has no chart layer")
            archive = _blob(http, base_url, repository, by_type[HELM_CHART], auth)
            provenance = (
                _blob(http, base_url, repository, by_type[HELM_PROVENANCE], auth)
                if HELM_PROVENANCE in by_type
                else None
            )
            return OciChart(digest, archive, provenance)
    except httpx.HTTPError as exc:
        raise _transport(base_url, exc) from None


def _blob(
    http: httpx.Client, base_url: str, repository: str, descriptor: dict[str, object], auth: dict[str, str]
) -> bytes:
    digest = str(descriptor.get("digest", ""))
    if not digest.startswith("sha256:") or len(digest) != 71:
        raise ChartFetchError(f"{repository}: a layer has no sha256 digest")
    size = descriptor.get("size")
    if isinstance(size, int) and size > MAX_CHART_BYTES:
        raise ChartFetchError(f"{repository}: a layer of {size} bytes is larger than a chart may be")
    url = f"{base_url}/v2/{repository}/blobs/{digest}"
    # Registries may redirect blobs to object storage; httpx drops Authorization on a cross-origin hop.
    with http.stream("GET", url, headers=auth, follow_redirects=True) as answer:
        if answer.status_code != 200:
            raise ChartFetchError(f"{repository}: blob {digest[:19]}… answered {answer.status_code}")
        data = _read_capped(answer, MAX_CHART_BYTES, f"{repository}'s chart layer")
    if _sha256(data) != digest:
        raise ChartFetchError(f"{repository}: blob {digest[:19]}… does not match its digest")
    return data


def download(
    url: str,
    username: str | None,
    password: str | None,
    *,
    limit: int = MAX_CHART_BYTES,
    timeout: httpx.Timeout = TIMEOUT,
) -> bytes | None:
    """GET `url` from a Helm repository (Basic auth when credentials are given); None when it is not there
    (404). Redirects are not followed: the caller checks every URL against the allow-list first."""
    auth = httpx.BasicAuth(username, password) if username and password else None
    try:
        with (
            httpx.Client(
                verify=_tls(), timeout=timeout, headers={"User-Agent": CHART_AGENT}, follow_redirects=False
            ) as http,
            http.stream("GET", url, auth=auth) as answer,
        ):
            if answer.status_code == 404:
                return None
            if answer.status_code in (401, 403):
                raise ChartFetchError(f"{url}: credentials missing or refused ({answer.status_code})")
            if answer.status_code != 200:
                raise ChartFetchError(f"{url} answered {answer.status_code}")
            return _read_capped(answer, limit, url)
    except httpx.HTTPError as exc:
        raise _transport(url, exc) from None


# --- image digests (the plan's resolution) ---------------------------------------------------------------

_OUTCOME = {
    Cause.NOT_FOUND: Outcome.MISSING,
    Cause.UNAUTHORIZED: Outcome.REFUSED,
    Cause.DENIED: Outcome.REFUSED,
}
INDEX_TYPES = ("application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json")
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
RESOLVE_WORKERS = 8


def _platforms(body: bytes) -> tuple[str, ...]:
    try:
        doc = json.loads(body)
    except ValueError:
        return ()
    out = []
    for entry in doc.get("manifests") or [] if isinstance(doc, dict) else []:
        plat = entry.get("platform") if isinstance(entry, dict) else None
        if isinstance(plat, dict) and plat.get("os") and plat.get("architecture"):
            if plat.get("os") == "unknown":  # BuildKit's attestation manifests
                continue
            variant = f"/{plat['variant']}" if plat.get("variant") else ""
            out.append(f"{plat['os']}/{plat['architecture']}{variant}")
    return tuple(dict.fromkeys(out))


def _tags(
    http: httpx.Client, base_url: str, repository: str, auth: dict[str, str], limit: int = 1000
) -> tuple[str, ...] | None:
    """The repository's tags (the registry's order); None when the repository itself does not exist."""
    answer = http.get(f"{base_url}/v2/{repository}/tags/list", params={"n": limit}, headers=auth)
    if answer.status_code == 404:
        return None
    if answer.status_code != 200:
        return ()
    try:
        tags = answer.json().get("tags") or []
    except (ValueError, AttributeError):
        return ()
    return tuple(str(t) for t in tags)[:limit]


def _resolve_one(
    http: httpx.Client,
    base_url: str,
    ping: httpx.Response,
    image: Image,
    username: str | None,
    password: str | None,
    credential: str,
    shared: dict[str, str] | None = None,
) -> Resolution:
    authorized = ("bearer", shared) if shared is not None else _answer(http, ping, image.repository, username, password)
    if isinstance(authorized, PullCheck):
        return Resolution(image, _OUTCOME.get(authorized.cause, Outcome.UNREACHABLE), detail=authorized.detail,
                          credential=credential)  # fmt: skip
    _method, auth = authorized
    answer = http.get(
        f"{base_url}/v2/{image.repository}/manifests/{image.reference}", headers={"Accept": MANIFEST_ACCEPT, **auth}
    )
    codes = registry_errors(answer.text) if answer.status_code != 200 else []
    if answer.status_code == 404:
        tags = None if "NAME_UNKNOWN" in codes else _tags(http, base_url, image.repository, auth)
        missing = "repository" if tags is None else "digest" if image.digest else "tag"
        return Resolution(image, Outcome.MISSING, detail=f"{missing} not found", tags=tags or (), credential=credential)
    if answer.status_code in (401, 403):
        return Resolution(image, Outcome.REFUSED, detail=f"{answer.status_code} at the manifest", credential=credential)
    if answer.status_code != 200:
        return Resolution(image, Outcome.UNREACHABLE, detail=f"the manifest request answered {answer.status_code}")
    body = answer.content[:MAX_MANIFEST_BYTES]
    digest = "sha256:" + hashlib.sha256(answer.content).hexdigest()
    told = answer.headers.get("docker-content-digest")
    if told and told != digest:
        return Resolution(
            image, Outcome.UNREACHABLE, detail="the manifest does not match the digest the registry names"
        )
    if image.digest and image.digest != digest:
        return Resolution(image, Outcome.MISSING, detail="the pinned digest is not what the registry holds")
    media = answer.headers.get("content-type", "").split(";")[0]
    platforms = _platforms(body) if media in INDEX_TYPES else ()
    return Resolution(image, Outcome.RESOLVED, digest=digest, platforms=platforms, credential=credential)


def _shared_token(
    http: httpx.Client, ping: httpx.Response, images: Sequence[Image], username: str | None, password: str | None
) -> dict[str, str] | None:
    """One Bearer token for every repository of the batch, when the registry asks for one and grants it;
    None otherwise (each image then answers the challenge itself, which tells apart who is refused)."""
    repositories = sorted({i.repository for i in images})
    if ping.status_code != 401 or not (username and password) or len(repositories) < 2:
        return None
    scheme, params = parse_challenge(ping.headers.get("www-authenticate", ""))
    if scheme != "bearer" or not params.get("realm"):
        return None
    token = _bearer_token(http, params, repositories, username, password)
    return None if isinstance(token, PullCheck) else {"Authorization": f"Bearer {token}"}


def resolve_images(
    base_url: str,
    images: Sequence[Image],
    username: str | None,
    password: str | None,
    *,
    credential: str = "",
    timeout: httpx.Timeout = TIMEOUT,
) -> list[Resolution]:
    """Each image's manifest digest at `base_url`, concurrently (one GET per image after the registry's
    auth handshake); a tag that does not exist comes back with the repository's tags."""
    base_url = base_url.rstrip("/")
    try:
        with httpx.Client(
            verify=_tls(), timeout=timeout, headers={"User-Agent": USER_AGENT}, follow_redirects=False
        ) as http:
            ping = http.get(f"{base_url}/v2/")  # one challenge for all the images
            shared = _shared_token(http, ping, images, username, password)

            def one(image: Image) -> Resolution:
                try:
                    return _resolve_one(http, base_url, ping, image, username, password, credential, shared)
                except httpx.TransportError as exc:
                    return Resolution(image, Outcome.UNREACHABLE, detail=_transport_failure(base_url, exc).detail)
                except httpx.HTTPError as exc:
                    return Resolution(image, Outcome.UNREACHABLE, detail=f"{base_url}: {type(exc).__name__}")

            with ThreadPoolExecutor(max_workers=min(RESOLVE_WORKERS, max(1, len(images)))) as pool:
                return list(pool.map(one, images))
    except httpx.TransportError as exc:
        detail = _transport_failure(base_url, exc).detail
        return [Resolution(i, Outcome.UNREACHABLE, detail=detail) for i in images]
    except httpx.HTTPError as exc:
        return [Resolution(i, Outcome.UNREACHABLE, detail=f"{base_url}: {type(exc).__name__}") for i in images]


# --- Harbor's own API: push time, scan overview, signatures --------------------------------------------------

# What Harbor's UI sends to get the scan overview in an artifact (both report formats Harbor 2.x knows).
HARBOR_VULN_ACCEPT = (
    "application/vnd.security.vulnerability.report; version=1.1, "
    "application/vnd.scanner.adapter.vuln.report.harbor+json; version=1.0"
)


def _artifact_url(base_url: str, repository: str, digest: str) -> str | None:
    """Harbor names an image `<project>/<repository>`; a repository with slashes is URL-encoded twice."""
    project, _, repo = repository.partition("/")
    if not repo:
        return None
    return (
        f"{base_url}/api/v2.0/projects/{quote(project, safe='')}/repositories/"
        f"{quote(quote(repo, safe=''), safe='')}/artifacts/{digest}"
    )


def harbor_artifacts(
    base_url: str,
    images: Sequence[tuple[str, str]],
    username: str | None,
    password: str | None,
    *,
    timeout: httpx.Timeout = TIMEOUT,
) -> dict[tuple[str, str], Artifact]:
    """(repository, digest) -> what Harbor's API knows of it (push time, scan overview, cosign accessories),
    concurrently. A registry that is not Harbor (no /api/v2.0), or an artifact it cannot show, is left out:
    this is extra evidence for the card and the image policy, never a reason to fail on its own."""
    base_url = base_url.rstrip("/")
    auth = httpx.BasicAuth(username, password) if username and password else None
    params = {"with_scan_overview": "true", "with_accessory": "true", "with_tag": "false"}
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json", "X-Accept-Vulnerabilities": HARBOR_VULN_ACCEPT}
    found: dict[tuple[str, str], Artifact] = {}
    try:
        with httpx.Client(verify=_tls(), timeout=timeout, headers=headers, auth=auth, follow_redirects=False) as http:

            def one(item: tuple[str, str]) -> None:
                url = _artifact_url(base_url, *item)
                if url is None:
                    return
                try:
                    answer = http.get(url, params=params)
                    if answer.status_code == 200 and isinstance(body := answer.json(), dict):
                        found[item] = parse_artifact(body)
                except (httpx.HTTPError, ValueError):
                    return

            with ThreadPoolExecutor(max_workers=min(RESOLVE_WORKERS, max(1, len(images)))) as pool:
                list(pool.map(one, images))
    except httpx.HTTPError:
        return found
    return found
