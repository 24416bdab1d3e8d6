"""``python -m tests.chaos``: one chaos run (see ``harness.py``); the last line is the run's summary."""

import sys

from tests.chaos.harness import main

sys.exit(main())
