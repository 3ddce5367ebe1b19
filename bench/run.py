"""``python -m bench.run --suite quick|full [--prompts FILE.jsonl] ...``: see ``--help``."""
from __future__ import annotations

import sys

from saguaro.benchmark.cli import main

if __name__ == "__main__":
    sys.exit(main())
