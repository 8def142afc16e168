"""Optional py-spy profiles of the gateway and processor during chosen benchmark steps.

``prgate bench --profile "prgate reject"`` samples every step whose name contains the text (and
``--profile watchers`` the fan-out) with ``py-spy record --nonblocking``, writing collapsed
stacks (``profile-<step>-<component>.txt``) next to the results, plus a short summary of the
functions with the most samples in the JSON. py-spy is not a dependency: without it on PATH
the profiles are skipped, with a note.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

SAMPLE_RATE = 100
TOP = 12


class Profiler:
    """py-spy recorders attached to running processes for the length of one step."""

    def __init__(self, out_dir: Path, pattern: str) -> None:
        self.out_dir = out_dir
        self.pattern = pattern
        beside = Path(sys.executable).parent / "py-spy"  # installed into the venv
        self.binary = shutil.which("py-spy") or (str(beside) if beside.exists() else None)
        self.summaries: dict[str, Any] = {}
        self._running: list[tuple[str, Path, subprocess.Popen[bytes]]] = []

    def wants(self, name: str) -> bool:
        return bool(self.pattern) and self.pattern in name

    def start(self, name: str, pids: dict[str, int], seconds: float) -> None:
        """Start one recorder per component; they stop by themselves after ``seconds``."""
        if not self.wants(name):
            return
        if self.binary is None:
            self.summaries[name] = "py-spy not found on PATH (pip install py-spy)"
            return
        slug = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-")
        for component, pid in pids.items():
            path = self.out_dir / f"profile-{slug}-{component}.txt"
            argv = [
                self.binary, "record", "--pid", str(pid), "--duration", str(int(seconds)),
                "--rate", str(SAMPLE_RATE), "--format", "raw", "--nonblocking", "--threads",
                "--output", str(path),
            ]  # fmt: skip
            proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self._running.append((f"{name} / {component}", path, proc))

    def finish(self) -> None:
        """Wait for the recorders and summarize what they wrote."""
        for label, path, proc in self._running:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
            self.summaries[label] = summarize(path) if path.exists() else "no samples"
        self._running.clear()


def summarize(path: Path) -> dict[str, Any]:
    """Samples per thread and the frames with the most samples (self and total)."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    samples = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        samples += count
        frames = stack.split(";")
        threads[frames[0]] += count
        if len(frames) > 1:
            own[frames[-1]] += count
            for frame in set(frames[1:]):
                total[frame] += count
    return {
        "samples": samples,
        "threads": dict(threads.most_common(6)),
        "top_self": dict(own.most_common(TOP)),
        "top_total": dict(total.most_common(TOP)),
    }
