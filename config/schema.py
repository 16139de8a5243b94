"""The chart's values.schema.json speaks the app's configuration: its `config` part and `logLevel` are
generated from the pydantic models (`PlateConfig`, `Settings.log_level`), never written by hand.

    python -m config.schema --write   # after changing config/*.py
    python -m config.schema --check   # scripts/test: fails when the committed schema differs

Helm validates values with a draft-07 JSON-schema validator: definitions are inlined (no `$ref`),
`format` is dropped (pydantic's `path` is no format a validator knows, and `date-time` would demand
an offset the app does not), titles, `default: null` and the models' docstrings go (the fields'
descriptions stay), and a map with a key pattern refuses other keys, as pydantic does.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from config.environments import PlateConfig
from config.settings import Settings

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "helm-chart" / "values.schema.json"
_DROPPED = ("title", "format")


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    """`node` with every `#/$defs/…` reference replaced by its definition (the models are not recursive)."""
    if isinstance(node, list):
        return [_inline(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "patternProperties" in node and "additionalProperties" not in node:
        # pydantic's dict with a key pattern: keys must match it (pydantic refuses others).
        node = {**node, "additionalProperties": False}
    if "$ref" in node:
        name = node["$ref"].removeprefix("#/$defs/")
        rest = {k: v for k, v in node.items() if k != "$ref"}
        return _inline({**defs[name], **rest}, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED and not isinstance(value, dict):
            continue  # a property named `title`/`format` is a dict, and stays
        if key == "default" and (value is None or isinstance(value, dict)):
            continue  # nothing to say, or a whole model's defaults (its fields say them one by one)
        if key in ("properties", "patternProperties"):
            out[key] = {name: _inline(sub, defs) for name, sub in value.items()}
        elif key == "description" and isinstance(value, str):
            out[key] = " ".join(value.split())
        else:
            out[key] = _inline(value, defs)
    return out


def config_schema() -> dict[str, Any]:
    """The JSON schema of the environments file (the chart's `config` value), self-contained."""
    schema = PlateConfig.model_json_schema()
    # A model's docstring is written for its code; the fields' descriptions are written for the file.
    defs = {name: {k: v for k, v in d.items() if k != "description"} for name, d in schema.pop("$defs", {}).items()}
    schema.pop("description", None)
    inlined: dict[str, Any] = _inline(schema, defs)
    inlined["description"] = "The environments file (docs/configuration.md), generated from config/environments.py"
    return inlined


def log_levels() -> list[str]:
    """The levels LOG_LEVEL may name (config/settings.py), from its pattern `^(A|B|…)$`."""
    pattern = Settings.model_json_schema()["properties"]["log_level"]["pattern"]
    return str(pattern).removeprefix("^(").removesuffix(")$").split("|")


def generated(values_schema: dict[str, Any]) -> dict[str, Any]:
    """`values_schema` with its generated parts replaced."""
    out = dict(values_schema)
    properties = dict(out["properties"])
    properties["config"] = config_schema()
    properties["logLevel"] = {"type": "string", "enum": log_levels(), "description": "LOG_LEVEL of every process"}
    out["properties"] = properties
    return out


def dump(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def check(path: Path = SCHEMA_PATH) -> list[str]:
    """What differs between the schema at `path` and the generated one ([] when they agree)."""
    current = json.loads(path.read_text(encoding="utf-8"))
    wanted = generated(current)
    problems = [
        f"{path}: properties.{key} differs from the models (run: python -m config.schema --write)"
        for key in ("config", "logLevel")
        if current["properties"].get(key) != wanted["properties"][key]
    ]
    if not problems and path.read_text(encoding="utf-8") != dump(wanted):
        problems.append(f"{path}: not formatted as config.schema writes it (run: python -m config.schema --write)")
    return problems


def write(path: Path = SCHEMA_PATH) -> bool:
    """Regenerate the schema at `path`; True when it changed."""
    text = path.read_text(encoding="utf-8")
    new = dump(generated(json.loads(text)))
    if new != text:
        path.write_text(new, encoding="utf-8")
    return new != text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m config.schema", description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="regenerate the chart's values.schema.json")
    mode.add_argument("--check", action="store_true", help="fail when the committed schema differs")
    parser.add_argument("--path", type=Path, default=SCHEMA_PATH)
    args = parser.parse_args(argv)
    if args.write:
        print(f"{args.path}: {'updated' if write(args.path) else 'unchanged'}")
        return 0
    problems = check(args.path)
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
