"""Jobs run by RQ workers: each verb's procedure, reporting into the request's Slack thread."""
