"""The leak corpus: shapes of secrets as they turn up in cluster text (helm's stderr, pod events, previous
container logs, ExternalSecret/SecretStore status, Argo CD operation messages), each with a near-miss that
must come through untouched (image digests, git SHAs, Slack permalinks, Kubernetes names, prose).

Used by tests/unit/test_redact.py (the redaction layer itself, and `clip`) and by
tests/integration/test_leak_corpus_e2e.py (every path to Slack and the logs, end to end).

Rules for entries: one line each, at most 120 characters (so a path that shortens lines shows them whole);
every `secret` unique in the corpus and absent from every near-miss. `known=True` secrets have no tell-tale
shape: only their exact value, registered from a Secret of the environment (KNOWN_SECRET), cuts them.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Leak:
    shape: str
    text: str  # cluster text with the secret in it
    secret: str  # what must not survive, nor any half of it
    near: str  # a look-alike that must survive unchanged
    known: bool = False  # caught only as an exact value of a Secret (KNOWN_SECRET)


# Shapeless values: what the environment's Secrets hold (tests plant them as Secret `app-credentials`).
OPENBAO_TOKEN = "obtok7Hq2Lx9Vw3RzK"
REGISTRY_PASSWORD = "Kq4mWz8pTn2vRb"
NEWLINE_PASSWORD = "Nl9TrailingPw3"
KNOWN_VALUES = {
    "OPENBAO_TOKEN": OPENBAO_TOKEN,
    "REGISTRY_PASSWORD": REGISTRY_PASSWORD,
    "DB_PASSWORD": NEWLINE_PASSWORD + "\n",  # `kubectl create secret --from-file` keeps the newline
}
# Beside them, configuration a Secret often carries: registering it would cut these words everywhere.
CONFIG_VALUES = {"username": "robot$plate", "APP_NAME": "plate-web", "DB_HOST": "db.plate-prod.svc", "PORT": "5432"}


def known_secret(namespace: str, name: str = "app-credentials") -> dict[str, Any]:
    data = {k: base64.b64encode(v.encode()).decode() for k, v in {**KNOWN_VALUES, **CONFIG_VALUES}.items()}
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": namespace}, "data": data}  # fmt: skip


GH_CLASSIC = "ghp_R4nd0mGitHubT0kenAbCdEfGhIjKlMnOp123"
GH_FINE = "github_pat_11ABCDEFG0aBcDeFgHiJkLmN_oPqRsTuVwXyZ0123456789aBcDeFgHiJkLmNoPqRsTu"
GH_APP = "ghs_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
JWT = "eyJhbGciOiJSUzI1NiIsImtpZCI6IjEifQ.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQifQ.c2lnbmF0dXJlLXgx"
DIGEST = "sha256:9b2d3c4e5f60718293a4b5c6d7e8f90112233445566778899aabbccddeeff001"
SHA = "3f9c2a1e8b7d6c5f4e3d2c1b0a9f8e7d6c5b4a39"
PERMALINK = "https://plate-team.slack.com/archives/C0DEPLOYS/p1795772987250000"

LEAKS: tuple[Leak, ...] = (
    # --- credentials in URLs ---
    Leak("url credentials, https",
         'Get "https://robot$plate:Zq8pwHarbor7x@harbor.example.com/v2/": 401 Unauthorized', "Zq8pwHarbor7x",
         'Get "https://harbor.example.com/v2/plate/plate-web/manifests/1.4.0": 401 Unauthorized'),
    Leak("url credentials, redis without user",
         "dial redis://:Rd5s3cretPw9@redis-master.plate-prod.svc:6379/0: i/o timeout", "Rd5s3cretPw9",
         "dial redis://redis-master.plate-prod.svc:6379/0: i/o timeout"),
    Leak("url credentials, postgres",
         "connecting to postgres://plate:Pg8hunter2x@db.plate-prod.svc:5432/plate?sslmode=require", "Pg8hunter2x",
         "connecting to postgres://db.plate-prod.svc:5432/plate?sslmode=require"),
    Leak("url credentials, git",
         "fatal: unable to access 'https://deploy:Gt7-deploy-tok@git.example.com/platform/plate-web.git/'",
         "Gt7-deploy-tok", "Cloning into 'plate-web' from ssh://git@git.example.com/platform/plate-web.git"),
    # --- assignments and fields, any case ---
    Leak("*PASSWORD=", "env DB_PASSWORD=Hx7dbPass9 rejected by the entrypoint", "Hx7dbPass9",
         "env DB_PASSWORD_FILE=/run/secrets/db-password is set"),
    Leak("glued PGPASSWORD=", "PGPASSWORD=pgS3cr3t77 psql -h db.plate-prod.svc -U plate", "pgS3cr3t77",
         "psql: error: fe_sendauth: no password supplied"),
    Leak("--set x.password=", "Error: UPGRADE FAILED: --set db.password=hunter2Secret5 is invalid", "hunter2Secret5",
         "Error: UPGRADE FAILED: --set db.passwordPolicy=strict is invalid"),
    Leak("passwd=", "ldap bind failed: passwd=Ld4pPw42x for cn=plate", "Ld4pPw42x",
         "open /etc/passwd: no such file or directory"),
    Leak("pass=", "smtp: AUTH user=alerts pass=Sm7pPassX1 refused", "Sm7pPassX1", "bypass=true compass=north"),
    Leak("secret=", "oauth2: token exchange failed: secret=Cs9oauthSecret rejected", "Cs9oauthSecret",
         "volume secretName=harbor-docker-secret"),
    Leak("UPPER_SECRET=", "JWT_SECRET=JwT5ecretValue88 loaded from the environment", "JwT5ecretValue88",
         "SECRET_NAME=openbao-token"),
    Leak("password: in values", "Error: values don't meet the specifications: password: Hunter2prod9",
         "Hunter2prod9", "failed to fetch anonymous token: unexpected status: 401 Unauthorized"),
    Leak("JSON password", '{"username":"robot$plate","password":"Js0nPwQ7x"}', "Js0nPwQ7x",
         '{"username":"robot$plate","passwordless":true}'),
    Leak("JSON in JSON", 'msg="login" body="{\\"token\\":\\"Jj9escapedTok\\"}"', "Jj9escapedTok",
         'msg="login" body="{\\"tokenType\\":\\"bearer\\"}"'),
    Leak("camelCase clientSecret", 'clientSecret: "Cl13ntSecr3t"', "Cl13ntSecr3t", "clientId: plate-bot"),
    Leak("access_token in a query", "GET /oauth/callback?access_token=Qt9x8y7z6tok&state=ok", "Qt9x8y7z6tok",
         "GET /api/v1/namespaces/plate-prod/pods?limit=500&continue=abc"),
    Leak("X-API-Key header", "X-API-Key: 4piK3yValue77", "4piK3yValue77", "apiVersion: external-secrets.io/v1"),
    Leak("Azure AccountKey", "AccountName=plate;AccountKey=Az9kEy0123456789abcdefghijKLMNOP==;EndpointSuffix=x",
         "Az9kEy0123456789abcdefghijKLMNOP==", "DefaultEndpointsProtocol=https;AccountName=plate"),
    # --- prose ---
    Leak("password in prose", "login failed: wrong password Hunt3r2x9 for user admin", "Hunt3r2x9",
         'pq: password authentication failed for user "plate"'),
    Leak("the password is", "hint: the password is Pr0sePw!77", "Pr0sePw!77", "hint: see the password reset page"),
    # --- values echoed by the API server (helm's stderr) ---
    Leak("data[key]: Invalid value", 'Secret "db" is invalid: data[password]: Invalid value: "Inv4lid Val!": bad',
         "Inv4lid Val!", 'Deployment "web" is invalid: spec.replicas: Invalid value: -1: must be >= 0'),
    Leak("key: Invalid value", 'Secret "api" is invalid: stringData.token: Invalid value: "Tk9invalid#x"',
         "Tk9invalid#x", 'metadata.name: Invalid value: "Plate_Web": a lowercase RFC 1123 subdomain'),
    # --- vendor tokens ---
    Leak("GitHub classic token", f"remote: Invalid username or password for {GH_CLASSIC}", GH_CLASSIC,
         "tokens start with ghp_ (classic) or github_pat_ (fine-grained)"),
    Leak("GitHub fine-grained token", f"GITHUB_TOKEN {GH_FINE}", GH_FINE, f"checked out {SHA}"),
    Leak("GitHub app token in a URL", f"https://x-access-token:{GH_APP}@github.com/platform/plate-web", GH_APP,
         f"https://github.com/platform/plate-web/commit/{SHA}"),
    Leak("GitLab token", "gitlab: 401 for glpat-xYz12AbCdEfGhIjKlMn0", "glpat-xYz12AbCdEfGhIjKlMn0",
         "https://gitlab.example.com/platform/plate-web"),
    Leak("npm token", "//registry.npmjs.org/:_authToken=npm_AbCdEf0123456789AbCdEf0123456789AbCd",
         "npm_AbCdEf0123456789AbCdEf0123456789AbCd", "npm notice New minor version of npm available"),
    Leak("Docker Hub token", "docker login -u plate dckr_pat_AbCdEfGhIjKlMnOpQrStUvWxYz0",
         "dckr_pat_AbCdEfGhIjKlMnOpQrStUvWxYz0", "docker.io/library/nginx:1.27-alpine"),
    Leak("Stripe secret key", "stripe: No such customer; key sk_live_51HqLyjWDarjtT1zdp7dcXkq0",
         "sk_live_51HqLyjWDarjtT1zdp7dcXkq0", "task_live_checks passed"),
    Leak("Stripe restricted key", "stripe: rk_live_9aBcDeFgHiJkLmNoPqRsTuVw expired",
         "rk_live_9aBcDeFgHiJkLmNoPqRsTuVw", "work_live_reload enabled"),
    Leak("Stripe webhook secret", "STRIPE_WEBHOOK whsec_AbCdEfGhIjKlMnOpQrStUv1234", "whsec_AbCdEfGhIjKlMnOpQrStUv1234",
         "whsec_ prefixes name Stripe webhook secrets"),
    Leak("Google API key", "geocode: REQUEST_DENIED for AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY",
         "AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY", "AIza... keys are Google API keys"),
    Leak("Google OAuth token", "oauth: ya29.a0AfH6SMBx3Qk9LmNoPqRsTuVwXyZ012345 expired",
         "ya29.a0AfH6SMBx3Qk9LmNoPqRsTuVwXyZ012345", "ya29 is the prefix of Google OAuth access tokens"),
    Leak("Google client secret", "client GOCSPX-AbCdEfGhIjKlMnOpQrStUvWx invalid", "GOCSPX-AbCdEfGhIjKlMnOpQrStUvWx",
         "GOCSPX- prefixes name Google client secrets"),
    Leak("Slack bot token", "slack: invalid_auth for xoxb-2048-4096-Ab3dEf9hIjKlMnOp",
         "xoxb-2048-4096-Ab3dEf9hIjKlMnOp", f"thread: {PERMALINK}"),
    Leak("Slack user token", "SLACK_USER_TOKEN xoxp-11-22-33-abcdefabcdef", "xoxp-11-22-33-abcdefabcdef",
         "xoxb- tokens are bot tokens"),
    Leak("Slack app token", "SLACK_APP_TOKEN=xapp-1-A0123ABCD-4567890123-abcdef0123456789",
         "xapp-1-A0123ABCD-4567890123-abcdef0123456789", "socket mode: apps.connections.open ok"),
    Leak("Slack webhook", "post https://hooks.slack.com/services/T0000AAAA/B0000BBBB/XXXXXXXXXXXXXXXXXXXXXXXX: 404",
         "T0000AAAA/B0000BBBB/XXXXXXXXXXXXXXXXXXXXXXXX", "post https://slack.com/api/chat.postMessage: 200"),
    Leak("SendGrid key", "sendgrid SG.aBcDeFgHiJkLmNoPqRsTuV.wXyZ0123456789aBcDeFgHiJkLmNoPqRsTuVwXyZ01234",
         "SG.aBcDeFgHiJkLmNoPqRsTuV.wXyZ0123456789aBcDeFgHiJkLmNoPqRsTuVwXyZ01234", "sg-0a1b2c3d4e5f (security group)"),
    Leak("AWS access key id", "InvalidAccessKeyId: The AWS Access Key Id AKIAIOSFODNN7EXAMPLE does not exist",
         "AKIAIOSFODNN7EXAMPLE", "s3: AccessDenied (Service: S3; Status Code: 403; Request ID: 7TXBZ3V9ZK4NPQ2M)"),
    Leak("AWS secret access key", f"aws_secret_access_key = {AWS_SECRET}", AWS_SECRET, "aws_region = eu-central-1"),
    Leak("JWT", f"id_token {JWT}", JWT, "request 123e4567-e89b-12d3-a456-426614174000 at 2026-11-27T10:41:07.512Z"),
    Leak("Bearer credentials", "Authorization: Bearer Zk4r7Qp2Lm9Xw3Vt8Ny5Hb6", "Zk4r7Qp2Lm9Xw3Vt8Ny5Hb6",
         "Bearer authentication required"),
    Leak("Basic credentials", "Authorization: Basic cm9ib3Q6WnE4cHdIYXJib3I=", "cm9ib3Q6WnE4cHdIYXJib3I=",
         'WWW-Authenticate: Basic realm="Harbor"'),
    Leak("PEM private key",
         "-----BEGIN RSA PRIVATE KEY----- MIIEowIBAAKCAQEAxk1pemFrZWtleWZvcnRlc3Rz -----END RSA PRIVATE KEY-----",
         "MIIEowIBAAKCAQEAxk1pemFrZWtleWZvcnRlc3Rz", "tls.key: no such key in Secret plate-tls"),
    Leak("PEM private key, cut short", "-----BEGIN OPENSSH PRIVATE KEY----- b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ",
         "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ", "ssh: handshake failed: knownhosts: key mismatch"),
    Leak("OpenBao service token", "X-Vault-Token: hvs.CAESIJzL9kQ2xY7pWm4nVb8rTe1uGh5oKd3sFa6",
         "hvs.CAESIJzL9kQ2xY7pWm4nVb8rTe1uGh5oKd3sFa6", "hvs. tokens expire after 768h"),
    Leak("OpenBao batch token", "batch token hvb.AAAAAQJ4ZXN0YmF0Y2h0b2tlbg issued", "hvb.AAAAAQJ4ZXN0YmF0Y2h0b2tlbg",
         "GET https://openbao.example.com:8200/v1/sys/health: 503"),
    Leak("legacy Vault token", "token s.AbCdEfGhIjKlMnOpQrStUvWx expired", "AbCdEfGhIjKlMnOpQrStUvWx",
         'deployments.apps "plate-web" not found'),
    Leak("dockerconfigjson", ".dockerconfigjson: eyJhdXRocyI6eyJoYXJib3IuZXhhbXBsZS5jb20iOnt9fX0=",
         "eyJhdXRocyI6eyJoYXJib3IuZXhhbXBsZS5jb20iOnt9fX0=", "type: kubernetes.io/dockerconfigjson"),
    Leak("docker config auth", '{"auths":{"harbor.example.com":{"auth":"cm9ib3QkcGxhdGU6WnE4IXB3LWhhcmJvcg=="}}}',
         "cm9ib3QkcGxhdGU6WnE4IXB3LWhhcmJvcg==", '{"auths":{"harbor.example.com":{}}}'),
    Leak("long base64 run", "data: c2VjcmV0LXZhbHVlLWZvci10ZXN0czo3SGsyUXg5TG0=",
         "c2VjcmV0LXZhbHVlLWZvci10ZXN0czo3SGsy", f"pulled harbor.example.com/plate/plate-web@{DIGEST}"),
    Leak("--token flag", "argocd login argocd.example.com --token Arg0cdTok3n77 failed", "Arg0cdTok3n77",
         "--token-file /var/run/secrets/token is missing"),
    Leak("--password flag", "helm repo add plate https://charts.example.com --password Hr3poPw55", "Hr3poPw55",
         "helm registry login --password-stdin harbor.example.com"),
    # --- shapeless: only the Secret's exact value cuts them ---
    Leak("shapeless OpenBao token", f"invalid vault credentials: token {OPENBAO_TOKEN} was rejected", OPENBAO_TOKEN,
         "SecretStore openbao-harbor: the token comes from Secret openbao-token", known=True),
    Leak("shapeless registry password", f"login for robot$plate failed, tried {REGISTRY_PASSWORD}", REGISTRY_PASSWORD,
         "Error response from daemon: login for robot$plate failed", known=True),
    Leak("shapeless value, base64", f"vault response: {base64.b64encode(OPENBAO_TOKEN.encode()).decode()}",
         base64.b64encode(OPENBAO_TOKEN.encode()).decode(), "vault response: 403 permission denied", known=True),
    Leak("shapeless value with a trailing newline", f"db: authentication failed using {NEWLINE_PASSWORD}",
         NEWLINE_PASSWORD, "db: connecting to db.plate-prod.svc:5432 as plate-web", known=True),
)  # fmt: skip

NEAR_MISSES = (
    *(leak.near for leak in LEAKS),
    DIGEST,
    SHA,
    PERMALINK,
    f"{PERMALINK}?thread_ts=1795772987.250000&cid=C0DEPLOYS",
    "harbor-docker-secret",
    'MountVolume.SetUp failed for volume "db-password" : secret "db-password" not found',
    "Error: java/lang/NoClassDefFoundError: org/springframework/boot/SpringApplication",
    "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE is not set",
    "/api/v1/namespaces/plate-prod/pods/plate-web-7d9f8b6c5-x2x4z/log",
    "passwordless login enabled",
    "secretKeyRef: {name: db, key: password}",
    "Readiness probe failed: HTTP probe failed with statuscode: 503",
    "unauthorized: authentication required",
)


def all_secrets() -> list[str]:
    return [leak.secret for leak in LEAKS]


def fragments(secret: str) -> list[str]:
    """Recognisable parts of a secret: its halves (what an ellipsis would leave of it)."""
    half = max(8, len(secret) // 2)
    return [secret[:half], secret[-half:]] if len(secret) >= 12 else [secret]
