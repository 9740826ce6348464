"""Inference does not import the training loop: mtrl.load, mtrl eval, exports, teachers
and mtrl single-task build their agents with mtrl.builders."""

from __future__ import annotations

import subprocess
import sys

INFERENCE = [
    "mtrl.inference.policy",
    "mtrl.inference.evaluate_run",
    "mtrl.inference.export",
    "mtrl.learner.distillation",
    "mtrl.training.single_task",
    "mtrl.builders",
]


def test_inference_modules_do_not_import_the_trainer():
    code = f"import sys\nfor m in {INFERENCE!r}: __import__(m)\nprint('mtrl.training.trainer' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
