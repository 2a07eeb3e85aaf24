"""``python -m lineardiff``: the command line (see :mod:`lineardiff.cli`)."""

import sys

from .cli import main

sys.exit(main())
