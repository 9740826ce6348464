"""``sac.compile=true``: torch.compile changes neither the update's results nor the
checkpoint format."""

import numpy as np
import torch

from mtrl.config import SACConfig, load_config
from mtrl.learner.agent import EnvSpec
from mtrl.learner.replay import MultiTaskReplay
from mtrl.learner.sac import SAC
from mtrl.registry import get


def updated_state(compile: bool, updates: int = 3) -> dict:
    torch.manual_seed(0)
    spec = EnvSpec(6, 2, ("a", "b"), ("x", "y"), "test")
    agent_cfg = load_config("toy-mtsac").agent
    agent_cfg.hidden_sizes = [32, 32]
    sac = SAC(get("agent", "mtsac").target(agent_cfg, spec), 2, 2, SACConfig(compile=compile))
    replay = MultiTaskReplay(2, 100, 6, 2)
    rng = np.random.default_rng(0)
    for _ in range(50):
        replay.add(
            np.arange(2),
            rng.normal(size=(2, 6)),
            rng.uniform(-1, 1, (2, 2)),
            rng.normal(size=2),
            rng.normal(size=(2, 6)),
            np.zeros(2, bool),
        )
    torch.manual_seed(1)
    for _ in range(updates):
        sac.update(replay.sample(16))
    return sac.state_dict()


def test_compiled_updates_match_eager_ones_and_keep_checkpoint_keys():
    eager, compiled = updated_state(False), updated_state(True)
    assert eager["agent"].keys() == compiled["agent"].keys()
    assert eager["target"].keys() == compiled["target"].keys()
    for key, value in eager["agent"].items():
        torch.testing.assert_close(compiled["agent"][key], value, rtol=1e-4, atol=1e-5, msg=key)
    initial = updated_state(False, updates=0)["agent"]
    assert any(not torch.equal(initial[k], v) for k, v in eager["agent"].items())  # the updates moved them
