"""The ``prgate`` command line: one module per command group."""
