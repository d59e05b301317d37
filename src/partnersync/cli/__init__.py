"""The command line: ``commands`` (a thin typer shell over the service facade) and ``render``
(tables, progress, JSON) apart from it."""

from partnersync.cli.commands import app, main

__all__ = ["app", "main"]
