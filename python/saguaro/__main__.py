"""``python -m saguaro``: the saguaro command."""
import sys

from saguaro.cli import main

sys.exit(main())
