"""core.redact: realistic leaks must lose their secret; ordinary operator text must survive unchanged."""

from __future__ import annotations

import base64
import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.redact import MASK, REDACTOR, Redactor, redact, redact_text, secret_values
from core.text import clip
from tests.leaks import CONFIG_VALUES, NEAR_MISSES, Leak, fragments, known_secret
from tests.leaks import LEAKS as CORPUS

DOCKERCONFIG = json.dumps(
    {
        "auths": {
            "harbor.example.com": {
                "username": "robot$plate",
                "password": "Zq8!pw-harbor",
                "auth": base64.b64encode(b"robot$plate:Zq8!pw-harbor").decode(),
            }
        }
    }
)
PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIEowIBAAKCAQEAxk1pemFrZWtleWZvcnRlc3Rzb25seQ\n"
    "c2hvcnQ=\n"
    "-----END RSA PRIVATE KEY-----"
)

# (text, secret that must be gone, text that must remain)
LEAKS = [
    (
        "Error: UPGRADE FAILED: template: plate-web/templates/db.yaml: --set db.password=hunter2-secret is invalid",
        "hunter2-secret",
        "UPGRADE FAILED",
    ),
    ("Error: values don't meet the specifications: password: hunter2-secret", "hunter2-secret", "Error: values"),
    ("token xoxb-1234567890-0987654321-AbCdEfGhIjKl rejected", "xoxb-1234567890", "rejected"),
    ("user token xoxp-11-22-33-abcdefabcdef", "xoxp-11-22", "user"),
    ("SLACK_APP_TOKEN xapp-1-A0123ABCD-4567890123-abcdef0123456789", "xapp-1-A0123ABCD", "SLACK_APP_TOKEN"),
    ("login with hvs.CAESIGxHZ1lmd2xhZG1pbnRva2Vu and retry", "hvs.CAESIGxHZ1lmd2xhZG1pbnRva2Vu", "and retry"),
    ("batch hvb.AAAAAQJ4ZXN0YmF0Y2h0b2tlbg", "hvb.AAAAAQJ4ZXN0YmF0Y2h0b2tlbg", "batch"),
    ("legacy s.AbCdEfGhIjKlMnOpQrStUvWx token", "s.AbCdEfGhIjKlMnOpQrStUvWx", "legacy"),
    (
        "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJwbGF0ZSJ9.c2lnbmF0dXJl",
        "eyJhbGciOiJIUzI1NiJ9",
        "Authorization: Bearer",
    ),
    ("authorization: basic cm9ib3Q6cGFzc3dvcmQ=", "cm9ib3Q6cGFzc3dvcmQ=", "basic"),
    ("Get https://robot$plate:Zq8pwHarbor@harbor.example.com/v2/: 401", "Zq8pwHarbor", "harbor.example.com/v2/"),
    ("cloning git+ssh://deploy:pa55word@git.example.com/plate.git", "pa55word", "git.example.com/plate.git"),
    (DOCKERCONFIG, "Zq8!pw-harbor", "harbor.example.com"),
    (DOCKERCONFIG, base64.b64encode(b"robot$plate:Zq8!pw-harbor").decode(), "robot$plate"),
    (
        ".dockerconfigjson: " + base64.b64encode(DOCKERCONFIG.encode()).decode(),
        base64.b64encode(DOCKERCONFIG.encode()).decode()[:40],
        ".dockerconfigjson",
    ),
    ("data:\n  .dockerconfigjson: eyJhdXRocyI6e319\n", "eyJhdXRocyI6e319", "data:"),
    (
        "could not get secret data from provider: Error making API request. URL: GET "
        "https://openbao.example.com/v1/secret/data/harbor Code: 403. X-Vault-Token: hvs.CAESIBogusTokenValue12",
        "hvs.CAESIBogusTokenValue12",
        "Code: 403",
    ),
    ('SecretSyncedError: {"errors":[],"token":"q7R2-s3cr3t-token"}', "q7R2-s3cr3t-token", "SecretSyncedError"),
    ("OPENBAO_TOKEN=root-7c1d9e", "root-7c1d9e", "OPENBAO_TOKEN="),
    ("client_secret: 'abc def'", "abc def", "client_secret"),
    ('"private_key": "-----BEGIN PRIVATE KEY-----\\nMIIB\\n-----END PRIVATE KEY-----\\n"', "MIIB", "private_key"),
    ("key follows\n" + PEM + "\ndone", "MIIEowIBAAKCAQEAxk1pemFrZWtleWZvcnRlc3Rzb25seQ", "key follows"),
    ("key follows\n" + PEM + "\ndone", "c2hvcnQ=", "\ndone"),
    ("api-key=AKIA1234567890", "AKIA1234567890", "api-key="),
    ("apiKey: 9f8e7d6c5b4a", "9f8e7d6c5b4a", "apiKey:"),
    (
        "secret data: " + "c2VjcmV0LXZhbHVlLWZvci10ZXN0czo3SGsyUXg5TG0=",
        "c2VjcmV0LXZhbHVlLWZvci10ZXN0czo3SGsy",
        "secret data:",
    ),
]


@pytest.mark.parametrize(("text", "secret", "kept"), LEAKS, ids=[f"leak{i}" for i in range(len(LEAKS))])
def test_leaks_are_cut(text: str, secret: str, kept: str) -> None:
    out = redact_text(text)
    assert secret not in out
    assert MASK in out
    assert kept in out


ORDINARY = [
    "harbor.example.com/plate/web:1.2",
    "Deployed harbor.example.com/plate/plate-web:1.4.0 to plate-prod",
    "unauthorized: authentication required",
    'Failed to pull image "harbor.example.com/plate/web:9.9": rpc error: code = NotFound',
    'Back-off pulling image "harbor.example.com/plate/web:1.2"',
    "web-7d9f8b6c5-x2x4z 0/1 CrashLoopBackOff, restarts 5",
    "Release `plate-web` revision 42: *deployed*",
    "rollback to revision 9999999",
    "took 1m30s (12.3s)",
    "secretKeyRef:",
    "valueFrom:\n  secretKeyRef:\n    name: db\n    key: password",
    'env: token\nsecret "harbor-docker-secret" not found',
    'secrets "harbor-docker-secret" is forbidden: User "system:serviceaccount:plate:bot" cannot get',
    "Authentication failed; tokens rotated",
    "The authorized approvers are <@U0ALICE>",
    "bearer of bad news",
    "s.short",
    "https://harbor.example.com/v2/plate/web/manifests/1.2",
    "OOMKilled (exit 137)",
    "0/3 nodes are available: 3 Insufficient memory.",
    "",
]


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_text_survives(text: str) -> None:
    assert redact_text(text) == text


def test_containerd_auth_error_survives() -> None:
    text = "failed to authorize: failed to fetch anonymous token: unexpected status: 401 Unauthorized"
    assert redact_text(text) == text


def test_image_digest_survives() -> None:
    text = "harbor.example.com/plate/web@sha256:" + "0123456789abcdef" * 4
    assert redact_text(text) == text


def test_known_values_replaced_longest_first() -> None:
    known = frozenset({"abc123", "abc123-longer"})
    assert redact_text("x abc123-longer y abc123 z", known) == f"x {MASK} y {MASK} z"


def test_redactor_add_value_and_base64() -> None:
    r = Redactor()
    secret = "p@ss w0rd!"  # no tell-tale shape
    r.add(secret, b"raw-bytes-secret", "short")
    encoded = base64.b64encode(secret.encode()).decode()
    assert r.known >= {secret, encoded, "raw-bytes-secret", base64.b64encode(b"raw-bytes-secret").decode()}
    assert "short" not in r.known
    assert r(f"value {secret} and {encoded}.") == f"value {MASK} and {MASK}."
    assert r("raw-bytes-secret") == MASK
    assert r("a short word") == "a short word"


def test_redactor_add_accumulates() -> None:
    r = Redactor()
    r.add("first-secret")
    r.add("second-secret")
    assert r(["first-secret", "second-secret"]) == [MASK, MASK]


def test_redact_nested_block_kit() -> None:
    blocks = [
        {"type": "section", "text": {"type": "mrkdwn", "text": "token xoxb-123456-abcdef ok"}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": "password=hunter2"}], "n": 3},
        ("tuple", "https://u:p4ss@h.example/x"),
        None,
        True,
        4.5,
    ]
    out = redact(blocks)
    assert out[0] == {"type": "section", "text": {"type": "mrkdwn", "text": f"token {MASK} ok"}}
    assert out[1] == {"type": "context", "elements": [{"type": "mrkdwn", "text": f"password={MASK}"}], "n": 3}
    assert out[2] == ("tuple", f"https://{MASK}@h.example/x")
    assert out[3:] == [None, True, 4.5]
    assert blocks[0]["text"]["text"] == "token xoxb-123456-abcdef ok"  # input untouched


def test_redact_is_idempotent_on_mask() -> None:
    once = redact_text("password: hunter2 token=abc")
    assert once == f"password: {MASK} token={MASK}"
    assert redact_text(once) == once


SAFE_SECRET = st.text(alphabet=st.characters(codec="ascii", categories=["L", "N"]), min_size=6, max_size=40)
FILLER = st.text(alphabet=" .,:;!?()[]{}\"'\n\t-", max_size=40)


@settings(max_examples=300, deadline=None)
@given(secret=SAFE_SECRET, prefix=FILLER, suffix=FILLER)
def test_added_secret_never_survives(secret: str, prefix: str, suffix: str) -> None:
    r = Redactor()
    r.add(secret)
    encoded = base64.b64encode(secret.encode()).decode()
    out = r({"k": [f"{prefix}{secret}{suffix}", f"{prefix}{encoded}{suffix}"]})
    plain, b64 = out["k"]
    assert secret not in plain and MASK in plain
    assert encoded not in b64 and MASK in b64


# --- the leak corpus (tests/leaks.py) ----------------------------------------------------------------------


def corpus_redactor() -> Redactor:
    """A registry holding what the environment's Secret `app-credentials` holds, as a job or the watcher would."""
    r = Redactor()
    r.set(("secret", "ctx", "plate-prod", "app-credentials"), secret_values(known_secret("plate-prod")))
    return r


@pytest.mark.parametrize("leak", CORPUS, ids=[leak.shape for leak in CORPUS])
def test_corpus_leak_is_cut_and_its_surroundings_kept(leak: Leak) -> None:
    out = corpus_redactor().text(leak.text)
    assert leak.secret not in out and MASK in out
    assert all(part not in out for part in fragments(leak.secret))
    # Not more than the secret (and its key or URL user): the words before it survive.
    before = leak.text[: leak.text.index(leak.secret)]
    if not before.startswith("-----BEGIN"):  # a private key goes whole, its armour too
        assert out.startswith(before.rsplit(" ", 1)[0] if " " in before else "")


@pytest.mark.parametrize("leak", [leak for leak in CORPUS if leak.known], ids=lambda leak: leak.shape)
def test_shapeless_leaks_are_caught_only_by_their_registered_value(leak: Leak) -> None:
    assert leak.secret in redact_text(leak.text)  # no pattern catches it: this entry tests the registry
    assert leak.secret not in corpus_redactor().text(leak.text)


@pytest.mark.parametrize("near", NEAR_MISSES)
def test_corpus_near_miss_survives_unchanged(near: str) -> None:
    assert corpus_redactor().text(near) == near
    assert clip(near, 10_000) == near


def test_corpus_is_large_and_unambiguous() -> None:
    secrets = [leak.secret for leak in CORPUS]
    assert len({leak.shape for leak in CORPUS}) >= 40 and len(set(secrets)) == len(secrets)
    assert all(leak.near for leak in CORPUS)
    assert not [(s, n) for s in secrets for part in fragments(s) for n in NEAR_MISSES if part in n]
    assert all(len(leak.text) <= 120 and len(leak.near) <= 120 and "\n" not in leak.text for leak in CORPUS)
    # Plain configuration stored beside the credentials is not registered (it would be cut everywhere).
    values = secret_values(known_secret("plate-prod"))
    assert not set(CONFIG_VALUES.values()) & set(values)


def test_corpus_leaks_all_in_one_text() -> None:
    """Every shape at once, in one blob (a helm stderr, a log tail): each is cut, the near-misses stay."""
    blob = "\n".join(f"{leak.text}\n{leak.near}" for leak in CORPUS)
    out = corpus_redactor().text(blob)
    for leak in CORPUS:
        assert leak.secret not in out, leak.shape
        assert leak.near in out, leak.near


@pytest.mark.parametrize("leak", CORPUS, ids=[leak.shape for leak in CORPUS])
def test_clip_redacts_before_it_cuts(leak: Leak) -> None:
    """A shortened line never keeps half a secret: clip cuts right through the secret if it did not redact
    first. Shapeless secrets need the process-wide registry (what every process fills before it posts)."""
    source = ("secret", "test-clip", "plate-prod", "app-credentials")
    if leak.known:
        REDACTOR.set(source, secret_values(known_secret("plate-prod")))
    try:
        at = leak.text.index(leak.secret) + len(leak.secret) // 2
        text = "x" * 80 + " " + leak.text + " " + "y" * 80
        middle = 81 + at
        for limit in (40, 60, 100, 2 * middle // 2):
            out = clip(text, limit)
            assert all(part not in out for part in fragments(leak.secret)), (limit, out)
    finally:
        REDACTOR.remove(source)


# --- the registry: values by source, replaced, dropped, bounded -------------------------------------------


def test_registry_replaces_and_drops_values_by_source() -> None:
    r = Redactor()
    r.set(("secret", "c", "ns", "a"), ["old-Value-111"])
    assert r.text("x old-Value-111") == f"x {MASK}"
    r.set(("secret", "c", "ns", "a"), ["new-Value-222"])  # the Secret changed: the old value is forgotten
    assert r.text("old-Value-111 new-Value-222") == f"old-Value-111 {MASK}"
    r.remove(("secret", "c", "ns", "a"))  # deleted
    assert r.text("new-Value-222") == "new-Value-222" and r.known == frozenset()


def test_registry_relist_drops_what_a_namespace_no_longer_has() -> None:
    r = Redactor()
    r.replace(
        ("secret", "c", "ns"),
        {("secret", "c", "ns", "a"): ["aaa-Value-1"], ("secret", "c", "ns", "b"): ["bbb-Value-2"]},
    )
    r.set(("secret", "c", "other", "x"), ["xxx-Value-3"])
    generation = r.generation
    assert not r.replace(
        ("secret", "c", "ns"),
        {("secret", "c", "ns", "a"): ["aaa-Value-1"], ("secret", "c", "ns", "b"): ["bbb-Value-2"]},
    )
    assert r.generation == generation  # nothing changed: no rebuild, caches stay valid
    r.replace(("secret", "c", "ns"), {("secret", "c", "ns", "a"): ["aaa-Value-1"]})  # b deleted while away
    assert r.text("aaa-Value-1 bbb-Value-2 xxx-Value-3") == f"{MASK} bbb-Value-2 {MASK}"
    assert r.generation > generation


def test_registry_is_bounded_oldest_sources_first() -> None:
    r = Redactor(max_values=40)
    for i in range(50):
        r.set(("secret", "c", "ns", f"s{i}"), [f"value-{i:04d}-Abc"])
    assert len(r.known) <= 40 and r.dropped > 0
    assert r.text("value-0049-Abc") == MASK  # the newest are kept
    assert r.text("value-0000-Abc") == "value-0000-Abc"


def test_registry_learns_the_forms_a_value_takes() -> None:
    r = Redactor()
    value = 'p@ss "w0rd"/x\n'
    r.set(("s",), [value])
    b64 = base64.b64encode
    forms = (value.strip(), b64(value.encode()).decode(), b64(value.strip().encode()).decode(),
             json.dumps(value.strip())[1:-1], "p%40ss%20%22w0rd%22%2Fx")  # fmt: skip
    for form in forms:
        assert r.text(f"<{form}>") == f"<{MASK}>", form


def test_secret_values_skip_release_records_public_keys_and_plain_configuration() -> None:
    def secret(data: dict[str, str], type_: str = "Opaque") -> dict[str, object]:
        return {"type": type_, "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}

    assert secret_values(secret({"release": "H4sIAAAAAAAA-gzipped"}, "helm.sh/release.v1")) == []
    sa = secret({"token": JWT_VALUE, "ca.crt": "-----BEGIN CERTIFICATE-----x", "namespace": "plate-prod"},
                "kubernetes.io/service-account-token")  # fmt: skip
    assert secret_values(sa) == [JWT_VALUE]  # service-account tokens are secrets; their CA and namespace not
    repo = secret(
        {"url": "https://git.example.com/platform/plate-web.git", "username": "deploy", "password": "Rp9-pw-x"}
    )
    assert secret_values(repo) == ["Rp9-pw-x"]
    config = secret({"LOG_LEVEL": "debug", "ENV": "production", "PORT": "8080", "API_KEY": "k3y-Value-9"})
    assert secret_values(config) == ["k3y-Value-9"]


JWT_VALUE = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW0ifQ.c2ln"


def test_redaction_of_a_typical_message_is_fast_enough_for_every_post() -> None:
    """Not a benchmark (bench/redact_speed.py is): a guard against a pattern that backtracks badly."""
    text = "\n".join(leak.near for leak in CORPUS)[:2048] + " " + "a1B2" * 3000 + " password=" + "x" * 5000
    started = time.perf_counter()
    corpus_redactor().text(text)
    assert time.perf_counter() - started < 0.5
