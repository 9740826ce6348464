"""Run metrics: one JSON object per line in ``metrics.jsonl`` and the same scalars in
TensorBoard event files, both in the run directory."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np


class Logger:
    """Appends ``{"step": ..., key: value, ...}`` records; images go to TensorBoard only."""

    def __init__(self, run_dir: Path, tensorboard: bool = True):
        self.path = Path(run_dir) / "metrics.jsonl"
        self._file = open(self.path, "a")
        self._writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(run_dir))

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        values = {k: float(v) for k, v in metrics.items()}
        record = {"step": int(step), **{k: (v if math.isfinite(v) else None) for k, v in values.items()}}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
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
    """All records of a run's ``metrics.jsonl``."""
    with open(Path(run_dir) / "metrics.jsonl") as f:
        return [json.loads(line) for line in f if line.strip()]
