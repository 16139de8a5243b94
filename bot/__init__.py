"""The Slack side of plate-bot: command grammar, approval rules, messages and the Bolt app."""
