"""Generate the Go client of prgate.v1 from protos/ with buf and the pinned Go plugins.

    .venv/bin/python sdk/go/generate.py                 # into sdk/go/gen/prgate/v1
    .venv/bin/python sdk/go/generate.py --out DIR       # into DIR/prgate/v1

The plugins (protoc-gen-go, protoc-gen-go-grpc) are installed with ``go install`` from the Go
module proxy, at the versions pinned below, into ``~/.cache/prgate/go-bin/<name>-<version>/``
(``PRGATE_GO_BIN`` to change the cache) the first time; later runs reuse them. The generated
code is not committed: sdk/go/gen holds only the module's go.mod and go.sum, so there is
nothing for ``scripts/check.py`` to compare, and scripts/generate.py (committed code) stays
the one script for committed generated files.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = Path(__file__).resolve().parent / "buf.gen.yaml"
DEFAULT_OUT = Path(__file__).resolve().parent / "gen"

# (binary, Go package to install, version). protoc-gen-go's version matches the
# google.golang.org/protobuf runtime that sdk/go/gen/go.mod requires.
PLUGINS = (
    ("protoc-gen-go", "google.golang.org/protobuf/cmd/protoc-gen-go", "v1.36.12"),
    ("protoc-gen-go-grpc", "google.golang.org/grpc/cmd/protoc-gen-go-grpc", "v1.6.2"),
)
INSTALL_TIMEOUT = 600.0


class GenerateError(RuntimeError):
    """A tool is missing or failed; the message has its exact output."""


def cache_dir() -> Path:
    configured = os.environ.get("PRGATE_GO_BIN")
    return Path(configured) if configured else Path.home() / ".cache" / "prgate" / "go-bin"


def go_binary() -> str:
    found = shutil.which("go")
    if found is None:
        raise GenerateError("`go` is not on PATH: install Go 1.26+ to generate the Go SDK")
    return found


def buf_binary() -> str:
    local = Path(sys.executable).parent / "buf"
    found = str(local) if local.exists() else shutil.which("buf")
    if found is None:
        raise GenerateError("`buf` is not installed: `pip install buf-bin` (in .venv via make)")
    return found


def ensure_plugins() -> list[Path]:
    """The directories of the pinned plugins, installing any that are missing."""
    dirs = []
    for name, package, version in PLUGINS:
        target = cache_dir() / f"{name}-{version}"
        if not (target / name).exists():
            print(f"installing {package}@{version} into {target}", file=sys.stderr, flush=True)
            env = {**os.environ, "GOBIN": str(target), "GOFLAGS": "-buildvcs=false"}
            done = subprocess.run(
                [go_binary(), "install", f"{package}@{version}"],
                env=env,
                capture_output=True,
                text=True,
                timeout=INSTALL_TIMEOUT,
                check=False,
            )
            if done.returncode != 0 or not (target / name).exists():
                raise GenerateError(
                    f"`go install {package}@{version}` failed (exit {done.returncode}):\n"
                    f"{done.stderr.strip() or done.stdout.strip()}"
                )
        dirs.append(target)
    return dirs


def generate(out: Path) -> list[Path]:
    """Write the Go code under ``out/prgate/v1``; return the files written."""
    plugin_dirs = ensure_plugins()
    package_dir = out / "prgate" / "v1"
    if package_dir.exists():
        shutil.rmtree(package_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = os.pathsep.join([*(str(d) for d in plugin_dirs), os.environ.get("PATH", "")])
    done = subprocess.run(
        [buf_binary(), "generate", "--template", str(TEMPLATE), "--output", str(out)],
        cwd=ROOT,  # buf.yaml there names the protos module
        env={**os.environ, "PATH": path},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise GenerateError(f"buf generate failed (exit {done.returncode}):\n{done.stderr.strip()}")
    written = sorted(package_dir.glob("*.go"))
    if not written:
        raise GenerateError(f"buf generate wrote no Go files under {package_dir}")
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="module root to write into")
    args = parser.parse_args()
    try:
        written = generate(args.out.resolve())
    except GenerateError as exc:
        print(f"generate.py: error: {exc}", file=sys.stderr)
        return 1
    print(f"generated {len(written)} Go files into {args.out / 'prgate' / 'v1'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
