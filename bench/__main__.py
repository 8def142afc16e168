"""``python -m bench`` inside a source checkout: the same as ``prgate bench``."""

from __future__ import annotations

import sys

from bench.run import main

if __name__ == "__main__":
    sys.exit(main())
