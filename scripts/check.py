"""Static checks CI runs before the tests: generated code current, buf, ruff, mypy.

Each check prints its name; the script exits non-zero on the first failure, naming it.
"""

from __future__ import annotations

import filecmp
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def run(name: str, *cmd: str) -> None:
    print(f"== {name}: {' '.join(cmd)}", flush=True)
    result = subprocess.run(cmd, cwd=ROOT, check=False)
    if result.returncode != 0:
        sys.exit(f"check failed: {name} (exit {result.returncode})")


def check_generated() -> None:
    print("== generated code is current", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "scripts/generate.py", "--out", tmp],
            cwd=ROOT,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        fresh, committed = Path(tmp) / "prgate" / "v1", ROOT / "prgate" / "v1"
        fresh_names = {p.name for p in fresh.iterdir() if p.is_file()}
        committed_names = {
            p.name for p in committed.iterdir() if p.is_file() and p.suffix != ".pyc"
        }
        problems = sorted(fresh_names ^ committed_names)
        _, mismatch, errors = filecmp.cmpfiles(fresh, committed, sorted(fresh_names), shallow=False)
        problems += mismatch + errors
        if problems:
            sys.exit(
                "check failed: generated code differs from protos/ in "
                f"{', '.join(problems)}; run `make generate` and commit the result"
            )


def check_config_reference() -> None:
    print("== README configuration reference is current", flush=True)
    sys.path.insert(0, str(ROOT / "scripts"))
    from generate import readme_with_reference

    readme = (ROOT / "README.md").read_text()
    if readme_with_reference(readme) != readme:
        sys.exit(
            "check failed: the README's configuration reference differs from the settings"
            " classes; run `make generate` and commit the result"
        )


def previous_commit_has_protos() -> bool:
    probe = subprocess.run(
        ["git", "cat-file", "-e", "HEAD~1:buf.yaml"], cwd=ROOT, capture_output=True, check=False
    )
    return probe.returncode == 0


def main() -> None:
    check_generated()
    check_config_reference()
    buf = str(BIN / "buf")
    run("buf lint", buf, "lint")
    run("buf format", buf, "format", "--diff", "--exit-code")
    if previous_commit_has_protos():
        run("buf breaking", buf, "breaking", "--against", ".git#ref=HEAD~1")
    else:
        print("== buf breaking: no previous commit with protos to compare against")
    run("ruff check", str(BIN / "ruff"), "check", ".")
    run("ruff format", str(BIN / "ruff"), "format", "--check", ".")
    run("mypy", str(BIN / "mypy"))
    print("all static checks passed")


if __name__ == "__main__":
    main()
