"""The golden runs: every agent, and MT-SAC with each multi-task lever, on the toy suite at a
fixed seed in float32, short enough for CI. ``tests/golden/<case>.jsonl`` holds the metrics
they logged at the commit before the architecture redesign (issue 24; ``paco``,
``task-weights-famo`` and ``uncertainty-critic-only`` since issue 22 gave PaCo's masking, FAMO
and uncertainty weighting their reference code's behaviour); tests/test_golden.py reruns them
and compares them (to 1e-3 up to the first checkpoint: why in test_golden.py). Regenerate
only for a deliberate change of behaviour: ``python tests/golden_cases.py`` (and say why in
the commit)."""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import torch

GOLDEN = Path(__file__).parent / "golden"

BASE = {
    "seed": 3,
    "env": {"suite": "toy", "num_tasks": 3},
    "agent": {"name": "mtsac", "hidden_sizes": [32, 32]},
    "sac": {"precision": "float32"},
    "train": {
        "total_steps": 1_200,
        "warmup_steps": 300,
        "batch_per_task": 16,
        "buffer_per_task": 5_000,
        "eval_every": 600,
        "eval_episodes": 2,
        "final_eval_episodes": 2,
        "log_every": 150,
        "checkpoint_every": 600,
        "progress": False,
        "threads": 1,
    },
    "conflict": {"monitor_every": 100},
}

CASES: dict[str, dict] = {
    "mtsac": {},
    "mhsac": {"agent": {"name": "mhsac"}},
    "care": {
        "agent": {
            "name": "care",
            "num_encoders": 3,
            "encoder_hidden": [16],
            "encoder_dim": 8,
            "context_hidden": [16],
            "task_embedding": "one_hot",
            "attention": "dot",  # the state-dependent attention (the default, mlp, is the next case's)
        }
    },
    "care-mlp-detached": {
        "agent": {
            "name": "care",
            "num_encoders": 3,
            "encoder_hidden": [16],
            "encoder_dim": 8,
            "context_hidden": [16],
            "task_embedding": "one_hot",
            "attention": "mlp",
            "actor_encoder": "critic_detached",
        },
        "sac": {"encoder_tau": 0.05},
    },
    "softmod": {"agent": {"name": "softmod", "base_hidden": [32, 32], "module_hidden": 16, "routing_hidden": 16}},
    "moore": {"agent": {"name": "moore", "num_experts": 2, "expert_hidden": [32], "expert_dim": 32}},
    "paco": {  # PaCo's masking as its reference (configs/*-paco.yaml), at a threshold the toy suite reaches
        "agent": {"name": "paco", "hidden_sizes": [32, 32], "num_sets": 2},
        "sac": {
            "task_loss_threshold": 3.0,
            "task_loss_mask": "total",
            "task_reset": "convex",
            "log_alpha_min": -10.0,
            "log_alpha_max": 0.0,
        },
        "train": {"divergence_patience": 100_000},
    },
    "brc": {
        "agent": {"name": "brc", "critic_width": 64, "actor_width": 32, "embedding_dim": 8, "bins": 21},
        # BRC's recipe (configs/mt10-brc.yaml): one temperature, Adam beta1 0.5 for it, no clipping
        "sac": {
            "reward_scaling": "returns",
            "weight_decay": 1e-4,
            "temperature": "shared",
            "alpha_beta1": 0.5,
            "max_grad_norm": None,
        },
    },
    "softshare": {"agent": {"name": "softshare", "hidden_sizes": [32, 32]}},
    "reward-scaling": {"sac": {"reward_scaling": "returns", "initial_alpha": 0.1}},
    "task-weights-famo": {"sac": {"task_weights": True, "task_weighting": "famo"}},
    "uncertainty-critic-only": {"sac": {"task_weighting": "uncertainty", "task_weighting_actor": False}},
    "inverse-size-lp": {
        "sac": {"task_weighting": "inverse_size"},
        "scheduler": {"name": "learning_progress"},
        "train": {"batch_allocation": "scheduler"},
    },
    "pcgrad": {"conflict": {"method": "pcgrad"}},
    "nstep-wide-ln": {
        "sac": {"n_step": 3},
        "agent": {"critic_hidden_sizes": [48, 48], "critic_layer_norm": True},
        "train": {"updates_per_step": 2},
    },
}


def case_config(name: str, run_dir: Path):
    from mtrl.config import from_dict, merge

    return from_dict(merge(merge(BASE, CASES[name]), {"run": {"name": name, "dir": str(run_dir)}}))


def run_case(name: str, workdir: Path) -> list[dict]:
    """Train the case in ``workdir/<name>`` and return its metrics without wall-clock fields."""
    from mtrl.training.logger import read_metrics, without_timing
    from mtrl.training.trainer import train

    run_dir = workdir / name
    train(case_config(name, run_dir))
    return without_timing(read_metrics(run_dir))


def main() -> None:
    from mtrl import hardware

    hardware.cpu_flags = lambda *args: set()  # as the tests do: nothing hardware-dependent
    torch.set_num_threads(1)
    GOLDEN.mkdir(exist_ok=True)
    names = sys.argv[1:] or list(CASES)
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            records = run_case(name, Path(tmp))
            (GOLDEN / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
            print(name, len(records), "records")
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
