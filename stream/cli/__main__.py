"""``python -m stream.cli``: the `signals` command (the demo and tests start workers so)."""

import sys

from stream.cli.main import main

sys.exit(main())
