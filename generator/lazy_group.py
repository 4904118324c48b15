"""A click group whose commands are imported when one runs.

Owns ``LazyGroup``: commands named now ("module:attribute") and imported on use, so that
``corral serve``, which systemd may start on a connection that waits for it, pays for no
other command's imports (httpx, jinja2, the downloaders). ``--help`` imports them all.
"""

from __future__ import annotations

import importlib
from typing import Any

import click


class LazyGroup(click.Group):
    """A group whose commands may be named now and imported when one runs: ``corral serve``,
    which systemd may start on a connection that waits for it, then pays for no other
    command's imports (httpx, jinja2, the downloaders)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: command name -> "module:attribute" of the command
        self.lazy: dict[str, str] = {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            module, _, attribute = self.lazy[cmd_name].partition(":")
            command = getattr(importlib.import_module(module), attribute)
            if cmd_name not in self.commands:  # a module may add its commands itself
                self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)
