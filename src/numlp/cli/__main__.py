"""``python -m numlp.cli``: the same as ``numlp``."""

import sys

from numlp.cli import main

sys.exit(main())
