"""The divergence guard alone: it counts bad updates in a row, resets on a clean one, and
stops with one line naming the checkpoint to resume from."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mtrl.checkpoint import save_checkpoint
from mtrl.errors import RunError
from mtrl.training.faults import DivergenceGuard


def update(skipped: int = 0, masked: int = 0) -> dict[str, torch.Tensor]:
    return {"divergence/skipped_steps": torch.tensor(skipped), "divergence/masked_tasks": torch.tensor(masked)}


def guard_for(run_dir, patience: int) -> tuple[DivergenceGuard, SimpleNamespace]:
    state = SimpleNamespace(
        faults={"skipped_steps": 0, "masked": np.zeros(2, np.int64), "env_faults": 0},
        bad_updates_in_a_row=0,
        env_steps=700,
    )
    sac = SimpleNamespace(last_masked=torch.tensor([False, True]))
    return DivergenceGuard(state, sac, patience, run_dir, ["a", "b"]), state


def test_a_clean_update_resets_the_count_and_the_totals_are_its_metrics(tmp_path):
    guard, state = guard_for(tmp_path, patience=2)
    guard.check(update(skipped=1))
    guard.check(update())
    guard.check(update(masked=1))
    assert state.bad_updates_in_a_row == 1
    assert guard.metrics() == {"divergence/skipped_steps_total": 1, "divergence/masked/a": 0, "divergence/masked/b": 1}


@pytest.mark.parametrize("with_checkpoint", [False, True])
def test_patience_bad_updates_in_a_row_stop_with_the_last_good_checkpoint(tmp_path, with_checkpoint):
    guard, _ = guard_for(tmp_path, patience=2)
    kept = "no checkpoint was saved"
    if with_checkpoint:
        kept = f"the last good checkpoint is {save_checkpoint(tmp_path, 500, {'x': torch.zeros(1)}, 1)}"
    guard.check(update(skipped=1))
    with pytest.raises(RunError, match=f"training diverged: 2 updates in a row .*step 700\\); {kept}; lower"):
        guard.check(update(masked=1))
