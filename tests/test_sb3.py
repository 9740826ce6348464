"""mtrl.sb3.CAREExtractor inside Stable-Baselines3's SAC on Meta-World's own MT10 env."""

import numpy as np
import pytest
import torch

pytest.importorskip("stable_baselines3")

from stable_baselines3 import SAC  # noqa: E402

from mtrl.sb3 import CAREExtractor, metaworld_onehot_vec_env  # noqa: E402


def test_sb3_sac_trains_with_the_care_extractor_and_features_depend_on_the_task():
    env = metaworld_onehot_vec_env("MT10", seed=0)
    assert env.num_envs == 10 and env.task_names[0] == "reach-v3"
    assert env.observation_space.shape == (39 + 10,)
    model = SAC(
        "MlpPolicy",
        env,
        learning_starts=100,
        batch_size=32,
        buffer_size=2_000,
        seed=0,
        device="cpu",
        policy_kwargs=dict(
            net_arch=[32, 32],
            features_extractor_class=CAREExtractor,
            features_extractor_kwargs=dict(task_names=env.task_names, num_encoders=3),
        ),
    )
    extractor = model.actor.features_extractor
    before = [p.detach().clone() for p in extractor.parameters()]
    model.learn(total_timesteps=400)
    assert model.num_timesteps >= 400
    # SB3 SAC trains the actor's extractor through the actor loss: weights moved
    assert any(not torch.equal(a, b) for a, b in zip(before, extractor.parameters()))
    obs = torch.as_tensor(env.reset()[:1], dtype=torch.float32).repeat(2, 1)
    obs[:, -10:] = 0
    obs[0, -10], obs[1, -7] = 1, 1  # the same state, labelled as task 0 and task 3
    with torch.no_grad():
        features = extractor(obs)
    assert features.shape == (2, 100) and np.isfinite(features.numpy()).all()
    assert not torch.allclose(features[0], features[1])
    env.close()
