"""corral.generator: the config contract.

Pydantic settings, YAML, JSON Schema and systemd units; nothing of HTTP or processes.
"""
