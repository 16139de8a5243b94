"""`/plate history` end to end: helm history (the fake helm's release records) joined with plate-bot's own
record of its jobs, through the running service and a real worker."""

from __future__ import annotations

import re

from sandbox.helm import set_behaviour
from tests.conftest import Service
from tests.integration.releases import (
    approve_and_run,
    by_hand,
    command_and_check,
    sim_fixture,  # noqa: F401 - the `sim` fixture
    thread,
)


def history_reply(service: Service, text: str) -> str:
    request = command_and_check(service, text)
    return thread(service, request)


def test_history_joins_helm_with_plate_bots_record(service: Service, sim, helm_bin) -> None:
    by_hand(helm_bin, "stg", "1.4.0")  # revision 1: someone ran helm themselves
    sim.settle()
    deploy = command_and_check(service, "deploy stg 1.5.0", user="U0DAVE")  # revision 2, no approval needed
    sim.settle()
    text = history_reply(service, "history stg")
    assert "history stg* — succeeded" in text, text
    assert "*History of `plate-web` in `stg`* (newest 2 of 2 kept by helm)" in text
    rows = text.split("• ")[1:]
    assert rows[0].startswith("*2* deployed (live) · plate-web-1.4.0 · app 1.4.0")
    assert "plate-bot deploy 1.5.0, requested by <@U0DAVE>, no approval needed" in rows[0]
    assert re.search(r"job succeeded in \d+\.\ds", rows[0]), rows[0]
    link = f"https://fake.slack.com/archives/C0DEPLOYS/p{deploy.message_ts.replace('.', '')}"
    assert f"<{link}|thread>" in rows[0]
    assert rows[1].startswith("*1* superseded")
    assert 'outside plate-bot · helm: "Install complete"' in rows[1]
    assert "2 revision(s) of `plate-web`: 1 by plate-bot, 1 outside it" in text


def test_history_names_approvers_digest_and_the_revisions_of_a_failed_deploy(
    service: Service, sim, helm_bin, helm_state
) -> None:
    """A prod deploy that fails and is rolled back by `--atomic` makes two revisions; both belong to the
    plate-bot job that made them, which failed. `history prod 2` shows just those two."""
    by_hand(helm_bin, "prod", "1.4.0")
    sim.settle()
    set_behaviour(helm_state, upgrade="atomic-rollback", timeout_seconds=0.2)
    deploy = approve_and_run(service, command_and_check(service, "deploy prod 1.6.0"), approver="U0ALICE")
    set_behaviour(helm_state, upgrade=None, timeout_seconds=None)
    text = history_reply(service, "history prod 2")
    assert "(newest 2 of 3 kept by helm)" in text, text
    rows = text.split("• ")[1:]
    assert [row.split(" ·")[0] for row in rows] == ["*3* deployed (live)", "*2* failed"]
    for row in rows:
        assert "plate-bot deploy 1.6.0, requested by <@U0BOB>, approved by <@U0ALICE>" in row
        assert f"plan `{deploy.plan_digest[:12]}`" in row and "job failed in" in row
    assert 'helm: "Rollback to 1"' in rows[0]
    assert 'helm: "Upgrade "plate-web" failed: context deadline exceeded"' in rows[1].replace("&quot;", '"')
    assert "*1*" not in text


def test_history_of_a_release_never_installed(service: Service) -> None:
    text = history_reply(service, "history stg")
    assert "the release is not installed" in text and "history stg* — succeeded" in text
