"""workers.harbor.chain: parsers, classifiers and the chain verdict, table-driven (no I/O)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.grammar import USAGE, Command, Verb, help_text, parse
from config.environments import ConfigError, parse_config
from core.errors import UsageError
from core.redact import secret_values
from workers.harbor.chain import (
    EXTERNAL_SECRET_CAUSES,
    PULL_CAUSES,
    STORE_CAUSES,
    Cause,
    Finding,
    Link,
    Names,
    PodProgress,
    State,
    SyncProgress,
    application_patch,
    classify,
    docker_config,
    docker_secret_finding,
    external_secret_finding,
    manifest_problems,
    parse_challenge,
    parse_image,
    placeholder_lines,
    pod_failure,
    pod_progress,
    pods_running,
    registry_errors,
    registry_host,
    store_finding,
    sync_operation,
    sync_progress,
    verdict,
)

ENV = parse_config(
    {
        "environments": {
            "stg": {"namespace": "plate-stg", "release": "plate-web", "chart": "c"},
            "prod": {
                "namespace": "plate-prod",
                "release": "plate-web",
                "chart": "c",
                "harbor": {"namespace": "plate-shared", "namespaces": ["plate-stg", "plate-shared"]},
            },
        }
    }
)
NAMES = Names.of(ENV.environments["stg"])


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def docker_secret(auths: Any, type_: str = "kubernetes.io/dockerconfigjson", raw: str | None = None) -> dict:
    blob = raw if raw is not None else b64(json.dumps({"auths": auths}))
    return {"type": type_, "data": {".dockerconfigjson": blob}}


# --- names and parsers -------------------------------------------------------------------------------------


def test_names_default_to_the_seed_and_the_environment_namespace() -> None:
    assert (NAMES.namespace, NAMES.namespaces, NAMES.eso_namespace) == (
        "plate-stg",
        ("plate-stg",),
        "external-secrets-system",
    )
    assert (NAMES.token_secret, NAMES.secret_store, NAMES.external_secret) == (
        "openbao-token",
        "openbao-harbor",
        "harbor-registry-secret",
    )
    assert (NAMES.docker_secret, NAMES.service_account, NAMES.argocd_app) == (
        "harbor-docker-secret",
        "harbor-secret-reader",
        "harbor-auth-eso",
    )
    prod = Names.of(ENV.environments["prod"])
    assert prod.namespace == "plate-shared" and prod.namespaces == ("plate-prod", "plate-shared", "plate-stg")


@pytest.mark.parametrize(
    ("image", "host", "repo", "ref"),
    [
        ("harbor.example.com/plate/plate-web:1.4.0", "harbor.example.com", "plate/plate-web", "1.4.0"),
        ("127.0.0.1:5000/plate/web:v2", "127.0.0.1:5000", "plate/web", "v2"),
        ("harbor.example.com/a/b/c@sha256:" + "a" * 64, "harbor.example.com", "a/b/c", "sha256:" + "a" * 64),
    ],
)
def test_parse_image(image: str, host: str, repo: str, ref: str) -> None:
    parsed = parse_image(image)
    assert (parsed.host, parsed.repository, parsed.reference) == (host, repo, ref)
    assert str(parsed) == image


@pytest.mark.parametrize(
    ("key", "host"),
    [
        ("harbor.example.com", "harbor.example.com"),
        ("https://harbor.example.com", "harbor.example.com"),
        ("https://Harbor.Example.com/v1/", "harbor.example.com"),
        ("127.0.0.1:5000", "127.0.0.1:5000"),
        ("http://127.0.0.1:5000/v2/", "127.0.0.1:5000"),
    ],
)
def test_registry_host(key: str, host: str) -> None:
    assert registry_host(key) == host


@pytest.mark.parametrize(
    ("header", "scheme", "params"),
    [
        ('Basic realm="plate-test"', "basic", {"realm": "plate-test"}),
        (
            'Bearer realm="https://harbor.example.com/service/token",service="harbor-registry",'
            'scope="repository:plate/web:pull"',
            "bearer",
            {
                "realm": "https://harbor.example.com/service/token",
                "service": "harbor-registry",
                "scope": "repository:plate/web:pull",
            },
        ),
        (
            'Bearer realm="http://t/token", service="s", error="insufficient_scope"',
            "bearer",
            {"realm": "http://t/token", "service": "s", "error": "insufficient_scope"},
        ),
        ("", "", {}),
    ],
)
def test_parse_challenge(header: str, scheme: str, params: dict[str, str]) -> None:
    assert parse_challenge(header) == (scheme, params)


@pytest.mark.parametrize(
    ("body", "codes"),
    [
        ('{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}', ["MANIFEST_UNKNOWN"]),
        ('{"errors":[{"code":"UNAUTHORIZED"},{"code":"DENIED"}]}', ["UNAUTHORIZED", "DENIED"]),
        ("<html>502</html>", []),
        ('{"errors": null}', []),
    ],
)
def test_registry_errors(body: str, codes: list[str]) -> None:
    assert registry_errors(body) == codes


GOOD_AUTHS = {
    "https://harbor.example.com": {"username": "robot$p", "password": "pw-123456", "auth": b64("robot$p:pw-123456")}
}


@pytest.mark.parametrize(
    ("secret", "hosts", "user", "password", "problem"),
    [
        (docker_secret(GOOD_AUTHS), ("harbor.example.com",), "robot$p", "pw-123456", ""),
        (
            docker_secret({"harbor.example.com": {"auth": b64("robot$p:pw:with:colons")}}),
            ("harbor.example.com",),
            "robot$p",
            "pw:with:colons",
            "",
        ),
        (docker_secret({"other.example.com": {"auth": b64("a:b")}}), ("other.example.com",), None, None, ""),
        (docker_secret({"harbor.example.com": {"email": "x"}}), ("harbor.example.com",), None, None, "has no username"),
        (docker_secret({}, raw="%%%"), (), None, None, "not base64"),
        (docker_secret({}, raw=b64("not json")), (), None, None, "not JSON"),
        (docker_secret({}, raw=b64('{"credsStore": "x"}')), (), None, None, "has no `auths`"),
        ({"type": "kubernetes.io/dockerconfigjson"}, (), None, None, "missing"),
    ],
)
def test_docker_config(secret: dict, hosts: tuple, user: str | None, password: str | None, problem: str) -> None:
    config = docker_config(secret, "harbor.example.com")
    assert (config.hosts, config.username, config.password) == (hosts, user, password)
    assert problem in config.problem and bool(problem) == bool(config.problem)


def test_placeholder_lines_name_lines_only() -> None:
    text = "apiVersion: v1\nkind: Secret\nstringData:\n  token: REPLACE_WITH_TOKEN\n  other: REPLACE\n"
    assert placeholder_lines(text) == [4, 5]
    assert placeholder_lines("token: hvs.real") == []


# --- classifiers -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "cause"),
    [
        (
            "unable to validate store: invalid vault credentials: Error making API request. URL: GET "
            "https://openbao:8200/v1/auth/token/lookup-self Code: 403. Errors: * permission denied",
            Cause.TOKEN_REJECTED,
        ),
        ("invalid vault credentials: Code: 401. Errors: * bad token", Cause.TOKEN_REJECTED),
        ('cannot get Kubernetes secret "openbao-token": secrets "openbao-token" not found', Cause.TOKEN_SECRET_MISSING),
        ("dial tcp: lookup openbao on 10.96.0.10:53: no such host", Cause.OPENBAO_UNREACHABLE),
        ("Get https://openbao:8200: x509: certificate signed by unknown authority", Cause.OPENBAO_UNREACHABLE),
        ("connect: connection refused", Cause.OPENBAO_UNREACHABLE),
        ("store is being reconciled", Cause.NOT_READY),
    ],
)
def test_store_messages(message: str, cause: Cause) -> None:
    assert classify(message, STORE_CAUSES, Cause.NOT_READY) is cause


@pytest.mark.parametrize(
    ("message", "cause"),
    [
        ("the desired SecretStore openbao-harbor is not ready", Cause.STORE_NOT_READY),
        (
            'could not get SecretStore "openbao-harbor", SecretStore.external-secrets.io "openbao-harbor" not found',
            Cause.STORE_NOT_READY,
        ),
        ("could not get secret data from provider: key harbor/robot not found", Cause.REMOTE_KEY_MISSING),
        ("could not get secret data from provider: Code: 404. Errors:", Cause.REMOTE_KEY_MISSING),
        ("could not get secret data from provider: Code: 403. Errors: * permission denied", Cause.POLICY_DENIED),
        ("error processing spec.data[0]", Cause.NOT_READY),
    ],
)
def test_external_secret_messages(message: str, cause: Cause) -> None:
    assert classify(message, EXTERNAL_SECRET_CAUSES, Cause.NOT_READY) is cause


IMG = "harbor.example.com/plate/plate-web:1.4.0"
PULL_MESSAGES = [
    # containerd
    (
        f'Failed to pull image "{IMG}": rpc error: code = Unknown desc = failed to pull and unpack image "{IMG}": '
        f'failed to resolve reference "{IMG}": unexpected status from HEAD request to '
        "https://harbor.example.com/v2/plate/plate-web/manifests/1.4.0: 401 Unauthorized",
        Cause.UNAUTHORIZED,
    ),
    (
        f'Failed to pull image "{IMG}": rpc error: code = NotFound desc = failed to pull and unpack image: '
        f"{IMG}: not found",
        Cause.NOT_FOUND,
    ),
    (
        f'Failed to pull image "{IMG}": failed to resolve reference: pull access denied, repository does not exist '
        "or may require authorization: server message: insufficient_scope: authorization failed",
        Cause.DENIED,
    ),
    (f'Failed to pull image "{IMG}": dial tcp: lookup harbor.example.com on 10.96.0.10:53: no such host', Cause.DNS),
    (
        f'Failed to pull image "{IMG}": Head "https://harbor.example.com/v2/": dial tcp 10.1.2.3:443: i/o timeout',
        Cause.UNREACHABLE,
    ),
    (
        f'Failed to pull image "{IMG}": tls: failed to verify certificate: x509: certificate signed by unknown '
        "authority",
        Cause.TLS,
    ),
    # docker (dockershim era) wording
    (
        "Error response from daemon: Get https://harbor.example.com/v2/: unauthorized: authentication required",
        Cause.UNAUTHORIZED,
    ),
    (
        "Error response from daemon: manifest for harbor.example.com/plate/plate-web:9 not found: manifest unknown",
        Cause.NOT_FOUND,
    ),
    (
        'Failed to apply default image tag "Harbor/Plate:X": couldn\'t parse image reference: invalid reference format',
        Cause.MALFORMED,
    ),
    ('Back-off pulling image "harbor.example.com/plate/plate-web:1.4.0"', Cause.OK),
]


@pytest.mark.parametrize(("message", "cause"), PULL_MESSAGES)
def test_pull_messages(message: str, cause: Cause) -> None:
    assert classify(message, PULL_CAUSES, Cause.OK) is cause


@pytest.mark.parametrize(
    ("reason", "messages", "timed_out", "cause", "says"),
    [
        ("ImagePullBackOff", [PULL_MESSAGES[0][0], 'Back-off pulling image "x"'], False, Cause.UNAUTHORIZED, "401"),
        ("ImagePullBackOff", ['Back-off pulling image "x"'], False, Cause.PULL_FAILED, "Back-off pulling"),
        ("ErrImagePull", [PULL_MESSAGES[3][0]], True, Cause.DNS, "no such host"),
        ("Pending", [], True, Cause.TIMEOUT, "not Running after 120s (Pending; no events)"),
        (
            "ContainerCreating",
            ["Successfully assigned plate-stg/x to node-1"],
            True,
            Cause.TIMEOUT,
            "(ContainerCreating)",
        ),
        ("InvalidImageName", [], False, Cause.MALFORMED, "InvalidImageName"),
    ],
)
def test_pod_failure(reason: str, messages: list[str], timed_out: bool, cause: Cause, says: str) -> None:
    got, why = pod_failure(reason, messages, timed_out=timed_out, timeout=120)
    assert got is cause and says in why


def _pod(phase: str, *states: dict) -> dict:
    return {"status": {"phase": phase, "containerStatuses": [{"name": "c", "state": s} for s in states]}}


@pytest.mark.parametrize(
    ("pod", "progress", "reason"),
    [
        (_pod("Running", {"running": {}}), PodProgress.PULLED, "Running"),
        (_pod("Succeeded", {"terminated": {"exitCode": 0}}), PodProgress.PULLED, "Succeeded"),
        (_pod("Failed", {"terminated": {"exitCode": 1}}), PodProgress.PULLED, "Failed"),  # pulled, then exited
        (_pod("Pending", {"waiting": {"reason": "ContainerCreating"}}), PodProgress.WAITING, "ContainerCreating"),
        (_pod("Pending", {"waiting": {"reason": "ErrImagePull"}}), PodProgress.WAITING, "ErrImagePull"),
        (_pod("Pending", {"waiting": {"reason": "ImagePullBackOff"}}), PodProgress.FAILED, "ImagePullBackOff"),
        (_pod("Pending", {"waiting": {"reason": "InvalidImageName"}}), PodProgress.FAILED, "InvalidImageName"),
        (_pod("Failed"), PodProgress.FAILED, "Failed"),  # e.g. DeadlineExceeded before any container ran
        ({}, PodProgress.WAITING, "Pending"),
    ],
)
def test_pod_progress(pod: dict, progress: PodProgress, reason: str) -> None:
    assert pod_progress(pod) == (progress, reason)


def _cond_obj(
    status: str | None, message: str = "", reason: str = "", api: str = "external-secrets.io/v1", **more: Any
) -> dict:
    conditions = [] if status is None else [{"type": "Ready", "status": status, "message": message, "reason": reason}]
    return {"apiVersion": api, "status": {"conditions": conditions, **more.pop("status", {})}, **more}


@pytest.mark.parametrize(
    ("store", "state", "cause", "says"),
    [
        (None, State.FAIL, Cause.MISSING, "SecretStore `openbao-harbor` not found in `plate-stg`"),
        (_cond_obj("True", "store validated"), State.PASS, Cause.OK, "Ready (v1): store validated"),
        (_cond_obj("True", api="external-secrets.io/v1beta1"), State.PASS, Cause.OK, "Ready (v1beta1)"),
        (_cond_obj(None), State.FAIL, Cause.NOT_READY, "has no Ready condition yet"),
        (
            _cond_obj("False", "Code: 403. * permission denied", "InvalidProviderConfig"),
            State.FAIL,
            Cause.TOKEN_REJECTED,
            "not Ready (InvalidProviderConfig): Code: 403. * permission denied",
        ),
    ],
)
def test_store_finding(store: dict | None, state: State, cause: Cause, says: str) -> None:
    finding = store_finding(store, NAMES)
    assert (finding.state, finding.cause) == (state, cause) and says in finding.evidence


def test_a_ready_condition_without_message_or_reason_says_ready_not_none() -> None:
    """Found by mypy: a condition without `message` and `reason` keys (the API omits empty ones) was
    shown as "Ready (v1): None"."""
    store = {"apiVersion": "external-secrets.io/v1", "status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    finding = store_finding(store, NAMES)
    assert finding.state is State.PASS and finding.evidence.endswith("Ready (v1)") and "None" not in finding.evidence


def _es(
    ready: str | None, message: str = "", store: str = "openbao-harbor", refreshed: str | None = "2027-01-15T08:00:00Z"
) -> dict:
    obj = _cond_obj(ready, message)
    obj["spec"] = {"refreshInterval": "15m", "secretStoreRef": {"name": store}}
    if refreshed:
        obj["status"]["refreshTime"] = refreshed
    return obj


@pytest.mark.parametrize(
    ("es", "state", "cause", "says"),
    [
        (None, State.FAIL, Cause.MISSING, "not found"),
        (
            _es("True", "Secret was synced"),
            State.PASS,
            Cause.OK,
            "synced · last sync 2m ago (2027-01-15T08:00:00Z) · refreshInterval 15m",
        ),
        (
            _es("False", "the desired SecretStore openbao-harbor is not ready"),
            State.FAIL,
            Cause.STORE_NOT_READY,
            "not synced",
        ),
        (_es("False", "key not found", refreshed=None), State.FAIL, Cause.REMOTE_KEY_MISSING, "never synced"),
        (_es("False", "x", store="vault-old"), State.FAIL, Cause.MALFORMED, "reads SecretStore `vault-old`"),
    ],
)
def test_external_secret_finding(es: dict | None, state: State, cause: Cause, says: str) -> None:
    two_minutes_later = datetime(2027, 1, 15, 8, 2, tzinfo=UTC).timestamp()
    finding = external_secret_finding(es, NAMES, two_minutes_later)
    assert (finding.state, finding.cause) == (state, cause) and says in finding.evidence, finding


@pytest.mark.parametrize(
    ("secret", "state", "cause", "says"),
    [
        (None, State.FAIL, Cause.MISSING, "Secret `harbor-docker-secret` not found"),
        (docker_secret(GOOD_AUTHS, type_="Opaque"), State.FAIL, Cause.WRONG_TYPE, "type is `Opaque`"),
        (
            docker_secret({"other.io": {"auth": b64("a:b")}}),
            State.FAIL,
            Cause.NO_HOST,
            "does not name harbor.example.com (names: other.io)",
        ),
        (docker_secret({"harbor.example.com": {}}), State.FAIL, Cause.NO_CREDENTIALS, "has no username/password"),
        (docker_secret({}, raw="!!"), State.FAIL, Cause.MALFORMED, "not base64"),
        (docker_secret(GOOD_AUTHS), State.PASS, Cause.OK, "with credentials for harbor.example.com"),
    ],
)
def test_docker_secret_finding(secret: dict | None, state: State, cause: Cause, says: str) -> None:
    finding = docker_secret_finding(secret, NAMES, "harbor.example.com")
    assert (finding.state, finding.cause) == (state, cause) and says in finding.evidence
    assert "pw-123456" not in finding.evidence


def test_pods_running() -> None:
    ok = {
        "metadata": {"name": "eso-1"},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
    }
    crashing = {
        "metadata": {"name": "eso-2"},
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "False"}],
            "containerStatuses": [{"state": {"waiting": {"reason": "CrashLoopBackOff"}}}],
        },
    }
    assert pods_running([ok, crashing, {"metadata": {"name": "eso-3"}, "status": {"phase": "Pending"}}]) == (
        1,
        ["eso-2 CrashLoopBackOff", "eso-3 Pending"],
    )


# --- the verdict -------------------------------------------------------------------------------------------


def healthy() -> dict[Link, Finding]:
    return {link: Finding.ok(link, f"{link} fine") for link in Link}


VERDICTS = [
    # (changes to a healthy chain, first broken link, verdict line starts with)
    ({}, None, "chain healthy: 9 checks passed, `harbor.example.com/plate/plate-web:1.4.0` pulls"),
    ({Link.POD: (Cause.UNAUTHORIZED, "401")}, Link.POD, "The kubelet's pull was unauthorized; check that the pod's"),
    ({Link.POD: (Cause.DNS, "")}, Link.POD, "The node cannot resolve harbor.example.com"),
    ({Link.POD: (Cause.TIMEOUT, "")}, Link.POD, "The test pod did not start in time"),
    (
        {Link.REGISTRY: (Cause.UNAUTHORIZED, ""), Link.POD: (Cause.UNAUTHORIZED, "")},
        Link.REGISTRY,
        "Harbor rejected the credentials in `harbor-docker-secret` (401)",
    ),
    ({Link.REGISTRY: (Cause.DENIED, ""), Link.POD: (Cause.DENIED, "")}, Link.REGISTRY, "The credentials in"),
    (
        {Link.REGISTRY: (Cause.NOT_FOUND, "")},
        Link.REGISTRY,
        "`harbor.example.com/plate/plate-web:1.4.0` does not exist",
    ),
    (
        {
            Link.DOCKER_SECRET: (Cause.MISSING, ""),
            Link.REGISTRY: (Cause.UNAUTHORIZED, ""),
            Link.POD: (Cause.UNAUTHORIZED, ""),
        },
        Link.DOCKER_SECRET,
        "Secret `harbor-docker-secret` is missing although the ExternalSecret looks synced",
    ),
    ({Link.DOCKER_SECRET: (Cause.NO_HOST, "")}, Link.DOCKER_SECRET, "Secret `harbor-docker-secret` does not name"),
    (
        {Link.EXTERNAL_SECRET: (Cause.REMOTE_KEY_MISSING, ""), Link.DOCKER_SECRET: (Cause.MISSING, "")},
        Link.EXTERNAL_SECRET,
        "ExternalSecret `harbor-registry-secret` not synced: the Harbor credentials are not",
    ),
    (
        {Link.EXTERNAL_SECRET: (Cause.STORE_NOT_READY, "")},
        Link.EXTERNAL_SECRET,
        "ExternalSecret `harbor-registry-secret` not synced; read",
    ),
    (
        {
            Link.STORE: (Cause.TOKEN_REJECTED, ""),
            Link.EXTERNAL_SECRET: (Cause.STORE_NOT_READY, ""),
            Link.POD: (Cause.UNAUTHORIZED, ""),
        },
        Link.STORE,
        "SecretStore `openbao-harbor` not Ready: OpenBao rejected the token; check Secret `openbao-token`",
    ),
    (
        {Link.STORE: (Cause.OPENBAO_UNREACHABLE, "")},
        Link.STORE,
        "SecretStore `openbao-harbor` not Ready: OpenBao is unreachable",
    ),
    (
        {Link.STORE: (Cause.MISSING, "")},
        Link.STORE,
        "SecretStore `openbao-harbor` is missing; apply the chain again with `/plate harbor-bootstrap stg`",
    ),
    (
        {Link.SERVICE_ACCOUNT: (Cause.MISSING, ""), Link.STORE: (Cause.TOKEN_REJECTED, "")},
        Link.SERVICE_ACCOUNT,
        "ServiceAccount `harbor-secret-reader` is missing",
    ),
    (
        {Link.TOKEN: (Cause.PLACEHOLDER, ""), Link.STORE: (Cause.TOKEN_REJECTED, "")},
        Link.TOKEN,
        "Secret `openbao-token` still holds the `REPLACE` placeholder",
    ),
    ({Link.TOKEN: (Cause.API_ERROR, "403")}, Link.TOKEN, "Plate-bot could not check the token Secret"),
    (
        {Link.NAMESPACES: (Cause.MISSING, ""), Link.TOKEN: (Cause.MISSING, "")},
        Link.NAMESPACES,
        "A namespace of the chain is missing",
    ),
    (
        {Link.ESO: (Cause.NOT_RUNNING, ""), Link.NAMESPACES: (Cause.MISSING, "")},
        Link.ESO,
        "External Secrets Operator is not running in `external-secrets-system`",
    ),
    ({Link.ESO: (Cause.MISSING, "")}, Link.ESO, "External Secrets Operator has no pods"),
]


@pytest.mark.parametrize(("broken", "link", "line"), VERDICTS)
def test_verdict_names_the_first_broken_link(
    broken: dict[Link, tuple[Cause, str]], link: Link | None, line: str
) -> None:
    findings = healthy()
    for lnk, (cause, evidence) in broken.items():
        findings[lnk] = Finding.fail(lnk, cause, evidence or f"{lnk} broken")
    result = verdict(findings.values(), NAMES)
    assert result.link is link and result.ok is (link is None)
    assert result.line.startswith(line), result.line
    assert "\n" not in result.line
    # The walk goes backwards: from the pull to the operator.
    assert result.walk[0].split(" ", 1)[1].startswith("pod pull") and result.walk[-1].split(" ", 1)[1].startswith("ESO")


def test_verdict_with_skipped_checks_and_partial_chains() -> None:
    findings = [Finding.ok(Link.ESO, "ok"), Finding.skip(Link.POD, "namespace missing")]
    result = verdict(findings, NAMES)
    assert result.ok and result.line == "no broken link found (1 checks passed; not checked: pod pull)"
    assert verdict([], NAMES).ok


# --- harbor-bootstrap --------------------------------------------------------------------------------------


def _doc(kind: str, name: str, **more: Any) -> dict:
    return {"kind": kind, "metadata": {"name": name}, **more}


GOOD_DOCS = {
    "openbao-token-secret.yaml": _doc("Secret", "openbao-token"),
    "secret-store.yaml": _doc("SecretStore", "openbao-harbor"),
    "external-secret.yaml": _doc("ExternalSecret", "harbor-registry-secret"),
    "serviceaccount.yaml": _doc("ServiceAccount", "harbor-secret-reader"),
    "application.yaml": _doc(
        "Application", "harbor-auth-eso", apiVersion="argoproj.io/v1alpha1", spec={"destination": {"namespace": "x"}}
    ),
}


@pytest.mark.parametrize(
    ("changes", "problems"),
    [
        ({}, []),
        ({"serviceaccount.yaml": None}, ["`serviceaccount.yaml` is missing"]),
        (
            {"secret-store.yaml": _doc("SecretStore", "vault")},
            ["`secret-store.yaml` holds SecretStore `vault`, expected SecretStore `openbao-harbor`"],
        ),
        (
            {"application.yaml": _doc("Application", "harbor-auth-eso", apiVersion="v1")},
            ["`application.yaml` is not an argoproj.io Application", "`application.yaml` has no spec.destination"],
        ),
    ],
)
def test_manifest_problems(changes: dict, problems: list[str]) -> None:
    assert manifest_problems({**GOOD_DOCS, **changes}, NAMES) == problems


def test_the_shipped_examples_fit_the_seed_names() -> None:
    import yaml

    root = Path(__file__).resolve().parents[2] / "examples" / "harbor-auth"
    docs = {f.name: yaml.safe_load(f.read_text()) for f in root.glob("*.yaml")}
    assert manifest_problems(docs, NAMES) == []
    assert placeholder_lines((root / "openbao-token-secret.yaml").read_text())  # a placeholder, never a token


def test_application_patch_removes_what_the_manifest_dropped() -> None:
    live = {"spec": {"project": "old", "ignoreDifferences": [1], "source": {"path": "a"}}}
    desired = {"metadata": {"labels": {"a": "b"}}, "spec": {"project": "default", "source": {"path": "b"}}}
    assert application_patch(live, desired) == {
        "spec": {"project": "default", "source": {"path": "b"}, "ignoreDifferences": None},
        "metadata": {"labels": {"a": "b"}},
    }


def _app(phase: str | None, started: str | None = "t2", operation: bool = False, health: str = "Healthy") -> dict:
    status: dict[str, Any] = {"sync": {"status": "Synced"}, "health": {"status": health}}
    if phase:
        status["operationState"] = {"phase": phase, "startedAt": started, "message": "m"}
    return {**({"operation": {"sync": {}}} if operation else {}), "status": status}


@pytest.mark.parametrize(
    ("app", "previous", "progress"),
    [
        (_app("Succeeded", operation=True), "t1", SyncProgress.RUNNING),  # not picked up yet
        (_app("Succeeded", started="t1"), "t1", SyncProgress.RUNNING),  # still the old operation
        (_app("Running"), "t1", SyncProgress.RUNNING),
        (_app(None), None, SyncProgress.RUNNING),
        (_app("Succeeded"), "t1", SyncProgress.SUCCEEDED),
        (_app("Succeeded", health="Progressing"), "t1", SyncProgress.RUNNING),  # ESO still reconciling
        (_app("Failed"), "t1", SyncProgress.FAILED),
        (_app("Error"), None, SyncProgress.FAILED),
    ],
)
def test_sync_progress(app: dict, previous: str | None, progress: SyncProgress) -> None:
    assert sync_progress(app, previous)[0] is progress


def test_sync_operation_is_what_argocd_app_sync_writes() -> None:
    app = {"spec": {"source": {"targetRevision": "main"}}}
    assert sync_operation(app, "plate-bot", "r1") == {
        "operation": {
            "initiatedBy": {"username": "plate-bot"},
            "info": [{"name": "Reason", "value": "r1"}],
            "sync": {"syncStrategy": {"hook": {}}, "revision": "main"},
        }
    }


# --- the verb, the config keys, and what the redaction layer learns from a Secret --------------------------


def test_harbor_bootstrap_verb() -> None:
    def resolve(name: str) -> str | None:
        return {"stg": "stg", "prod": "prod"}.get(name.lower())

    assert parse("harbor-bootstrap STG", resolve) == Command(Verb.HARBOR_BOOTSTRAP, "stg")
    assert Verb.HARBOR_BOOTSTRAP.mutating and not Verb.HARBOR_VERIFY.mutating
    assert "`/plate harbor-bootstrap <env>`" in help_text(["stg"])
    assert USAGE[Verb.HARBOR_BOOTSTRAP] == "/plate harbor-bootstrap <env>"
    for text, error in (
        ("harbor-bootstrap prod --dry-run", "`--dry-run` does not apply to `harbor-bootstrap`"),
        ("harbor-bootstrap prod now", "`harbor-bootstrap` takes no further arguments"),
        ("harbor-bootstrap", "Which environment?"),
    ):
        with pytest.raises(UsageError, match=error):
            parse(text, resolve)


@pytest.mark.parametrize(
    ("harbor", "error"),
    [
        ({"test_image": "plate-web:latest"}, "environments.stg.harbor.test_image: String should match pattern"),
        ({"test_image": "harbor.example.com/Plate/Web:1"}, "harbor.test_image: String should match pattern"),
        ({"registry_url": "ftp://harbor"}, "harbor.registry_url: String should match pattern"),
        ({"registry": "harbor.example.com/x"}, "harbor.registry: String should match pattern"),
        ({"namespaces": ["Plate"]}, "harbor.namespaces.0: String should match pattern"),
        ({"sync_timeout": "soon"}, "harbor.sync_timeout: 'soon' is not a duration"),
    ],
)
def test_harbor_config_errors(harbor: dict, error: str) -> None:
    doc = {"environments": {"stg": {"namespace": "plate-stg", "release": "web", "chart": "c", "harbor": harbor}}}
    with pytest.raises(ConfigError, match=error.replace(".", r"\.").replace("(", r"\(")):
        parse_config(doc, "plate.yaml")


def test_manifests_dir_is_relative_to_the_environments_file(tmp_path: Path) -> None:
    doc = {
        "environments": {
            "stg": {
                "namespace": "plate-stg",
                "release": "web",
                "chart": "c",
                "harbor": {"manifests_dir": "../harbor-auth", "registry_url": "http://127.0.0.1:5000"},
            }
        }
    }
    env = parse_config(doc, "plate.yaml", tmp_path / "config").environments["stg"]
    assert env.harbor.manifests_dir == (tmp_path / "harbor-auth").resolve()
    assert env.harbor.registry_url == "http://127.0.0.1:5000"


@pytest.mark.parametrize(
    ("secret", "values"),
    [
        ({"data": {"token": b64("hvs.abc123456")}}, ["hvs.abc123456"]),
        ({"stringData": {"token": "plain-token-1"}}, ["plain-token-1"]),
        (
            {
                "data": {
                    ".dockerconfigjson": b64(
                        json.dumps(
                            {
                                "auths": {
                                    "h": {
                                        "username": "robot$u",
                                        "password": "pw-9876543",
                                        "auth": b64("robot$u:pw-9876543"),
                                    }
                                }
                            }
                        )
                    )
                }
            },
            ["pw-9876543", b64("robot$u:pw-9876543"), "robot$u:pw-9876543"],
        ),
        ({"data": {"x": "%%not-base64%%"}}, ["%%not-base64%%"]),
        ("not a secret", []),
    ],
)
def test_secret_values_include_nested_docker_credentials(secret: Any, values: list[str]) -> None:
    got = secret_values(secret)
    for value in values:
        assert value in got
