"""Redis restarts and outages: pending approvals survive, the bot and the workers reconnect, and while
Redis is away every command and click gets a clear answer within Slack's 3 s and changes nothing."""

from __future__ import annotations

import pytest
from rq import Worker
from rq.job import JobStatus

from core.queue import fetch_job
from core.requests import Status
from sandbox.signing import post, sign, slash_body
from tests.conftest import SIGNING_SECRET, Service
from tests.faults.conftest import PrivateRedis, ephemeral_texts, thread_text
from tests.waiting import wait_until

pytestmark = pytest.mark.faults
SLACK_DEADLINE = 3.0  # Slack drops a slash command whose HTTP answer takes longer


def slack_command(service: Service, text: str, user: str = "U0BOB") -> tuple[int, str]:
    """A slash command with Slack's own HTTP deadline: a late answer is an exception here, as in Slack."""
    body = slash_body(
        text,
        user=user,
        channel="C0DEPLOYS",
        trigger_id=f"t-{text}-{user}",
        response_url=service.slack.response_url(user, user=user),
    )
    status, _h, data = post(service.url, body, sign(SIGNING_SECRET, body), timeout=SLACK_DEADLINE)
    return status, data.decode()


def _planned(service: Service):
    def ready():
        ids = service.request_ids()
        request = service.runtime.store.get(ids[0]) if ids else None
        return request if request is not None and request.planned else None

    request = wait_until(ready, 30, "the plan job to put buttons on the card")

    # The plan job writes its last records (audit, stats, RQ's result) after the card: stop Redis only
    # once RQ has finished it and the worker is idle again, or the outage hits the worker's own
    # bookkeeping (a worker dying there is restarted by its Deployment, which this test has not).
    def plan_job_done() -> bool:
        job = fetch_job(f"{request.job_id}-plan", service.runtime.connection)
        workers = Worker.all(connection=service.runtime.connection)
        idle = all(w.get_current_job_id() is None for w in workers)
        return job.get_status(refresh=True) == JobStatus.FINISHED and idle

    wait_until(plan_job_done, 30, "the plan job to finish in RQ")
    return request


def test_redis_restart_keeps_pending_approvals_and_everyone_reconnects(
    service_on_private_redis, private_redis: PrivateRedis, workers, cluster
) -> None:
    """A pending prod approval survives a Redis restart (append-only file); while Redis is down a new
    command and an Approve click are told it is unavailable and change nothing; after the restart the
    same bot process and the same worker process (no restarts) take the approval and run the deploy."""
    service = service_on_private_redis
    worker = workers()
    assert slack_command(service, "deploy prod 1.5.0")[0] == 200
    request = _planned(service)
    assert request.status is Status.PENDING and request.plan_digest

    private_redis.stop()
    status, body = slack_command(service, "deploy prod 1.6.0", user="U0DAVE")
    assert status == 200 and "cannot reach" in body and "nothing was changed" in body
    assert service.click("plate_approve", request.id, user="U0ALICE") == 200
    wait_until(lambda: ephemeral_texts(service, "U0ALICE"), 20, "the click's answer")
    assert "cannot reach Redis" in ephemeral_texts(service, "U0ALICE")[0]

    private_redis.start()
    after = service.runtime.store.get(request.id)
    assert after == request  # the pending request came back from the append-only file as it was
    assert service.request_ids() == [request.id]  # the command sent during the outage left nothing
    assert service.runtime.store.lock_holder("prod") is None

    assert service.click("plate_approve", request.id, user="U0ALICE") == 200
    wait_until(
        lambda: " *deploy prod* — succeeded" in thread_text(service), 30, "the deploy to finish",
        diagnose=lambda: f"{thread_text(service)}\n--- worker ---\n{worker.output()[-4000:]}",
    )  # fmt: skip
    assert service.runtime.store.get(request.id).status is Status.APPROVED
    assert service.runtime.store.lock_holder("prod") is None
    assert thread_text(service).count("Approved by") == 1


def test_commands_after_a_restart_work_on_every_pooled_connection(service_on_private_redis, private_redis) -> None:
    """Connections pooled before a restart are dead afterwards; the first command on each of them must
    still work (not answer "unavailable" though Redis is back)."""
    service = service_on_private_redis
    for i in range(8):  # fill the bot's pool: one connection per waitress thread that ran a command
        assert slack_command(service, "status stg", user=f"U0W{i}")[0] == 200
    private_redis.stop()
    private_redis.start()
    answers = [slack_command(service, "status stg", user=f"U0X{i}") for i in range(8)]
    assert all(status == 200 and "cannot reach" not in body for status, body in answers), answers
    wait_until(lambda: service.runtime.queue.count == 16, 20, "sixteen status jobs")


def test_redis_frozen_answers_within_slacks_deadline(service_on_private_redis, private_redis) -> None:
    """A Redis that accepts connections but never answers (SIGSTOP: a stuck node) must not hold the ack:
    the command is answered as unavailable before Slack's 3 s deadline, and nothing is left behind."""
    import os
    import signal

    service = service_on_private_redis
    assert slack_command(service, "status stg")[0] == 200  # a pooled, healthy connection first
    before = wait_until(service.request_ids, 10, "the status request")
    os.kill(private_redis.proc.pid, signal.SIGSTOP)
    try:
        status, body = slack_command(service, "deploy stg 1.5.0", user="U0DAVE")
    finally:
        os.kill(private_redis.proc.pid, signal.SIGCONT)
    assert status == 200 and "cannot reach" in body, (status, body)
    # The commands sent to the frozen node run when it resumes (the lock is claimed with the request);
    # plate-bot undoes them as soon as Redis answers again.
    wait_until(lambda: service.runtime.store.lock_holder("stg") is None, 10, "the lock claim to be undone")
    wait_until(lambda: service.request_ids() == before, 10, "the request to be undone")


def test_redis_lost_between_ack_and_card_says_so_on_the_card(service_on_private_redis, private_redis) -> None:
    """Redis stops answering after the command was acked, while the card is being posted: the card is
    edited to say plate-bot cannot reach its queue and nothing ran (no apology for a "bug", no card
    left promising a job), and no job appears once Redis is back."""
    import os
    import signal

    service = service_on_private_redis
    service.slack.fail_next("chat.postMessage", delay=0.5)  # the card post is slow: Redis freezes meanwhile
    status, body = slack_command(service, "status stg")
    assert status == 200 and body == ""
    os.kill(private_redis.proc.pid, signal.SIGSTOP)
    try:
        wait_until(lambda: service.slack.calls_to("chat.update"), 10, "the card to be edited")
    finally:
        os.kill(private_redis.proc.pid, signal.SIGCONT)
    [card] = service.slack.messages("C0DEPLOYS")
    assert "cannot reach its queue" in card.text and "nothing was changed" in card.text
    assert service.runtime.queue.count == 0
    assert not [h for _n, h in service.slack.hooks if "went wrong" in str(h.get("text"))]
