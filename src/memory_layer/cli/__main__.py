"""`python -m memory_layer.cli ...`, the same as the `memory-layer` console script."""

import sys

from memory_layer.cli import main

sys.exit(main())
