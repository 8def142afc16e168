"""Reading the archive with DuckDB: the delta extension loaded offline, one view per table.

The extension comes from the ``duckdb-extension-delta`` package (PyPI), built for exactly this
DuckDB version, so nothing is downloaded at run time:

    con = connect(Path("~/.cache/prgate/archive").expanduser())
    con.sql("select command_type, count(*) from commands group by all").show()
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import duckdb_extension_delta

from archive.schema import TABLES


class NoArchive(Exception):
    """The directory holds no archive table."""


def delta_extension() -> Path:
    """The delta extension file the ``duckdb-extension-delta`` package ships for this DuckDB."""
    package = Path(duckdb_extension_delta.__file__).parent
    path = package / "extensions" / f"v{duckdb.__version__}" / "delta.duckdb_extension"
    if not path.exists():
        raise NoArchive(f"duckdb-extension-delta has no extension for DuckDB {duckdb.__version__}")
    return path


def connect(root: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with views ``commands``, ``results``, ``events`` and ``refusals``
    over the Delta tables under ``root`` (each read at its latest version when queried)."""
    found = [spec for spec in TABLES if (root / spec.name / "_delta_log").is_dir()]
    if not found:
        raise NoArchive(f"no archive tables under {root}; is `prgate archive` running there?")
    con = duckdb.connect(config={"allow_unsigned_extensions": "true"})
    con.execute(f"LOAD '{delta_extension()}'")
    for spec in TABLES:
        path = str(root / spec.name).replace("'", "''")
        if spec in found:
            con.execute(f"CREATE VIEW {spec.name} AS SELECT * FROM delta_scan('{path}')")
        else:  # e.g. an archive older than the table: an empty view of the right shape
            columns = ", ".join(f"NULL AS {name}" for name in spec.schema.names)
            con.execute(f"CREATE VIEW {spec.name} AS SELECT {columns} WHERE false")
    return con
