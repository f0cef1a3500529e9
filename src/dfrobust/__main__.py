"""``python -m dfrobust`` runs the CLI."""

import sys

from dfrobust.cli import main

sys.exit(main())
