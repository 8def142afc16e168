"""``python -m prgate.cli``: the same as ``prgate``."""

from prgate.cli.entry import main

raise SystemExit(main())
