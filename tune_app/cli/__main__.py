"""`python -m tune_app.cli ...`, the same as the `tune-app` console script."""

import sys

from tune_app.cli.main import run

sys.exit(run())
