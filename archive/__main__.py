"""``python -m archive``: the same as ``prgate archive``."""

from __future__ import annotations

import sys

from archive.app import main

if __name__ == "__main__":
    sys.exit(main())
