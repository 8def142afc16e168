"""``python -m prgate.cli``: the same as ``prgate``."""

from prgate.cli.main import main

raise SystemExit(main())
