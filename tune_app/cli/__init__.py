"""`tune-app`: the command line."""

from tune_app.cli.main import main

__all__ = ["main"]
