"""Loopback stand-ins for Slack, the Kubernetes API and helm.

They speak the real protocols (HTTP Web API, Kubernetes REST + watch, helm's argv and output) so that
`plate-bot demo`, the tests and the benchmarks drive plate-bot's real code paths on one machine.
Nothing in bot/ or workers/ imports this package except the demo command.
"""
