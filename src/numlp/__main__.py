"""``python -m numlp``: the same as the ``numlp`` command."""

import sys

from numlp.cli import main

sys.exit(main())
