"""``python -m processor``: the same as ``prgate processor``."""

from __future__ import annotations

import sys

from processor.app import main

if __name__ == "__main__":
    sys.exit(main())
