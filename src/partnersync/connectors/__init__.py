"""Connectors talk to partner platforms; one sub-package per platform plus shared HTTP machinery."""
