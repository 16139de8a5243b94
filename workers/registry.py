"""The one module that talks HTTP to container registries (httpx), for harbor-verify's pull check.

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
import ssl
from dataclasses import dataclass

import httpx

from core.redact import REDACTOR
from core.text import clip
from workers.harbor.chain import MANIFEST_ACCEPT, Cause, ImageRef, parse_challenge, registry_errors

TIMEOUT = httpx.Timeout(10.0, connect=5.0)
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
) -> PullCheck:
    """Fetch the manifest of `image` from the registry at `base_url` as a runtime would."""
    base_url = base_url.rstrip("/")
    headers = {"User-Agent": USER_AGENT}
    try:
        with httpx.Client(timeout=timeout, headers=headers, follow_redirects=False) as http:
            return _check(http, base_url, image, username, password)
    except httpx.TransportError as exc:
        return _transport_failure(base_url, exc)
    except httpx.HTTPError as exc:  # anything else httpx raises: still an answer, never a traceback
        return PullCheck(Cause.ERROR, f"registry check failed: {type(exc).__name__}")


def _check(http: httpx.Client, base_url: str, image: ImageRef, username: str | None, password: str | None) -> PullCheck:
    ping = http.get(f"{base_url}/v2/")
    auth_headers: dict[str, str] = {}
    method = "anonymous"
    if ping.status_code == 401:
        scheme, params = parse_challenge(ping.headers.get("www-authenticate", ""))
        if not (username and password):
            return PullCheck(Cause.UNAUTHORIZED, "the registry wants credentials and the Secret has none")
        if scheme == "basic":
            method = "basic"
            auth_headers = {"Authorization": _basic(username, password)}
        elif scheme == "bearer" and params.get("realm"):
            method = "bearer"
            token = _bearer_token(http, params, image, username, password)
            if isinstance(token, PullCheck):
                return token
            auth_headers = {"Authorization": f"Bearer {token}"}
        else:
            return PullCheck(Cause.ERROR, f"unsupported auth challenge `{scheme or 'none'}` at /v2/")
    elif ping.status_code != 200:
        return PullCheck(Cause.ERROR, f"/v2/ answered {ping.status_code}: not a registry v2 API?")

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
    http: httpx.Client, challenge: dict[str, str], image: ImageRef, username: str, password: str
) -> str | PullCheck:
    """The token endpoint's answer for `repository:<repo>:pull`, as Docker's token spec defines it."""
    params = {"scope": f"repository:{image.repository}:pull"}
    if challenge.get("service"):
        params["service"] = challenge["service"]
    answer = http.get(challenge["realm"], params=params, auth=httpx.BasicAuth(username, password))
    if answer.status_code == 401:
        return PullCheck(Cause.UNAUTHORIZED, "credentials rejected by the token service (401)", "bearer")
    if answer.status_code == 403:
        return PullCheck(Cause.DENIED, f"the token service refused pull on `{image.repository}` (403)", "bearer")
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
