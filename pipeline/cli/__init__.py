"""`imagery-pipeline`, the command line: one module per group of commands (app, ops, status),
and one for what they print (output). The entry point is `pipeline.cli:app`."""

from pipeline.cli.app import app

__all__ = ["app"]
