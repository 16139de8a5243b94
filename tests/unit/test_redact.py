"""bot.redact: realistic leaks must lose their secret; ordinary operator text must survive unchanged."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.redact import MASK, Redactor, redact, redact_text

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
    ("secret data: " + "QUJD" * 12, "QUJD" * 12, "secret data:"),
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
