"""Print the requirements the image installs: the package's dependencies and chosen extras.

    python3 deploy/requirements.py PYPROJECT "archive tracing" "polars pandas"

Used by deploy/Containerfile before the project's code is copied, so that layer is rebuilt
only when pyproject.toml or constraints.txt change. The third argument names distributions of
those extras to leave out (by name, case-insensitive): in the image, polars and pandas of the
``archive`` extra are only for people reading the tables from Python; no process imports them.
"""

from __future__ import annotations

import re
import sys
import tomllib


def requirements(pyproject: str, extras: list[str], leave_out: set[str]) -> list[str]:
    """The requirement strings of ``[project]`` dependencies plus ``extras``, in file order.

    Raises KeyError for an extra the project does not define.
    """
    with open(pyproject, "rb") as file:
        project = tomllib.load(file)["project"]
    wanted = list(project["dependencies"])
    for extra in extras:
        wanted += project["optional-dependencies"][extra]
    left_out = {name.lower() for name in leave_out}
    return [
        r for r in wanted if re.split(r"[\s<>=!~;\[(]", r, maxsplit=1)[0].lower() not in left_out
    ]


if __name__ == "__main__":
    pyproject, extras, leave_out = sys.argv[1], sys.argv[2], sys.argv[3]
    print("\n".join(requirements(pyproject, extras.split(), set(leave_out.split()))))
