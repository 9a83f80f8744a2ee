"""Where dask graphs run: local threads by default, a `distributed` cluster when configured.

Measured on a 2-core machine: the distributed scheduler was 2x slower than threads for this
encode-bound work, so it pays only with a real cluster (DASK_SCHEDULER_ADDRESS). Workers of such
a cluster read the inputs from the object store themselves (GDAL /vsis3/ range reads) and return
the computed windows to the run worker, which encodes the COGs (`pipeline.core.engine`): they
share no filesystem with it or with each other (DESIGN.md §5).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import dagster as dg
import dask
from dask.callbacks import Callback
from pydantic import PrivateAttr


class ProgressLog(Callback):
    """Logs a threads-scheduler computation's progress: tasks done at every `step` of the total,
    at most one line per `every_s` seconds (a small graph logs its start and end only)."""

    def __init__(self, log: Callable[[str], None], *, step: float = 0.1,
                 every_s: float = 1.0) -> None:
        super().__init__()
        self._log, self._step, self._every_s = log, step, every_s

    def _start_state(self, dsk, state) -> None:
        self._total = sum(len(state[k]) for k in ("ready", "waiting", "running", "finished"))
        self._done, self._next = 0, self._step
        self._t0 = self._last = time.monotonic()
        self._log(f"dask: computing {self._total} task(s)")

    def _posttask(self, key, result, dsk, state, worker_id) -> None:
        self._done += 1
        now = time.monotonic()
        if self._done / max(self._total, 1) < self._next or self._done >= self._total:
            return
        while self._next <= self._done / self._total:
            self._next += self._step
        if now - self._last >= self._every_s:
            self._last = now
            self._log(f"dask: {self._done / self._total:.0%} ({self._done}/{self._total} tasks, "
                      f"{now - self._t0:.1f} s)")

    def _finish(self, dsk, state, errored) -> None:
        outcome = "failed" if errored else "done"
        self._log(f"dask: {outcome}, {self._done}/{self._total} task(s) in "
                  f"{time.monotonic() - self._t0:.1f} s")


class DaskResource(dg.ConfigurableResource):
    scheduler_address: str | None = None  # DASK_SCHEDULER_ADDRESS
    num_workers: int | None = None  # threads for the local scheduler; default: CPU count
    _log: Any = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._log = context.log  # the run's log: progress lines appear in the run's logs

    @contextmanager
    def session(self) -> Iterator[str]:
        """Within this block `dask.compute` runs on the configured scheduler; yields its name."""
        if self.scheduler_address:
            from distributed import Client

            with Client(self.scheduler_address, set_as_default=True, timeout="30s") as client:
                yield f"distributed {self.scheduler_address} ({len(client.scheduler_info()['workers'])} workers)"
        else:
            workers = self.num_workers or os.cpu_count() or 1
            progress = ProgressLog(self._log.info) if self._log is not None else None
            with dask.config.set(scheduler="threads", num_workers=workers), \
                    (progress if progress is not None else _nothing()):
                yield f"threads ({workers})"


@contextmanager
def _nothing() -> Iterator[None]:
    yield
