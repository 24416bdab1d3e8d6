"""``python -m spiderweb.cli``: the same as the ``spiderweb`` console script."""

import sys

from spiderweb.cli.commands import main

sys.exit(main())
