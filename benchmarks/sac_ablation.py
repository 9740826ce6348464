"""Ablations of mtrl's SAC towards Stable-Baselines3's, one difference at a time, on any
config (docs/RESULTS.md uses the toy suite): each variant patches one piece of mtrl for
the run and records itself as ``ablation: <name>`` in the run's config.yaml, so that
``mtrl report`` groups it as its own method.

    python benchmarks/sac_ablation.py CONFIG VARIANT [dotted.key=value ...]

The pytorch-* variants replace the reference init (orthogonal / small layers): give
``agent.init=reference``, as docs/RESULTS.md's commands do, for them to change anything in
the actor and critics (``agent.init=pytorch``, today's default, already is PyTorch's init).

VARIANT:
  pytorch-init   PyTorch's default init in every layer (uniform weights and biases of
                 scale 1/sqrt(fan_in)), as SB3 has, instead of orthogonal / zero / small
  pytorch-hidden PyTorch's default in the hidden layers only (output layers stay small)
  pytorch-output PyTorch's default in the output layers only (hidden stay orthogonal, bias 0)
  log-std-clamp  SB3's log-std: the raw output clamped to [-20, 2] instead of squashed
                 by tanh into [-5, 2] (at the start: log-std ~0 instead of -1.5)
  sb3-actor      both of the above
"""

from __future__ import annotations

import math
import sys

import torch
import yaml

import mtrl.networks.ensemble as networks
from mtrl.config import load_config
from mtrl.training.trainer import train

VARIANTS = ("pytorch-init", "pytorch-hidden", "pytorch-output", "log-std-clamp", "sb3-actor")


def pytorch_init(layers: tuple[str, ...] = ("orthogonal", "small")) -> None:
    """PyTorch's default init for the layers whose mtrl init is in ``layers``."""
    original = networks.EnsembleLinear.__init__

    def init(self, members: int, in_dim: int, out_dim: int, init: str = "orthogonal") -> None:
        original(self, members, in_dim, out_dim, init)
        if init not in layers:
            return
        bound = 1.0 / math.sqrt(in_dim)
        torch.nn.init.uniform_(self.weight.data, -bound, bound)
        torch.nn.init.uniform_(self.bias.data, -bound, bound)

    networks.EnsembleLinear.__init__ = init


def log_std_clamp() -> None:
    def forward(self, features: torch.Tensor, task: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.net(features, task)[0].chunk(2, dim=-1)
        return mean, log_std.clamp(-20.0, 2.0)

    networks.TanhGaussianActor.forward = forward


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[1] not in VARIANTS:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    config, variant, overrides = argv[0], argv[1], argv[2:]
    if variant in ("pytorch-init", "sb3-actor"):
        pytorch_init()
    if variant == "pytorch-hidden":
        pytorch_init(("orthogonal",))
    if variant == "pytorch-output":
        pytorch_init(("small",))
    if variant in ("log-std-clamp", "sb3-actor"):
        log_std_clamp()
    result = train(load_config(config, overrides))
    path = result.run_dir / "config.yaml"
    data = yaml.safe_load(path.read_text())
    data["ablation"] = variant
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    print(f"{variant}: final success {result.final_eval.success_mean:.3f}; run directory: {result.run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
