"""Run metrics: one JSON object per line in ``metrics.jsonl`` and the same scalars in
TensorBoard event files, both in the run directory."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from mtrl.atomic_write import describe
from mtrl.errors import WriteError


class Logger:
    """Appends ``{"step": ..., key: value, ...}`` records; images go to TensorBoard only.

    Resuming (``resume_from=(offset, step)``, both from the checkpoint): ``metrics.jsonl`` is
    cut back to the ``offset`` bytes it had when the checkpoint was taken, so records written
    after it (by the run that was stopped) are not duplicated, and TensorBoard is told to
    drop the stopped run's events after ``step`` (its ``purge_step``)."""

    def __init__(self, run_dir: Path, tensorboard: bool = True, resume_from: tuple[int, int] | None = None):
        self.path = Path(run_dir) / "metrics.jsonl"
        if resume_from is not None and self.path.exists():
            with open(self.path, "r+b") as f:
                f.truncate(resume_from[0])
        self._file = open(self.path, "a")
        self._writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            purge_step = resume_from[1] + 1 if resume_from is not None else None
            self._writer = SummaryWriter(log_dir=str(run_dir), purge_step=purge_step)

    def offset(self) -> int:
        """Bytes of ``metrics.jsonl`` written so far (a checkpoint stores it)."""
        return self._file.tell()

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        values = {k: float(v) for k, v in metrics.items()}
        record = {"step": int(step), **{k: (v if math.isfinite(v) else None) for k, v in values.items()}}
        try:
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()
        except OSError as e:
            raise WriteError(f"could not write '{self.path}': {describe(e)}") from None
        if self._writer is not None:
            for key, value in values.items():
                self._writer.add_scalar(key, value, step)

    def log_heatmap(self, tag: str, matrix: np.ndarray, step: int, vmin: float | None = None, vmax: float | None = None) -> None:
        """A (rows, cols) matrix as a grey-scale TensorBoard image, vmin..vmax (default: the
        matrix's range) -> black..white, each cell drawn as a square of 16x16 pixels."""
        if self._writer is None:
            return
        m = np.asarray(matrix, np.float32)
        lo = float(m.min()) if vmin is None else vmin
        span = (float(m.max()) if vmax is None else vmax) - lo
        image = np.clip((m - lo) / span, 0, 1) if span > 0 else np.zeros_like(m)
        self._writer.add_image(tag, np.kron(image, np.ones((16, 16), np.float32)), step, dataformats="HW")

    def close(self) -> None:
        self._file.close()
        if self._writer is not None:
            self._writer.close()


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The records of a run's ``metrics.jsonl`` that can be read, in file order: a trailing
    line still being written (no newline yet), lines that are not JSON, and records that are
    not an object with a finite number as ``step`` are skipped; a value that is not a
    finite number reads as None (not logged; the logger writes null for NaN). Shared by
    ``mtrl report``, ``mtrl sweep`` and the tests, so that a damaged or foreign file is read
    the same way everywhere."""
    text = (Path(run_dir) / "metrics.jsonl").read_text()
    lines = text.split("\n")[: None if text.endswith("\n") else -1]
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and _number(record.get("step")) and abs(record["step"]) < 2**53:
            records.append({k: v if _number(v) else None for k, v in record.items()})
    return records


def _number(value: Any) -> bool:
    """A finite int or float (not a bool, not NaN or infinity, not a string)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
