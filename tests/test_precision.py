"""``sac.precision=bfloat16``: the update's gradients differ from float32 by far less than
one batch differs from the next, Q values keep float32 resolution where they are large,
and a bad precision name is a one-line config error."""

import numpy as np
import pytest
import torch
import yaml
from torch.nn.functional import cosine_similarity

from mtrl.config import ConfigError, SACConfig, load_config
from mtrl.hardware import resolve_precision
from mtrl.learner.agent import EnvSpec
from mtrl.learner.replay import MultiTaskReplay
from mtrl.learner.sac import SAC
from mtrl.registry import get
from mtrl.training.trainer import train

from conftest import TOY_FAST, make_config

TASKS = 10


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    spec = EnvSpec(39, 4, tuple(f"t{i}" for i in range(TASKS)), tuple(["x"] * TASKS), "test")
    sac = SAC(get("agent", "mtsac").target(load_config("mt10-mtsac").agent, spec), TASKS, 4, SACConfig())
    with torch.no_grad():  # Q values of a trained Meta-World critic: hundreds
        for critic in (sac.agent.critic, sac.target["critic"]):
            critic.net.head.bias += 300.0
    replay = MultiTaskReplay(TASKS, 500, 39, 4)
    rng = np.random.default_rng(0)
    for _ in range(100):
        replay.add(
            np.arange(TASKS),
            rng.normal(size=(TASKS, 39)),
            rng.uniform(-1, 1, (TASKS, 4)),
            rng.uniform(0, 10, TASKS),
            rng.normal(size=(TASKS, 39)),
            np.zeros(TASKS, bool),
        )
    return sac, replay.sample(128), replay.sample(128)


def terms(sac: SAC, part: str, batch, precision: str):
    """(per-sample loss, Q or log pi, gradient on the part's parameters) with fixed noise."""
    sac.precision = precision
    torch.manual_seed(1)
    alpha = sac.log_alpha.detach().exp()[batch.task]
    with sac.autocast():
        if part == "critic":
            per_sample, out = sac.critic_terms(batch, alpha)
        else:
            per_sample, out = sac.actor_terms(batch.obs, batch.task, alpha)
    params = sac.critic_params if part == "critic" else sac.actor_params
    grads = torch.autograd.grad(per_sample.mean(), params)
    sac.precision = "float32"
    return per_sample, out, torch.cat([g.flatten() for g in grads])


@pytest.mark.parametrize("part", ["critic", "actor"])
def test_bfloat16_gradients_differ_from_float32_far_less_than_batches_do(setup, part):
    sac, batch_a, batch_b = setup
    _, _, g32 = terms(sac, part, batch_a, "float32")
    _, _, g16 = terms(sac, part, batch_a, "bfloat16")
    _, _, g32_other = terms(sac, part, batch_b, "float32")
    precision_gap = 1 - cosine_similarity(g32, g16, 0)
    batch_gap = 1 - cosine_similarity(g32, g32_other, 0)
    assert precision_gap < batch_gap / 20, (precision_gap, batch_gap)


def test_q_values_keep_float32_resolution_in_bfloat16(setup):
    sac, batch, _ = setup
    _, q32, _ = terms(sac, "critic", batch, "float32")
    _, q16, _ = terms(sac, "critic", batch, "bfloat16")
    assert q16.dtype == torch.float32 and q32.mean() > 250
    # bfloat16 output at ~300 would be rounded to multiples of 2; the float32 head keeps it fine
    assert (q16 - q32).abs().max() < 0.5


def test_bad_precision_is_refused():
    with pytest.raises(ConfigError, match="sac.precision must be one of auto, float32, bfloat16, got 'fp8'"):
        make_config(TOY_FAST, sac={"precision": "fp8"})


@pytest.mark.parametrize(
    "flags, chosen",
    [
        ({"avx2", "avx512f", "avx512_bf16"}, "bfloat16"),
        ({"avx2", "amx_bf16"}, "bfloat16"),
        ({"avx2", "avx512f", "avx512_vnni"}, "float32"),
        (set(), "float32"),
    ],
)
def test_auto_precision_follows_the_cpu_flags(flags, chosen):
    """AVX512 alone is not enough: bf16 matmuls are emulated (slow) without AVX512-BF16/AMX."""
    precision, why = resolve_precision("auto", torch.device("cpu"), flags)
    assert precision == chosen and why
    assert (
        resolve_precision("float32", torch.device("cpu"), {"avx512_bf16"})[0] == "float32"
    )  # an explicit choice stands


def test_auto_precision_is_recorded_in_the_run_and_said(tmp_path, capsys):
    cfg = make_config(
        TOY_FAST,
        run={"dir": str(tmp_path / "run")},
        sac={"precision": "auto"},
        train={**TOY_FAST["train"], "total_steps": 200, "warmup_steps": 100, "eval_every": 0, "final_eval_episodes": 1},
    )
    train(cfg)
    chosen, _ = resolve_precision("auto", torch.device("cpu"))
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["sac"]["precision"] == chosen
    assert f"sac.precision=auto: {chosen}" in capsys.readouterr().out
