"""The Slack app manifests (HTTP mode and Socket Mode) follow Slack's manifest schema and agree."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
HTTP = ROOT / "slack-app-manifest.yaml"
SOCKET = ROOT / "slack-app-manifest.socket.yaml"

REQUEST_URL = "https://plate-bot.example.com/slack/events"
BOT_SCOPES = {"commands", "chat:write", "usergroups:read", "users:read"}
TOP_LEVEL = {"_metadata", "display_information", "features", "oauth_config", "settings"}
SETTINGS = {
    "interactivity",
    "event_subscriptions",
    "org_deploy_enabled",
    "socket_mode_enabled",
    "token_rotation_enabled",
}


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def walk(node: object, path: str = ""):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, f"{path}[{index}]")
    else:
        yield path, node


@pytest.fixture(params=[HTTP, SOCKET], ids=["http", "socket"])
def manifest(request) -> dict:
    return load(request.param)


def test_schema_shape(manifest):
    assert set(manifest) <= TOP_LEVEL
    assert manifest["_metadata"]["major_version"] == 1
    info = manifest["display_information"]
    assert info["name"] == "plate-bot"
    assert 0 < len(info["name"]) <= 35
    assert 0 < len(info["description"]) <= 140
    assert len(info.get("long_description", "")) <= 4000
    assert info["background_color"].startswith("#") and len(info["background_color"]) == 7
    bot_user = manifest["features"]["bot_user"]
    assert bot_user["display_name"] and len(bot_user["display_name"]) <= 80
    assert isinstance(bot_user["always_online"], bool)
    assert set(manifest["settings"]) == SETTINGS
    for key in ("org_deploy_enabled", "socket_mode_enabled", "token_rotation_enabled"):
        assert isinstance(manifest["settings"][key], bool)
    assert manifest["settings"]["org_deploy_enabled"] is False
    assert manifest["settings"]["token_rotation_enabled"] is False


def test_plate_slash_command(manifest):
    (command,) = manifest["features"]["slash_commands"]
    assert command["command"] == "/plate"
    assert command["description"] and len(command["description"]) <= 2000
    assert "deploy" in command["usage_hint"] and "rollback" in command["usage_hint"]
    assert command["should_escape"] is False


def test_interactivity_app_home_and_events(manifest):
    assert manifest["settings"]["interactivity"]["is_enabled"] is True
    assert manifest["features"]["app_home"]["home_tab_enabled"] is True
    assert manifest["settings"]["event_subscriptions"]["bot_events"] == ["app_home_opened"]
    assert "user_events" not in manifest["settings"]["event_subscriptions"]


def test_exact_bot_scopes(manifest):
    scopes = manifest["oauth_config"]["scopes"]
    assert set(scopes) == {"bot"}
    assert len(scopes["bot"]) == len(set(scopes["bot"]))
    assert set(scopes["bot"]) == BOT_SCOPES


def test_http_manifest_points_at_slack_events():
    manifest = load(HTTP)
    assert manifest["settings"]["socket_mode_enabled"] is False
    assert manifest["features"]["slash_commands"][0]["url"] == REQUEST_URL
    assert manifest["settings"]["interactivity"]["request_url"] == REQUEST_URL
    assert manifest["settings"]["event_subscriptions"]["request_url"] == REQUEST_URL


def test_socket_manifest_has_no_urls():
    manifest = load(SOCKET)
    assert manifest["settings"]["socket_mode_enabled"] is True
    for path, value in walk(manifest):
        assert not path.endswith(("url", "request_url")), path
        assert not (isinstance(value, str) and value.startswith("http")), path


def test_variants_differ_only_in_transport():
    def strip(manifest: dict) -> dict:
        manifest["settings"].pop("socket_mode_enabled")
        manifest["settings"]["interactivity"].pop("request_url", None)
        manifest["settings"]["event_subscriptions"].pop("request_url", None)
        for command in manifest["features"]["slash_commands"]:
            command.pop("url", None)
        return manifest

    assert strip(load(HTTP)) == strip(load(SOCKET))


def test_every_scope_is_explained_in_a_comment():
    for path in (HTTP, SOCKET):
        lines = path.read_text().splitlines()
        for index, line in enumerate(lines):
            stripped = line.strip()
            if stripped.startswith("- ") and stripped[2:] in BOT_SCOPES:
                above = index - 1
                while (
                    above > 0
                    and lines[above - 1].strip().startswith("#")
                    and not re.match(r"#\s*[a-z:.]+:\s", lines[above].strip())
                ):
                    above -= 1
                assert lines[above].strip().startswith(f"# {stripped[2:]}:"), (path.name, stripped)
