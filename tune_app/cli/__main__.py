"""`python -m tune_app.cli ...`, the same as the `tune-app` console script."""

import sys

from tune_app.cli.main import main

sys.exit(main())
