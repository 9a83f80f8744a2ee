"""Run one contender as a child process and measure wall time and peak RSS of its process tree.

Peak RSS is measured two ways and the larger is reported:
- sampled: every 50 ms the VmRSS of the child and all its descendants (found through
  /proc/<pid>/task/<tid>/children) is summed; the peak of that sum (misses spikes < 50 ms);
- exact per process: `os.wait4` returns the child's own rusage, whose ru_maxrss is the kernel's
  high-water mark of the child (plus any descendants it waited for, not summed with it).
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

SAMPLE_S = 0.05


@dataclass
class Measurement:
    wall_s: float
    peak_rss_mb: float
    sampled_peak_mb: float
    maxrss_mb: float
    returncode: int
    report: dict = field(default_factory=dict)  # the contender's last-line JSON, if any
    output_tail: str = ""


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return found


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def run_measured(cmd: Sequence[str], *, env: Mapping[str, str], cwd: Path,
                 log: Path) -> Measurement:
    """Run `cmd`, output to `log`; wall time from spawn to exit (interpreter start included)."""
    peak = [0]
    done = threading.Event()
    with open(log, "w") as out:
        t0 = time.monotonic()
        proc = subprocess.Popen(list(cmd), env=dict(env), cwd=cwd, stdout=out,
                                stderr=subprocess.STDOUT)

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], sum(_rss_kb(p) for p in _descendants(proc.pid)))
                done.wait(SAMPLE_S)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - t0
        done.set()
        sampler.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
    text = log.read_text(errors="replace")
    report: dict = {}
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            try:
                report = json.loads(line)
            except json.JSONDecodeError:
                pass
            break
    sampled, maxrss = peak[0] / 1024, usage.ru_maxrss / 1024
    return Measurement(wall_s=wall, peak_rss_mb=max(sampled, maxrss), sampled_peak_mb=sampled,
                       maxrss_mb=maxrss, returncode=proc.returncode, report=report,
                       output_tail="\n".join(text.strip().splitlines()[-15:]))
