"""The incident watcher: Kubernetes watches -> classified incidents -> one Slack thread per incident; and
helm's release records -> a notice of each revision made outside plate-bot.

- `classify` (pure): objects -> observations (what is wrong, on which workload); health per workload
- `apps` (pure): whose an object is: which environment, and which of its apps (Helm releases)
- `incidents` (pure): the incident record, its transitions, the Slack messages it still owes, the budget
- `checks` (pure): Argo CD's Procedure 4 and "what changed recently"
- `render` (pure): Slack text and blocks of roots, replies and diagnoses
- `gather`: reads the cluster and helm for a diagnosis (the watcher and `/plate diagnose|argocd`)
- `releases` (pure): helm's release records decoded, which revisions to announce, the notice
- `notices`: release records -> one deploy-channel notice per revision plate-bot did not make
- `streams`: list-then-watch threads with resume, relist on 410 Gone, and backoff
- `watcher`: the loop: leader lease, streams, incidents in Redis, rate-limited Slack effects
- `main`: `plate-bot watch` (signals, /healthz and /metrics)
"""
