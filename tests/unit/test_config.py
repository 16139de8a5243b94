"""config.environments and config.durations: validation messages, path resolution, aliases, durations."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config.durations import format_duration, parse_duration
from config.environments import ConfigError, load_config, parse_config

BASE: dict[str, Any] = {
    "environments": {
        "stg": {"aliases": ["staging"], "namespace": "plate-stg", "release": "plate-web", "chart": "charts/web"},
        "prod": {
            "aliases": ["production"],
            "namespace": "plate-prod",
            "release": "plate-web",
            "chart": "charts/web",
            "values": ["values/prod.yaml"],
            "approvals_required": 1,
            "approvers": ["U0ALICE", "S0SRE"],
            "approval_ttl": "15m",
            "helm_timeout": "1h30m",
        },
    }
}


def data(**prod: Any) -> dict[str, Any]:
    out = copy.deepcopy(BASE)
    for key, value in prod.items():
        if value is None:
            out["environments"]["prod"].pop(key, None)
        else:
            out["environments"]["prod"][key] = value
    return out


def error(doc: object, source: str = "plate.yaml") -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(doc, source)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{source}: ")
    return message


def test_valid_config() -> None:
    cfg = parse_config(BASE)
    prod = cfg.environments["prod"]
    assert cfg.names() == ["stg", "prod"]
    assert (prod.name, prod.approval_ttl, prod.helm_timeout, prod.job_timeout) == ("prod", 900, 5400, 5400 + 300 + 300)
    assert prod.is_production and not cfg.environments["stg"].is_production
    assert prod.requesters == ["*"] and prod.harbor.pod_timeout == 120
    assert prod.chart == "charts/web"  # no base_dir: left as written


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (data(approval_ttl="15x"), "plate.yaml: environments.prod.approval_ttl: '15x' is not a duration like 30s"),
        (data(helm_timeout="0s"), "plate.yaml: environments.prod.helm_timeout: a duration must be positive"),
        (data(helm_timeout=True), "plate.yaml: environments.prod.helm_timeout: a duration like 30s"),
        (data(namespace="Plate_Prod"), "plate.yaml: environments.prod.namespace: String should match pattern"),
        (data(release="Web"), "plate.yaml: environments.prod.release: String should match pattern"),
        (data(colour="blue"), "plate.yaml: environments.prod.colour: Extra inputs are not permitted"),
        (
            data(approvers=[]),
            "plate.yaml: environments.prod: approvals_required > 0 needs at least one entry in approvers",
        ),
        (
            data(approvers=None),
            "plate.yaml: environments.prod: approvals_required > 0 needs at least one entry in approvers",
        ),
        (
            data(approvals_required=6),
            "plate.yaml: environments.prod.approvals_required: Input should be less than or equal to 5",
        ),
        (data(approvers=["alice"]), "plate.yaml: environments.prod.approvers.0: String should match pattern"),
        (data(channels=["#deploys"]), "plate.yaml: environments.prod.channels.0: String should match pattern"),
        (data(namespace=None), "plate.yaml: environments.prod.namespace: Field required"),
        (data(aliases=["Prod"]), "plate.yaml: environments.prod.aliases.0: String should match pattern"),
        (data(aliases=["staging"]), "plate.yaml: (top level): name or alias 'staging' is used by both stg and prod"),
        (data(aliases=["stg"]), "name or alias 'stg' is used by both stg and prod"),
        (data(harbor={"pod_timeout": "2x"}), "plate.yaml: environments.prod.harbor.pod_timeout: '2x' is not"),
        (data(harbor={"registry": "r", "extra": 1}), "plate.yaml: environments.prod.harbor.extra: Extra inputs"),
        ({"environments": {}}, "plate.yaml: environments: at least one environment is required"),
        ({}, "plate.yaml: environments: Field required"),
        ({"environments": BASE["environments"], "foo": 1}, "plate.yaml: foo: Extra inputs are not permitted"),
        ({"environments": {"Prod": BASE["environments"]["prod"]}}, "plate.yaml: environments.Prod.[key]: String"),
        ([], "plate.yaml: (top level): Input should be a valid dictionary"),
        (None, "plate.yaml: (top level): Input should be a valid dictionary"),
    ],
)
def test_parse_config_errors(doc: object, expected: str) -> None:
    assert expected in error(doc)


def test_error_count_is_reported() -> None:
    message = error(data(namespace="Bad_NS", release="Bad_Release", approval_ttl="15x"))
    assert message.endswith("(and 2 more)")


def test_relative_paths_resolved_against_base_dir(tmp_path: Path) -> None:
    cfg = parse_config(data(values=["values/prod.yaml", "/abs/v.yaml"]), "x", tmp_path / "conf")
    prod = cfg.environments["prod"]
    assert prod.chart == str((tmp_path / "conf" / "charts" / "web").resolve())
    assert prod.values == [(tmp_path / "conf" / "values" / "prod.yaml").resolve(), Path("/abs/v.yaml")]
    assert Path(cfg.environments["stg"].chart).is_absolute()
    parent = parse_config(data(chart="../charts/web"), "x", tmp_path / "conf").environments["prod"].chart
    assert parent == str((tmp_path / "charts" / "web").resolve())


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("prod", "prod"),
        ("PROD", "prod"),
        ("Production", "prod"),
        ("staging", "stg"),
        ("STG", "stg"),
        ("moon", None),
        ("", None),
        ("prod ", None),
        ("plate-prod", None),
    ],
)
def test_resolve_case_insensitive(name: str, expected: str | None) -> None:
    env = parse_config(BASE).resolve(name)
    assert (env.name if env else None) == expected


# --- load_config: files -------------------------------------------------------------------------------


def test_load_config_ok(tmp_path: Path) -> None:
    path = tmp_path / "plate.yaml"
    path.write_text(
        "environments:\n  prod:\n    aliases: [production]\n    namespace: plate-prod\n"
        "    release: plate-web\n    chart: ../charts/web\n    approval_ttl: 30s\n",
        encoding="utf-8",
    )
    cfg = load_config(path)
    assert cfg.environments["prod"].chart == str((tmp_path.parent / "charts" / "web").resolve())
    assert cfg.environments["prod"].approval_ttl == 30


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("environments:\n  prod: [\n    a: b\n", ": line 4: not valid YAML"),
        ("environments:\n\tprod: {}\n", ": line 2: not valid YAML"),
        ("- a\n- b\n", ": the environments file must be a mapping with an `environments:` key"),
        ("just a string\n", ": the environments file must be a mapping"),
        ("", ": the environments file must be a mapping"),
        (
            "environments:\n  prod:\n    namespace: Plate_Prod\n    release: web\n    chart: c\n",
            ": environments.prod.namespace: String should match pattern",
        ),
        (
            "environments:\n  prod:\n    namespace: p\n    release: web\n    chart: c\n    helm_timeout: 15x\n",
            ": environments.prod.helm_timeout: '15x' is not a duration like 30s, 15m or 1h",
        ),
    ],
)
def test_load_config_errors(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "plate.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}") and expected in message and "\n" not in message


def test_load_config_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: cannot read the environments file: No such file or directory"


def test_example_config_loads() -> None:
    path = Path(__file__).resolve().parents[2] / "config" / "plate.example.yaml"
    cfg = load_config(path)
    assert cfg.resolve("PRODUCTION").name == "prod"  # type: ignore[union-attr]
    assert cfg.environments["prod"].approval_ttl == 900


# --- durations ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("30s", 30),
        ("15m", 900),
        ("1h", 3600),
        ("1h30m", 5400),
        ("1d", 86400),
        ("2d3h4m5s", 183845),
        (" 45s ", 45),
        ("90", 90),
        (" 7 ", 7),
        (120, 120),
        ("1h1h", 7200),
    ],
)
def test_parse_duration_ok(value: object, seconds: int) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("15x", "'15x' is not a duration like 30s, 15m or 1h"),
        ("1.5h", "is not a duration"),
        ("30S", "is not a duration"),
        ("h", "is not a duration"),
        ("1h 30m", "is not a duration"),
        ("-5", "is not a duration"),
        ("", "is not a duration"),
        (1.5, "1.5 is not a duration"),
        (None, "None is not a duration"),
        (True, "a duration like 30s"),
        (False, "a duration like 30s"),
        (0, "must be positive"),
        (-1, "must be positive"),
        ("0", "must be positive"),
        ("0s0m", "must be positive"),
    ],
)
def test_parse_duration_invalid(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        parse_duration(value)


def test_parse_duration_superscript_digit_message() -> None:
    with pytest.raises(ValueError, match="is not a duration like 30s"):
        parse_duration("²")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (1, "1s"),
        (42, "42s"),
        (60, "1m"),
        (900, "15m"),
        (5400, "1h30m"),
        (3601, "1h1s"),
        (86400, "1d"),
        (90061, "1d1h1m1s"),
        (59.9, "59s"),
        (-5, "0s"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 10**8))
def test_duration_round_trip(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == seconds
