"""``python -m lineardiff``: the command line (see :mod:`lineardiff.app.cli`)."""

import sys

from .app.cli import main

sys.exit(main())
