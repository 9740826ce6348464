"""What a trained critic knows about a task: a linear probe of its representation and the
calibration of its Q values, on fresh rollouts of the run's own (stochastic) policy.

    python docs/results/mt10-care-probe/reach_probe.py RUN_DIR[:STEP] ... [--task reach-v3] [--goals 10]

For each run (its newest checkpoint, or ``checkpoints/step_<STEP>.pt``), ``--goals`` episodes
of ``--task`` (goals 0, 1, ...; 500 steps each, sampled actions) and then:

- ``r2_raw_obs``: the same read-out from the raw observation, a check (about 1).

- ``r2_penultimate``: held-out R² (ridge, 5 folds over episodes) of a linear read-out of the
  hand-to-target vector (obs[0:3] - obs[36:39]: for reach the goal) from the first critic's
  last hidden layer, the features its Q head reads. Raw observations give R² = 1 (the vector
  is linear in them), so a low value is information the critic's representation lost.
- ``r2_care_mixture``: the same from CARE's 50-d encoder mixture (the part of the critic's
  input that carries the state); absent for agents without a CARE encoder.
- ``actor_r2_penultimate``: the same read-out from the actor's last hidden layer;
  ``actor_toward_goal``: the mean cosine between the actor's deterministic action's xyz part
  (Meta-World's hand displacement) and the hand-to-goal direction, over the approach (the
  first 50 steps, while the hand is more than 5 cm from the goal; 1: straight for the goal,
  0: no better than chance); ``actor_std``: the mean standard deviation of the actor's Gaussian there;
  ``critic_toward_goal``: the same cosine for the critics' min-Q gradient in the action at the
  actor's mean action, the direction the actor loss pushes the actor.
- ``q_mc_pearson`` / ``q_mc_spearman``: correlation between the critics' min Q(s, a) and the
  discounted return that followed in the rollout (steps < 250, where the 500-step cut-off
  changes the return by at most gamma^250 of the tail), and both means.
Prints one TSV row per run. One thread; about a minute per run, whose rollouts are kept in
RUN_DIR/probe_rollouts_<task>_<step>_<goals>.npz for the next analysis.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

HORIZON = 250  # steps whose discounted return the rollout determines well


def rollouts(policy, env, task: int, goals: int) -> dict[str, np.ndarray]:
    """``goals`` full episodes of one task with sampled actions: obs, action, reward per step."""
    obs_l, act_l, rew_l, succ = [], [], [], []
    for goal in range(goals):
        obs = env.reset_slots(np.array([task]), np.array([task]), np.array([goal]))
        ep_o, ep_a, ep_r, ok = [], [], [], False
        active = np.zeros(env.num_slots, bool)
        active[task] = True
        for _ in range(env.max_episode_steps):
            action = policy.act(obs, np.array([task]), deterministic=False)
            full = np.zeros((env.num_slots, env.act_dim), np.float32)
            full[task] = action[0]
            step = env.step(full, active)
            ep_o.append(obs[0].copy()), ep_a.append(action[0]), ep_r.append(step.reward[task])
            ok |= bool(step.success[task])
            obs = step.obs[task : task + 1]
        obs_l.append(ep_o), act_l.append(ep_a), rew_l.append(ep_r), succ.append(ok)
    return {
        "obs": np.array(obs_l, np.float32),
        "action": np.array(act_l, np.float32),
        "reward": np.array(rew_l, np.float64),
        "success": np.array(succ),
    }


def held_out_r2(features: np.ndarray, target: np.ndarray, episodes: int, alpha: float = 1e-2) -> float:
    """Mean R² over 5 folds that hold out whole episodes; features (E, T, F), target (E, T, D)."""
    folds = np.array_split(np.arange(episodes), min(5, episodes))
    scores = []
    for held in folds:
        train = np.setdiff1d(np.arange(episodes), held)
        x, y = features[train].reshape(-1, features.shape[-1]), target[train].reshape(-1, target.shape[-1])
        # features (nearly) constant in the training folds are left out: a dead ReLU unit
        # or a joint at its limit would otherwise blow up when it moves in the held-out goals
        std = x.std(0)
        mean_x, mean_y, scale = x.mean(0), y.mean(0), np.where(std > 1e-3 * std.max(), std, np.inf)
        xs = (x - mean_x) / scale
        w = np.linalg.solve(xs.T @ xs + alpha * len(xs) * np.eye(xs.shape[1]), xs.T @ (y - mean_y))
        xt, yt = features[held].reshape(-1, features.shape[-1]), target[held].reshape(-1, target.shape[-1])
        pred = ((xt - mean_x) / scale) @ w + mean_y
        scores.append(1 - ((yt - pred) ** 2).sum() / ((yt - yt.mean(0)) ** 2).sum())
    return float(np.mean(scores))


def last_hidden(net, x: torch.Tensor) -> torch.Tensor:
    """The first member's last hidden layer of an EnsembleMLP fed ``x`` (B, F)."""
    x = x.unsqueeze(0).expand(net.members, -1, -1)
    for i, layer in enumerate(net.hidden):
        x = layer(x)
        x = torch.relu(net.norms[i](x) if net.norms is not None else x)
    return x[0]


@torch.no_grad()
def network_views(agent, obs: np.ndarray, action: np.ndarray, task: int) -> dict[str, np.ndarray]:
    """min Q, the first critic's and the actor's last hidden layers, the actor's mean action
    and std and (CARE) the encoder mixture, per step."""
    o = torch.as_tensor(obs.reshape(-1, obs.shape[-1]))
    a = torch.as_tensor(action.reshape(-1, action.shape[-1]))
    t = torch.full((len(o),), task, dtype=torch.int64)
    features = agent.encoder(o, t)
    actor_features = agent.actor_features(o, t)
    mean, log_std = agent.actor(actor_features, t)
    shape = obs.shape[:2]
    views = {
        "q": agent.critic(features, a, t).min(0).values.reshape(shape).numpy(),
        "penultimate": last_hidden(agent.critic.net, torch.cat([features, a], -1)).reshape(*shape, -1).numpy(),
        "actor_penultimate": last_hidden(agent.actor.net, actor_features).reshape(*shape, -1).numpy(),
        "actor_action": torch.tanh(mean).reshape(*shape, -1).numpy(),
        "actor_std": log_std.exp().reshape(*shape, -1).numpy(),
    }
    with torch.enable_grad():  # what the critic teaches the actor: dQ/da at the actor's mean action
        mean_action = torch.tanh(mean).requires_grad_(True)
        (grad,) = torch.autograd.grad(agent.critic(features, mean_action, t).min(0).values.sum(), mean_action)
    views["critic_action_grad"] = grad.reshape(*shape, -1).numpy()
    if hasattr(agent.encoder, "encode"):  # CARE: (mixture || context); the mixture carries the state
        mixture = agent.encoder.encode(o, t)[0][:, : agent.encoder.encoder_dim]
        views["care_mixture"] = mixture.reshape(*shape, -1).numpy()
    return views


def toward(direction: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """Cosine between two (..., 3) arrays, per step."""
    norms = np.linalg.norm(direction, axis=-1) * np.linalg.norm(vector, axis=-1)
    return (direction * vector).sum(-1) / (norms + 1e-8)


def probe(run: str, task_name: str, goals: int) -> dict[str, object]:
    import mtrl
    from mtrl.builders import make_suite
    from mtrl.learner.reward_scale import returns_to_go
    from mtrl.run_files import read_run

    run_dir, _, step = run.partition(":")
    policy = mtrl.load(run_dir, checkpoint=int(step) if step else None, device="cpu")
    cfg = read_run(Path(run_dir))
    suite = make_suite(cfg)
    task = list(suite.task_names).index(task_name)
    env = suite.make_eval_env(1, seed=12345)
    cache = Path(run_dir) / f"probe_rollouts_{task_name}_{step or 'newest'}_{goals}.npz"
    if cache.is_file():  # the rollouts are the slow part; analyses change more often
        data = dict(np.load(cache))
    else:
        data = rollouts(policy, env, task, goals)
        np.savez(cache, **data)
    views = network_views(policy.agent, data["obs"], data["action"], task)
    target = data["obs"][:, :, 0:3] - data["obs"][:, :, 36:39]
    to_goal, move = -target, views["actor_action"][:, :, 0:3]  # target is hand - goal
    far = np.linalg.norm(to_goal, axis=-1) > 0.05
    far[:, 50:] = False  # the approach: later a policy that stalls short of the goal wanders
    cosine = toward(to_goal, move)
    critic_cosine = toward(to_goal, views["critic_action_grad"][:, :, 0:3])
    returns = np.stack([returns_to_go(r, cfg.sac.gamma, bootstrap=False) for r in data["reward"]])
    mc = returns[:, :HORIZON].ravel()
    q = views["q"][:, :HORIZON].ravel()
    row = {
        "run": run,
        "task": task_name,
        "rollout_success": float(data["success"].mean()),
        "r2_raw_obs": held_out_r2(data["obs"], target, goals),  # the check: 1 up to the ridge
        "r2_penultimate": held_out_r2(views["penultimate"], target, goals),
        "r2_care_mixture": held_out_r2(views["care_mixture"], target, goals) if "care_mixture" in views else "",
        "actor_r2_penultimate": held_out_r2(views["actor_penultimate"], target, goals),
        "actor_toward_goal": float(cosine[far].mean()),
        "actor_std": float(views["actor_std"][far].mean()),
        "critic_toward_goal": float(critic_cosine[far].mean()),
        "q_mc_pearson": float(np.corrcoef(q, mc)[0, 1]),
        "q_mc_spearman": float(spearmanr(q, mc).statistic),
        "q_mean": float(q.mean()),
        "mc_mean": float(mc.mean()),
    }
    env.close()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="RUN_DIR or RUN_DIR:STEP")
    parser.add_argument("--task", default="reach-v3")
    parser.add_argument("--goals", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = [probe(run, args.task, args.goals) for run in args.runs]
    keys = list(rows[0])
    print("\t".join(keys))
    for row in rows:
        print("\t".join(f"{row[k]:.3g}" if isinstance(row[k], float) else str(row[k]) for k in keys))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
