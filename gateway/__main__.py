"""``python -m gateway``: run a gateway in the foreground."""

from gateway.server import main

raise SystemExit(main())
