"""plate-bot's shared core: what the Slack edge (`bot`) and the procedures (`workers`) both use.

Pure modules (requests, policy, messages, audit records, redaction, text, progress) do no I/O; the
adapters here own one outside system each: `core.slack` the Slack Web API, `core.store` plate-bot's Redis
keys, `core.queue` the RQ queue, `core.redisconn` the Redis connection. Nothing here imports `bot` or
`workers` (import-linter's layers contract, `.importlinter`).
"""
