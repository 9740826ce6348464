"""Behaviour kept through refactors: every agent, and MT-SAC with each lever, logs exactly the
metrics it logged at the commit before the architecture redesign (tests/golden_cases.py)."""

from __future__ import annotations

import json
import math

import pytest
from golden_cases import CASES, GOLDEN, run_case


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_toy_run_logs_its_golden_metrics(name, tmp_path):
    golden = [json.loads(line) for line in (GOLDEN / f"{name}.jsonl").read_text().splitlines()]
    logged = run_case(name, tmp_path)
    assert [r["step"] for r in logged] == [r["step"] for r in golden]
    for got, want in zip(logged, golden):
        assert sorted(got) == sorted(want), f"step {want['step']}: keys differ {set(got) ^ set(want)}"
        differ = {k: (got[k], want[k]) for k in want if not _same(got[k], want[k])}
        assert not differ, f"{name} at step {want['step']}: {dict(list(differ.items())[:5])}"


def test_a_checkpoint_written_before_the_redesign_resumes_to_the_golden_metrics(tmp_path):
    """tests/golden/mtsac-run: the "mtsac" case with its replay saved (and a smaller buffer,
    which changes nothing logged), stopped after its step-600 checkpoint, as written before the
    redesign. Resumed today, it must log what the uninterrupted golden run logged."""
    import shutil

    from mtrl.config import load_config
    from mtrl.training.logger import read_metrics, without_timing
    from mtrl.training.trainer import train

    run_dir = tmp_path / "mtsac-run"
    shutil.copytree(GOLDEN / "mtsac-run", run_dir)
    train(load_config(str(run_dir / "config.yaml"), ["resume=true", f"run.dir={run_dir}"]))
    golden = [json.loads(line) for line in (GOLDEN / "mtsac.jsonl").read_text().splitlines()]
    logged = without_timing(read_metrics(run_dir))
    assert logged == golden
