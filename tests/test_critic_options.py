"""agent.critic_hidden_sizes and agent.critic_layer_norm: the critics' own widths and a
LayerNorm after each hidden layer, checked against torch's nn.LayerNorm member by member."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mtrl.builders import make_agent, make_spec, make_suite
from mtrl.config import ConfigError
from mtrl.networks.ensemble import EnsembleLayerNorm, EnsembleMLP

from conftest import TOY_FAST, make_config


def test_ensemble_layer_norm_equals_torch_layer_norm_per_member():
    torch.manual_seed(0)
    norm = EnsembleLayerNorm(3, 8)
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    x = torch.randn(3, 5, 8) * 4 + 2
    for m in range(3):
        reference = nn.LayerNorm(8)
        with torch.no_grad():
            reference.weight.copy_(norm.weight[m, 0])
            reference.bias.copy_(norm.bias[m, 0])
        torch.testing.assert_close(norm(x)[m], reference(x[m]))


def test_layer_norm_mlp_normalises_each_hidden_layer_before_its_relu():
    torch.manual_seed(1)
    net = EnsembleMLP(members=2, in_dim=4, hidden=[16, 16], out_dim=1, init="pytorch", layer_norm=True)
    x = torch.randn(7, 4)
    h = x.unsqueeze(0).expand(2, -1, -1)
    for layer in net.hidden:
        z = layer(h)
        h = torch.relu((z - z.mean(-1, keepdim=True)) / torch.sqrt(z.var(-1, unbiased=False, keepdim=True) + 1e-5))
    torch.testing.assert_close(net(x), net.head(h))
    assert "norms.0.weight" in dict(net.named_parameters())
    plain = EnsembleMLP(members=2, in_dim=4, hidden=[16], out_dim=1)
    assert not any("norms" in k for k in plain.state_dict())  # old checkpoints' keys


@pytest.mark.parametrize("agent", ["mtsac", "mhsac", "care"])
def test_critic_widths_and_layer_norm_reach_the_critics_only(agent):
    cfg = make_config(
        TOY_FAST,
        agent={"name": agent, "hidden_sizes": [32], "critic_hidden_sizes": [64, 48], "critic_layer_norm": True},
    )
    suite = make_suite(cfg)
    env = suite.make_env(suite.num_tasks, seed=0)
    built = make_agent(cfg, make_spec(suite, env), torch.device("cpu"))
    env.close()
    assert [layer.weight.shape[-1] for layer in built.critic.net.hidden] == [64, 48]
    assert built.critic.net.norms is not None and len(built.critic.net.norms) == 2
    assert [layer.weight.shape[-1] for layer in built.actor.net.hidden] == [32] and built.actor.net.norms is None


def test_bad_critic_widths_are_a_config_error():
    with pytest.raises(ConfigError, match="agent.critic_hidden_sizes"):
        cfg = make_config(TOY_FAST, agent={"name": "mtsac", "critic_hidden_sizes": []})
        cfg.agent.validate()
