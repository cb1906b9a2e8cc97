"""``python -m agentic_synth.simulator --port N ...``: run the loopback mock server."""

from ._serve import main

raise SystemExit(main())
