"""Settings from the environment and the environments file (pure: pydantic + YAML, no I/O beyond reading it)."""
