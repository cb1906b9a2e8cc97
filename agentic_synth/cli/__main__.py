"""``python -m agentic_synth.cli``: the same as the ``synth`` script."""

import sys

from ._main import main

sys.exit(main())
