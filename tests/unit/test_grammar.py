"""bot.grammar.parse: every verb, alias, argument shape and refusal; echo-back sanitising; properties."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.grammar import (
    IMAGE_TAG,
    MAX_TEXT,
    OBJECT_REF,
    REVISION,
    USAGE,
    Command,
    Verb,
    _shown,
    help_text,
    parse,
)
from config.environments import parse_config
from core.errors import UsageError

CONFIG = parse_config(
    {
        "environments": {
            "stg": {"aliases": ["staging"], "namespace": "plate-stg", "release": "plate-web", "chart": "c"},
            "prod": {
                "aliases": ["production"],
                "namespace": "plate-prod",
                "release": "plate-web",
                "chart": "c",
                "approvals_required": 1,
                "approvers": ["U0ALICE"],
            },
        }
    }
)


def resolve(name: str) -> str | None:
    env = CONFIG.resolve(name)
    return env.name if env else None


D, R, HV, S, HI, DG = Verb.DEPLOY, Verb.ROLLBACK, Verb.HARBOR_VERIFY, Verb.STATUS, Verb.HISTORY, Verb.DIAGNOSE

OK_CASES = [
    ("help", Command(Verb.HELP)),
    ("HELP", Command(Verb.HELP)),
    ("deploy stg", Command(D, "stg")),
    ("deploy staging", Command(D, "stg")),
    ("DEPLOY STAGING", Command(D, "stg")),
    ("deploy Production", Command(D, "prod")),
    ("deploy prod 1.2.3", Command(D, "prod", image_tag="1.2.3")),
    ("deploy prod v1.4.0-rc.1", Command(D, "prod", image_tag="v1.4.0-rc.1")),
    ("deploy prod _build_7", Command(D, "prod", image_tag="_build_7")),
    ("deploy prod " + "a" * 128, Command(D, "prod", image_tag="a" * 128)),
    ("deploy prod 1.2 --dry-run", Command(D, "prod", image_tag="1.2", dry_run=True)),
    ("deploy --dry-run prod 1.2", Command(D, "prod", image_tag="1.2", dry_run=True)),
    ("deploy prod --dry-run", Command(D, "prod", dry_run=True)),
    ("  deploy\tstg \n 1.0  ", Command(D, "stg", image_tag="1.0")),
    ("deploy\u00a0stg", Command(D, "stg")),  # NBSP is whitespace to str.split
    ("rollback prod", Command(R, "prod")),
    ("rollback prod 1", Command(R, "prod", revision=1)),
    ("rollback prod 42", Command(R, "prod", revision=42)),
    ("rollback prod 9999999", Command(R, "prod", revision=9999999)),
    ("rollback production 3 --dry-run", Command(R, "prod", revision=3, dry_run=True)),
    ("harbor-verify stg", Command(HV, "stg")),
    ("verify-harbor PROD", Command(HV, "prod")),
    ("Verify-Harbor staging", Command(HV, "stg")),
    ("status prod", Command(S, "prod")),
    ("STATUS staging", Command(S, "stg")),
    ("history prod", Command(HI, "prod")),
    ("history prod 1", Command(HI, "prod", count=1)),
    ("history prod 50", Command(HI, "prod", count=50)),
    ("diagnose prod", Command(DG, "prod")),
    ("diagnose prod deploy/web", Command(DG, "prod", target="deploy/web")),
    ("diagnose prod deployment/web", Command(DG, "prod", target="deployment/web")),
    ("diagnose prod web-7d9f", Command(DG, "prod", target="web-7d9f")),
    ("diagnose stg sts/db", Command(DG, "stg", target="sts/db")),
    ("diagnose stg statefulset/db-0", Command(DG, "stg", target="statefulset/db-0")),
    ("diagnose stg job/migrate.v2", Command(DG, "stg", target="job/migrate.v2")),
    ("diagnose stg pod/web-7d9f-x2x4z", Command(DG, "stg", target="pod/web-7d9f-x2x4z")),
    ("diagnose stg po/web", Command(DG, "stg", target="po/web")),
    ("status prod" + " " * (MAX_TEXT - len("status prod")), Command(S, "prod")),
]


@pytest.mark.parametrize(("text", "expected"), OK_CASES, ids=[c[0][:40] for c in OK_CASES])
def test_parse_accepts(text: str, expected: Command) -> None:
    assert parse(text, resolve) == expected


ERROR_CASES = [
    ("", "Tell me what to do: a verb such as `deploy`, `status` or `help`."),
    ("   \t\n", "Tell me what to do"),
    ("--dry-run", "Tell me what to do"),
    ("launch prod", "I don't know the command `launch`."),
    ("/plate deploy", "I don't know the command `/plate`."),
    ("deploy", f"Which environment? Usage: `{USAGE[D]}`"),
    ("rollback --dry-run", f"Which environment? Usage: `{USAGE[R]}`"),
    ("deploy moon", "There is no environment called `moon`."),
    ("deploy prd", "There is no environment called `prd`."),
    ("deploy prod 1.2 extra", f"Too many arguments. Usage: `{USAGE[D]}`"),
    ("status prod a b", f"Too many arguments. Usage: `{USAGE[S]}`"),
    ("deploy prod .hidden", "`.hidden` is not a valid image tag"),
    ("deploy prod -rc1", "Unknown option `-rc1`."),
    ("deploy prod v1:2", "`v1:2` is not a valid image tag"),
    ("deploy prod a;rm", "`a;rm` is not a valid image tag"),
    ("deploy prod 1.2.ü", "`1.2.ü` is not a valid image tag"),
    ("deploy prod " + "a" * 129, "is not a valid image tag"),
    ("rollback prod x", f"`x` is not a revision number. Usage: `{USAGE[R]}`"),
    ("rollback prod 0", "`0` is not a revision number."),
    ("rollback prod 01", "`01` is not a revision number."),
    ("rollback prod 10000000", "`10000000` is not a revision number."),
    ("rollback prod 1.5", "`1.5` is not a revision number."),
    ("rollback prod \u0663", "`\u0663` is not a revision number."),  # Arabic-Indic three
    ("rollback prod -1", "Unknown option `-1`."),
    ("history prod 51", "The count for `history` is a number from 1 to 50."),
    ("history prod 0", "The count for `history` is a number from 1 to 50."),
    ("history prod ten", "The count for `history` is a number from 1 to 50."),
    ("diagnose prod Deploy/web", "`Deploy/web` is not a pod or workload name"),
    ("diagnose prod service/web", "`service/web` is not a pod or workload name"),
    ("diagnose prod web-", "`web-` is not a pod or workload name"),
    ("diagnose prod ../etc", "`../etc` is not a pod or workload name"),
    ("status prod --dry-run", "`--dry-run` does not apply to `status`; it changes nothing anyway."),
    ("harbor-verify prod --dry-run", "`--dry-run` does not apply to `harbor-verify`"),
    ("history prod --dry-run", "`--dry-run` does not apply to `history`"),
    ("diagnose prod --dry-run", "`--dry-run` does not apply to `diagnose`"),
    ("deploy prod --force", f"Unknown option `--force`. Usage: `{USAGE[D]}`"),
    ("rollback prod -n", f"Unknown option `-n`. Usage: `{USAGE[R]}`"),
    ("deploy prod --dry-run --dry-run", "`--dry-run` is given twice."),
    ("help me", "`help` takes no arguments."),
    ("help --dry-run", "`help` takes no arguments."),
    ("status prod 3", f"`status` takes no further arguments. Usage: `{USAGE[S]}`"),
    ("harbor-verify prod x", "`harbor-verify` takes no further arguments."),
    ("déploy prod", "I don't know the command `déploy`."),
    ("\uff24\uff25\uff30\uff2c\uff2f\uff39 prod", "I don't know the command `\uff24\uff25\uff30\uff2c\uff2f\uff39`."),
    ("deploy prød", "There is no environment called `prød`."),
    ("x" * (MAX_TEXT + 1), f"That command is {MAX_TEXT + 1} characters long; the limit is {MAX_TEXT}."),
    ("status prod" + " " * 400, "That command is 411 characters long"),
    # Slack markup is stripped from echoed tokens.
    ("deploy <!channel>", "There is no environment called `!channel`."),
    ("deploy prod <@U0ALICE>", "`@U0ALICE` is not a valid image tag"),
    ("`rm -rf` prod", "I don't know the command `rm`."),
    ("*bold*_x_~s~ prod", "I don't know the command `boldxs`."),
    ("<https://evil.example|click> prod", "I don't know the command `https://evil.example|click`."),
    ("&lt;b&gt; prod", "I don't know the command `lt;bgt;`."),
    ("x" * 60, "I don't know the command `" + "x" * 40 + "…`."),
]


@pytest.mark.parametrize(("text", "message"), ERROR_CASES, ids=[c[0][:40] for c in ERROR_CASES])
def test_parse_refuses(text: str, message: str) -> None:
    with pytest.raises(UsageError) as info:
        parse(text, resolve)
    assert message in info.value.message
    assert str(info.value) == info.value.message


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("plain", "plain"),
        ("a`b*c_d~e<f>g&h", "abcdefgh"),
        ("y" * 40, "y" * 40),
        ("y" * 41, "y" * 40 + "…"),
        ("`" * 50 + "z", "z"),
        ("<@U1>" * 20, ("@U1" * 20)[:40] + "…"),
    ],
)
def test_shown(value: str, shown: str) -> None:
    assert _shown(value) == shown


def test_command_args_omit_defaults() -> None:
    assert Command(S, "prod").args() == {}
    assert Command(D, "prod", image_tag="1.2", dry_run=True).args() == {"image_tag": "1.2", "dry_run": True}
    assert Command(R, "prod", revision=3).args() == {"revision": 3}
    assert Command(HI, "prod", count=5).args() == {"count": 5}
    assert Command(DG, "prod", target="deploy/web").args() == {"target": "deploy/web"}


def test_mutating_verbs() -> None:
    assert {v for v in Verb if v.mutating} == {D, R, Verb.HARBOR_BOOTSTRAP}


def test_help_text_lists_every_usage_and_env() -> None:
    text = help_text(["stg", "prod"])
    for usage in USAGE.values():
        assert f"`{usage}`" in text
    assert "Environments: `stg`, `prod`" in text


# --- properties --------------------------------------------------------------------------------------

_WORDS = st.sampled_from(
    [
        "deploy",
        "rollback",
        "harbor-verify",
        "verify-harbor",
        "status",
        "history",
        "diagnose",
        "help",
        "prod",
        "STG",
        "staging",
        "Production",
        "moon",
        "--dry-run",
        "-x",
        "1",
        "0",
        "50",
        "51",
        "9999999",
        "10000000",
        "1.2.3",
        "deploy/web",
        "sts/db",
        "web-7d9f",
        "<!here>",
        "`x`",
        "*",
    ]
)
_COMMANDISH = st.lists(st.one_of(_WORDS, st.text(min_size=1, max_size=30)), max_size=6).map(" ".join)
ANY_TEXT = st.one_of(st.text(max_size=400), _COMMANDISH)


def _check_message(message: str) -> None:
    rest = message
    for usage in USAGE.values():
        rest = rest.replace(usage, "")
    # Nothing left that Slack would read as a mention, link or entity.
    assert not set(rest) & set("<>&"), message
    # Code spans stay balanced and every echoed token is bounded.
    assert rest.count("`") % 2 == 0, message
    for span in rest.split("`")[1::2]:
        assert len(span) <= 41, message
        if span != "_":
            assert not set(span) & set("*_~"), message


@settings(max_examples=300, deadline=None)
@given(ANY_TEXT)
def test_parse_total_and_strict(text: str) -> None:
    try:
        command = parse(text, resolve)
    except UsageError as exc:
        _check_message(exc.message)
        return
    assert isinstance(command, Command)
    if command.verb is Verb.HELP:
        assert command == Command(Verb.HELP)
        return
    assert command.env in {"stg", "prod"}
    assert command.image_tag is None or (command.verb is D and IMAGE_TAG.fullmatch(command.image_tag))
    assert command.revision is None or (
        command.verb is R and REVISION.fullmatch(str(command.revision)) and 1 <= command.revision <= 9999999
    )
    assert command.count is None or (command.verb is HI and 1 <= command.count <= 50)
    assert command.target is None or (command.verb is DG and OBJECT_REF.fullmatch(command.target))
    assert not command.dry_run or command.verb.mutating
    for value in (command.image_tag, command.target):
        assert value is None or not re.search(r"\s", value)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_shown_is_bounded_and_clean(value: str) -> None:
    shown = _shown(value)
    assert len(shown) <= 41
    assert not set(shown) & set("`*_~<>&")
    cleaned = re.sub(r"[`*_~<>&]", "", value)
    assert shown == cleaned if len(cleaned) <= 40 else shown == cleaned[:40] + "…"


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(codec="ascii"), min_size=41, max_size=120).filter(lambda s: s.strip() == s))
def test_long_unknown_verb_is_truncated(word: str) -> None:
    word = "Z" + "".join(c for c in word if not c.isspace() and c != "-")
    cleaned = re.sub(r"[`*_~<>&]", "", word)
    with pytest.raises(UsageError) as info:
        parse(word + " prod", resolve)
    if len(cleaned) > 40:
        assert cleaned not in info.value.message
        assert f"`{cleaned[:40]}…`" in info.value.message
