"""Run metrics, written to every sink of a :class:`Logger`: one JSON object per line in
``metrics.jsonl`` (always; the report, sweeps and resumes read it), the same scalars in
TensorBoard event files, both in the run directory, and, with ``run.wandb=true``, a
Weights & Biases run (the ``wandb`` extra). A sink is anything with the three methods of
:class:`MetricSink`."""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from mtrl.atomic_write import describe
from mtrl.errors import ConfigError, WriteError, install_hint

if TYPE_CHECKING:
    from mtrl.config import Config, RunConfig


class MetricSink(Protocol):
    """Where a run's records go. ``values`` are floats (NaN and inf included); ``image`` is a
    (H, W) grey-scale image in [0, 1]."""

    def scalars(self, step: int, values: dict[str, float]) -> None: ...

    def image(self, tag: str, image: np.ndarray, step: int) -> None: ...

    def close(self) -> None: ...


class JsonlSink:
    """``metrics.jsonl``: ``{"step": ..., key: value, ...}`` per record, non-finite values as
    null. ``resume_offset``: the file is cut back to that many bytes first (see :class:`Logger`)."""

    def __init__(self, run_dir: Path, resume_offset: int | None = None):
        self.path = Path(run_dir) / "metrics.jsonl"
        if resume_offset is not None and self.path.exists():
            with open(self.path, "r+b") as f:
                f.truncate(resume_offset)
        self._file = open(self.path, "a")

    def offset(self) -> int:
        """Bytes written so far (a checkpoint stores it)."""
        return self._file.tell()

    def scalars(self, step: int, values: dict[str, float]) -> None:
        record = {"step": int(step), **{k: (v if math.isfinite(v) else None) for k, v in values.items()}}
        try:
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()
        except OSError as e:
            raise WriteError(f"could not write '{self.path}': {describe(e)}") from None

    def image(self, tag: str, image: np.ndarray, step: int) -> None:
        pass  # images go to the sinks that show them

    def close(self) -> None:
        self._file.close()


class TensorBoardSink:
    """TensorBoard event files in the run directory; ``purge_step`` drops a stopped run's
    events from that step on (a resume)."""

    def __init__(self, run_dir: Path, purge_step: int | None = None):
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(log_dir=str(run_dir), purge_step=purge_step)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        for key, value in values.items():
            self._writer.add_scalar(key, value, step)

    def image(self, tag: str, image: np.ndarray, step: int) -> None:
        self._writer.add_image(tag, image, step, dataformats="HW")

    def close(self) -> None:
        self._writer.close()


class WandbSink:
    """A Weights & Biases run (``run.wandb=true``) in project ``run.wandb_project``, its
    files under ``<run dir>/wandb``. ``run.wandb_mode``: ``online``, ``offline`` (synced
    later with ``wandb sync``) or ``disabled``; empty: W&B's own default (``WANDB_MODE``,
    else online). A resumed run continues the W&B run of its run directory (its id is kept
    in ``<run dir>/wandb/run_id``); W&B drops the records of steps it already has."""

    def __init__(self, cfg: Config, run_dir: Path):
        import wandb

        id_file = Path(run_dir) / "wandb" / "run_id"
        id_file.parent.mkdir(parents=True, exist_ok=True)
        run_id = id_file.read_text().strip() if id_file.is_file() else secrets.token_hex(4)
        id_file.write_text(run_id)
        from mtrl.config import to_dict

        self._wandb = wandb
        try:
            self.run = wandb.init(
                project=cfg.run.wandb_project,
                name=Path(run_dir).name,
                id=run_id,
                resume="allow",
                dir=str(run_dir),
                mode=cfg.run.wandb_mode or None,
                config=to_dict(cfg),
                settings=wandb.Settings(silent=True, console="off"),
            )
        except Exception as e:  # no login, no network, a bad project: wandb's own kinds
            why = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise ConfigError(
                f"run.wandb=true: W&B could not start a run ({why}); run `wandb login`, or set "
                f"run.wandb_mode=offline and `wandb sync` later; resume with: mtrl train "
                f"{Path(run_dir) / 'config.yaml'} resume=true"
            ) from None

    def scalars(self, step: int, values: dict[str, float]) -> None:
        self.run.log(values, step=step)

    def image(self, tag: str, image: np.ndarray, step: int) -> None:
        self.run.log({tag: self._wandb.Image((image * 255).astype(np.uint8))}, step=step)

    def close(self) -> None:
        self.run.finish()


def check_sinks(run: RunConfig) -> None:
    """One-line :class:`ConfigError` when a requested sink's package is not installed."""
    if run.wandb:
        try:
            import wandb  # noqa: F401
        except ImportError:
            hint = install_hint("wandb")
            raise ConfigError(f"run.wandb=true needs Weights & Biases; install it with: {hint}") from None


def sinks_for(cfg: Config, run_dir: Path) -> list[MetricSink]:
    """The optional sinks ``cfg.run`` asks for (metrics.jsonl and TensorBoard are always on)."""
    return [WandbSink(cfg, run_dir)] if cfg.run.wandb else []


class Logger:
    """Writes each record to ``metrics.jsonl``, TensorBoard (``tensorboard=True``) and the
    extra ``sinks``; images go to the sinks that show them.

    Resuming (``resume_from=(offset, step)``, both from the checkpoint): ``metrics.jsonl`` is
    cut back to the ``offset`` bytes it had when the checkpoint was taken, so records written
    after it (by the run that was stopped) are not duplicated, and TensorBoard is told to
    drop the stopped run's events after ``step`` (its ``purge_step``)."""

    def __init__(
        self,
        run_dir: Path,
        tensorboard: bool = True,
        resume_from: tuple[int, int] | None = None,
        sinks: Sequence[MetricSink] = (),
    ):
        self._jsonl = JsonlSink(run_dir, resume_from[0] if resume_from is not None else None)
        self.path = self._jsonl.path
        self.sinks: list[MetricSink] = [self._jsonl]
        if tensorboard:
            self.sinks.append(TensorBoardSink(run_dir, resume_from[1] + 1 if resume_from is not None else None))
        self.sinks.extend(sinks)

    def offset(self) -> int:
        """Bytes of ``metrics.jsonl`` written so far (a checkpoint stores it)."""
        return self._jsonl.offset()

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        values = {k: float(v) for k, v in metrics.items()}
        for sink in self.sinks:
            sink.scalars(step, values)

    def log_heatmap(
        self, tag: str, matrix: np.ndarray, step: int, vmin: float | None = None, vmax: float | None = None
    ) -> None:
        """A (rows, cols) matrix as a grey-scale image, vmin..vmax (default: the matrix's
        range) -> black..white, each cell drawn as a square of 16x16 pixels."""
        m = np.asarray(matrix, np.float32)
        lo = float(m.min()) if vmin is None else vmin
        span = (float(m.max()) if vmax is None else vmax) - lo
        image = np.clip((m - lo) / span, 0, 1) if span > 0 else np.zeros_like(m)
        image = np.kron(image, np.ones((16, 16), np.float32))
        for sink in self.sinks:
            sink.image(tag, image, step)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()


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


TIMING_KEYS = ("train/steps_per_second", "eval/seconds")
"""Wall-clock figures: they differ between two runs of the same config, everything else must not."""


def without_timing(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records with :data:`TIMING_KEYS` left out: what two runs of one config must share."""
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in records]


def _number(value: Any) -> bool:
    """A finite int or float (not a bool, not NaN or infinity, not a string)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
