"""CARE for Stable-Baselines3 users: a features extractor for SB3's SAC (or any SB3 policy).

    from mtrl.sb3 import CAREExtractor, metaworld_onehot_vec_env
    env = metaworld_onehot_vec_env("MT10")
    model = SAC("MlpPolicy", env, policy_kwargs=dict(
        features_extractor_class=CAREExtractor,
        features_extractor_kwargs=dict(task_names=env.task_names),
    ))

The observation must end with a one-hot task id (Meta-World's ``use_one_hot=True``); the
extractor splits it off, looks up the task's description embedding and returns the CARE
representation. Needs the ``sb3`` extra.
"""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

from mtrl import registry
from mtrl.errors import ConfigError
from mtrl.networks.care_encoder import CAREEncoder, TaskEmbedding
from mtrl.networks.task_embeddings import read_embedding_file


def embeddings_for(
    task_names: list[str], suite: str = "metaworld", embedding_file: str | Path | None = None
) -> np.ndarray:
    """Rows of a (shipped or given) embedding file for ``task_names``, in that order."""
    path = Path(embedding_file) if embedding_file else registry.get("suite", suite).target.embedding_file
    if path is None:
        raise ConfigError(f"suite '{suite}' ships no embedding file; pass embedding_file=")
    table = read_embedding_file(path)["tasks"]
    missing = [n for n in task_names if n not in table]
    if missing:
        raise ConfigError(f"embedding file '{path}' has no entry for {', '.join(missing)}")
    return np.asarray([table[n]["vector"] for n in task_names], np.float32)


class CAREExtractor(BaseFeaturesExtractor):
    """CARE representation of ``[state || one_hot(task)]`` observations."""

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        task_names: list[str],
        suite: str = "metaworld",
        embedding_file: str | None = None,
        num_encoders: int = 6,
        encoder_hidden: tuple[int, ...] = (50,),
        encoder_dim: int = 50,
        context_hidden: tuple[int, ...] = (50, 50),
        attention: str = "mlp",
        temperature: float = 1.0,
    ):
        super().__init__(observation_space, features_dim=2 * encoder_dim)
        self.num_tasks = len(task_names)
        obs_dim = int(observation_space.shape[0]) - self.num_tasks
        table = torch.as_tensor(embeddings_for(list(task_names), suite, embedding_file))
        embedding = TaskEmbedding(kind="pretrained", num_tasks=self.num_tasks, pretrained=table)
        self.encoder = CAREEncoder(
            obs_dim=obs_dim,
            task_embedding=embedding,
            num_encoders=num_encoders,
            encoder_hidden=list(encoder_hidden),
            encoder_dim=encoder_dim,
            context_hidden=list(context_hidden),
            attention=attention,
            temperature=temperature,
        )

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        state, one_hot = observations[:, : -self.num_tasks], observations[:, -self.num_tasks :]
        return self.encoder(state, one_hot.argmax(-1))


def metaworld_onehot_vec_env(benchmark: str = "MT10", seed: int = 0):
    """An SB3 ``DummyVecEnv`` of Meta-World's own MT envs (one per task, one-hot ids
    appended, V2 reward, 500-step episodes), with ``task_names`` set on it."""
    import metaworld.env_dict  # importing metaworld registers its gymnasium ids
    from stable_baselines3.common.vec_env import DummyVecEnv

    vector = gym.make_vec(f"Meta-World/{benchmark}", vector_strategy="sync", use_one_hot=True, seed=seed)
    envs = list(vector.envs)
    vec = DummyVecEnv([lambda e=e: e for e in envs])
    vec.task_names = list(getattr(metaworld.env_dict, f"{benchmark}_V3"))  # the vector env's order
    return vec
