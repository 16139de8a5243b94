"""harbor-verify's and harbor-bootstrap's ends agree with themselves (issue 18): over every combination of
the test pod's pull × plate-bot's registry check × the rest of the chain, the checklist's step states, the
status message's outcome and summary, the thread's "first broken link" and App Home's last operation say
the same thing. And a registry plate-bot's own pod cannot reach never fails a chain whose pull works.

No I/O: the real reporter (never opened, so it sends nothing), the real `report` and `conclude` of
workers.harbor.verify, the real status message and Home renderers; what a job does with a return or a
StepFailed is what workers.jobs does with it.
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

from config.environments import parse_config
from core import messages
from core.home import home_view, operation_entry
from core.progress import Progress
from core.requests import new_request
from workers.errors import StepFailed
from workers.harbor.chain import (
    CHAIN,
    REGISTRY_ANSWERS,
    Cause,
    Finding,
    Link,
    Names,
    State,
    failing_pull,
    kubelet_finding,
    registry_finding,
    verdict,
)
from workers.harbor.verify import STEP, VERIFY_STEPS, Checks, conclude, report
from workers.reporting import ThreadReporter

T0 = 1_700_000_000.0
CONFIG = parse_config({"environments": {"stg": {"namespace": "plate-stg", "release": "plate-web", "chart": "c"}}})
ENV = CONFIG.environments["stg"]
NAMES = Names.of(ENV)
IMAGE = NAMES.image

# The test pod's pull.
PULLS: dict[str, Finding] = {
    "pulled": Finding.ok(Link.POD, f"test pod `p` Running: `{IMAGE}` pulled with `harbor-docker-secret`"),
    "pull-401": Finding.fail(Link.POD, Cause.UNAUTHORIZED, "`ImagePullBackOff`: 401 Unauthorized"),
    "pull-404": Finding.fail(Link.POD, Cause.NOT_FOUND, "`ImagePullBackOff`: manifest unknown"),
    "pull-node-dns": Finding.fail(Link.POD, Cause.DNS, "`ErrImagePull`: no such host"),
    "pull-timeout": Finding.fail(Link.POD, Cause.TIMEOUT, "not Running after 120s (Pending; no events)"),
}
# plate-bot's registry check, as workers.registry reports it.
REGISTRIES: dict[str, tuple[Cause, str] | None] = {
    "reg-ok": (Cause.OK, "manifest of `plate/plate-web:1.4.0` readable (bearer auth)"),
    "reg-dns": (Cause.UNREACHABLE, "cannot connect to https://harbor.example.com: DNS: Name or service not known"),
    "reg-refused": (Cause.UNREACHABLE, "cannot connect to https://harbor.example.com: [Errno 111] Connection refused"),
    "reg-timeout": (Cause.UNREACHABLE, "https://harbor.example.com did not answer in time (ConnectTimeout)"),
    "reg-tls": (Cause.TLS, "TLS handshake with https://harbor.example.com failed: certificate verify failed"),
    "reg-not-a-registry": (Cause.ERROR, "/v2/ answered 502: not a registry v2 API?"),
    "reg-401": (Cause.UNAUTHORIZED, "credentials rejected by the token service (401)"),
    "reg-403": (Cause.DENIED, "no pull permission on `plate/plate-web` (insufficient_scope)"),
    "reg-404": (Cause.NOT_FOUND, "tag or digest not found: `plate/plate-web:1.4.0` (404) (MANIFEST_UNKNOWN)"),
    "reg-no-credentials": None,  # skipped: nothing to try with
}
# The rest of the chain.
CHAINS: dict[str, dict[Link, Finding]] = {
    "chain-healthy": {},
    "chain-store-rejects-token": {
        Link.STORE: Finding.fail(Link.STORE, Cause.TOKEN_REJECTED, "not Ready: permission denied"),
        Link.EXTERNAL_SECRET: Finding.fail(Link.EXTERNAL_SECRET, Cause.STORE_NOT_READY, "not synced"),
    },
    "chain-docker-secret-missing": {
        Link.DOCKER_SECRET: Finding.fail(Link.DOCKER_SECRET, Cause.MISSING, "Secret `harbor-docker-secret` not found"),
    },
}
CASES = [(p, r, c) for p in PULLS for r in REGISTRIES for c in CHAINS]


def registry(name: str) -> Finding:
    result = REGISTRIES[name]
    if result is None:
        return Finding.skip(Link.REGISTRY, "no credentials for harbor.example.com in `harbor-docker-secret` to try")
    return registry_finding(*result, NAMES)


def findings_for(pull: str, reg: str, chain: str) -> list[Finding]:
    by_link = {link: Finding.ok(link, f"{link} fine") for link in CHAIN}
    by_link.update(CHAINS[chain])
    by_link[Link.REGISTRY] = registry(reg)
    by_link[Link.POD] = PULLS[pull]
    return [by_link[link] for link in CHAIN]


def run_job(findings: list[Finding], prefix: str = "") -> dict[str, Any]:
    """What a harbor-verify job shows for these findings: checklist, outcome, summary, thread, Home."""
    request = new_request("r1", verb="harbor-verify", env="stg", requester="U0BOB", channel="C0DEPLOYS",
                          now=T0, ttl=900, approvals_required=0)  # fmt: skip
    reporter = ThreadReporter(None, None, request, Progress.checklist("harbor-verify stg", VERIFY_STEPS),  # type: ignore[arg-type]
                              clock=lambda: T0)  # fmt: skip
    ctx: Any = SimpleNamespace(env=ENV, report=reporter)
    for finding in findings:
        if finding.state is not State.SKIP:
            reporter.start(STEP[finding.link])
        report(ctx, STEP[finding.link], finding)
    checks = Checks(ctx)
    try:  # as workers.jobs._execute ends a job
        summary, outcome, thread = conclude(checks, findings, prefix), "succeeded", []
    except StepFailed as exc:
        summary, outcome, thread = exc.message, "failed", list(exc.details or [])
    reporter.finish(ok=outcome == "succeeded", summary=summary)
    _text, blocks = messages.progress_message(reporter.progress, T0)
    op = operation_entry(request, outcome=outcome, summary=summary, ended_at=T0, link=None)
    snapshot = {"releases": {}, "locks": {}, "operations": {"stg": [op]}, "pending": []}
    home = json.dumps(home_view([ENV], snapshot, viewer="U0BOB", approver_of=set(), now=T0)["blocks"])
    steps = blocks[1]["text"]["text"].splitlines()
    return {
        "head": blocks[0]["text"]["text"],
        "steps": dict(zip(CHAIN, steps[: len(CHAIN)], strict=True)),
        "summary": blocks[2]["elements"][0]["text"],
        "outcome": outcome,
        "thread": thread,
        "home": home,
        "op": op,
    }


@pytest.mark.parametrize(("pull", "reg", "chain"), CASES, ids=["-".join(c) for c in CASES])
def test_every_end_of_the_chain_agrees(pull: str, reg: str, chain: str) -> None:
    findings = findings_for(pull, reg, chain)
    result = verdict(findings, NAMES)
    shown = run_job(findings)
    registry_answered = (REGISTRIES[reg] or (Cause.OK, ""))[0] in REGISTRY_ANSWERS
    unreachable = REGISTRIES[reg] is not None and not registry_answered and reg != "reg-ok"

    # The rule: the pull decides, unless a link before it is broken or a reachable registry refuses.
    expected_ok = pull == "pulled" and chain == "chain-healthy" and not registry_answered
    assert result.ok is expected_ok
    # Status message, verdict line, thread and Home say the same.
    assert shown["outcome"] == ("succeeded" if expected_ok else "failed")
    assert shown["head"].startswith(f"*harbor-verify stg* — {shown['outcome']}")
    assert shown["summary"] == result.line
    assert shown["op"]["outcome"] == shown["outcome"]
    head, _, tail = shown["op"]["summary"].partition(" … ")  # Home clips the middle of a long line
    assert result.line.startswith(head) and result.line.endswith(tail) and head in shown["home"]
    home_icon = ":white_check_mark:" if expected_ok else ":x:"
    assert f"{home_icon} *harbor-verify* by <@U0BOB>" in shown["home"]
    failed_steps = [link for link in CHAIN if shown["steps"][link].startswith(":x:")]
    if expected_ok:
        assert failed_steps == [] and shown["thread"] == [] and result.link is None
        assert result.line.startswith("chain healthy" if reg == "reg-ok" else "chain works")
    else:
        # The first step marked failed is the first broken link, named in the thread with the same line.
        assert failed_steps[0] is result.link
        assert f"*First broken link:* {result.line}" in shown["thread"]
        assert shown["thread"][0] == "*The chain, walked back from the pull*"
        assert "chain healthy" not in result.line and "chain works" not in result.line
    # A registry plate-bot cannot reach is a warning with its reason and a hint, never a broken link.
    registry_step = shown["steps"][Link.REGISTRY]
    if unreachable:
        assert registry_step.startswith(":warning: Registry pull check")
        assert "harbor.registry_url" in registry_step and REGISTRIES[reg][1][:30] in registry_step  # type: ignore[index]
        assert result.link is not Link.REGISTRY and Link.REGISTRY not in failed_steps
        if expected_ok:
            assert " · warning: " in result.line
    if registry_answered:
        assert registry_step.startswith(":x: Registry pull check")
        if chain == "chain-healthy":  # the registry is the first broken link, the test pod's result beside it
            assert result.link is Link.REGISTRY and " · test pod: " in result.line
            beside = "pulled `" if pull == "pulled" else "its pull failed too"
            assert beside in result.line


BOOTSTRAP = [
    # (case, sync succeeded, registry, pull, job succeeds)
    ("synced-unreachable-registry-pulled", True, "reg-dns", "pulled", True),
    ("synced-registry-ok-pulled", True, "reg-ok", "pulled", True),
    ("synced-registry-401-pulled", True, "reg-401", "pulled", False),
    ("synced-unreachable-registry-pull-fails", True, "reg-dns", "pull-401", False),
    ("sync-failed-chain-works", False, "reg-dns", "pulled", False),
]


@pytest.mark.parametrize(("synced", "reg", "pull", "ok"), [b[1:] for b in BOOTSTRAP], ids=[b[0] for b in BOOTSTRAP])
def test_bootstrap_follows_the_same_rule(synced: bool, reg: str, pull: str, ok: bool) -> None:
    """harbor-bootstrap ends with the same checks: a successful sync and a successful pull are success."""
    prefix = "" if synced else "Argo CD sync of `harbor-auth-eso` did not succeed"
    shown = run_job(findings_for(pull, reg, "chain-healthy"), prefix)
    assert shown["outcome"] == ("succeeded" if ok else "failed")
    assert shown["summary"].startswith(prefix or ("chain" if ok else ""))
    if not synced:  # the chain's own verdict is still said, after the sync's failure
        assert "chain works" in shown["summary"] and shown["thread"][0] == "*The chain, walked back from the pull*"
        assert not any(line.startswith("*First broken link:*") for line in shown["thread"])


# --- the pieces ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cause", "state"),
    [
        (Cause.OK, State.PASS),
        (Cause.UNAUTHORIZED, State.FAIL),
        (Cause.DENIED, State.FAIL),
        (Cause.NOT_FOUND, State.FAIL),
        (Cause.UNREACHABLE, State.WARN),
        (Cause.DNS, State.WARN),
        (Cause.TLS, State.WARN),
        (Cause.TIMEOUT, State.WARN),
        (Cause.ERROR, State.WARN),
    ],
    ids=lambda v: str(v),
)
def test_registry_finding(cause: Cause, state: State) -> None:
    finding = registry_finding(cause, "what the registry check saw", NAMES)
    assert finding.state is state
    assert finding.evidence.startswith("what the registry check saw")
    if state is State.WARN:
        assert "pulls do not take this path" in finding.evidence and "`harbor.registry_url`" in finding.evidence


def test_the_warning_names_where_plate_bot_asked() -> None:
    names = Names.of(
        parse_config(
            {
                "environments": {
                    "stg": {
                        "namespace": "plate-stg",
                        "release": "plate-web",
                        "chart": "c",
                        "harbor": {"registry_url": "http://harbor-core.harbor:8080"},
                    }
                }
            }
        ).environments["stg"]
    )
    assert names.registry_url == "http://harbor-core.harbor:8080" and NAMES.registry_url == "https://harbor.example.com"
    findings = findings_for("pulled", "reg-ok", "chain-healthy")
    findings[CHAIN.index(Link.REGISTRY)] = registry_finding(Cause.UNREACHABLE, "cannot connect", names)
    line = verdict(findings, names).line
    assert line == (
        f"chain works: 8 checks passed, `{IMAGE}` pulls · warning: plate-bot's pod cannot reach the registry API "
        "at http://harbor-core.harbor:8080"
    )


def pod(image: str, reason: str, pull_secrets: tuple[str, ...] = ("harbor-docker-secret",)) -> dict[str, Any]:
    return {
        "metadata": {"name": "plate-web-1"},
        "spec": {"imagePullSecrets": [{"name": s} for s in pull_secrets]},
        "status": {
            "phase": "Pending",
            "containerStatuses": [{"name": "web", "image": image, "state": {"waiting": {"reason": reason}}}],
        },
    }


PULL_ERROR = (
    'Failed to pull image "harbor.example.com/plate/plate-web:9.9.9": rpc error: code = NotFound desc = failed to '
    "pull and unpack image: not found (manifest unknown)"
)


@pytest.mark.parametrize(
    ("pods", "events", "cause", "says"),
    [
        ([pod(f"{IMAGE[:-5]}9.9.9", "ImagePullBackOff")], [PULL_ERROR], Cause.NOT_FOUND, "`ImagePullBackOff`: Failed"),
        ([pod(f"{IMAGE[:-5]}9.9.9", "ErrImagePull")], ["dial tcp: i/o timeout"], Cause.UNREACHABLE, "i/o timeout"),
        ([pod(f"{IMAGE[:-5]}9.9.9", "ImagePullBackOff", ())], [PULL_ERROR], Cause.NO_CREDENTIALS, "none"),
        ([pod("docker.io/library/nginx:9", "ImagePullBackOff", ())], [], Cause.PULL_FAILED, "`ImagePullBackOff`"),
        ([], [], Cause.PULL_FAILED, "pull failing"),
    ],
    ids=["not-found", "node-unreachable", "no-pull-secret", "other-registry", "no-pods"],
)
def test_kubelet_finding(pods: list[dict[str, Any]], events: list[str], cause: Cause, says: str) -> None:
    finding = kubelet_finding(pods, events, NAMES)
    assert (finding.link, finding.state, finding.cause) == (Link.POD, State.FAIL, cause)
    assert says in finding.evidence, finding.evidence


def test_failing_pull_reads_the_waiting_container() -> None:
    running = {"status": {"containerStatuses": [{"image": "a/b:1", "state": {"running": {}}}]}}
    assert failing_pull([running, pod("h/x/y:2", "ErrImagePull")]) == ("h/x/y:2", "ErrImagePull")
    assert failing_pull([running]) == ("", "")
