"""``mtrl.load``: a run directory's trained policy, acting exactly as ``mtrl eval``'s agent."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import mtrl
from mtrl.builders import make_agent, make_policy, make_spec, make_suite
from mtrl.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from mtrl.cli import main
from mtrl.config import ConfigError, from_dict, read_yaml
from mtrl.seeding import run_seeds
from mtrl.training.evaluation import evaluate

from conftest import TINY_TOY

# a Meta-World run small enough for a test: 40 steps, a 32-unit network, one evaluation episode
TINY_METAWORLD = [
    "train.total_steps=40",
    "train.warmup_steps=20",
    "train.eval_every=0",
    "train.final_eval_episodes=1",
    "env.max_episode_steps=20",
    "train.buffer_per_task=1000",
    "train.batch_per_task=8",
    "train.log_every=0",
    "train.checkpoint_every=0",
    "agent.hidden_sizes=[32]",
    "conflict.monitor_every=0",
    "device=cpu",
    "train.progress=false",
]


def rebuilt_agent(run_dir: Path, checkpoint: Path | None = None):
    """The agent as `mtrl eval` built it before `mtrl.load` existed: suite, env, spec, agent, weights."""
    cfg = from_dict(read_yaml(run_dir / "config.yaml"))
    suite = make_suite(cfg)
    env = suite.make_eval_env(1, seed=run_seeds(cfg.seed).evaluation)
    agent = make_agent(cfg, make_spec(suite, env), torch.device("cpu"))
    env.close()
    state = load_checkpoint(checkpoint or list_checkpoints(run_dir)[-1])
    agent.load_state_dict(state["sac"]["agent"])
    return agent.eval()


def random_obs(n: int, dim: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, dim)).astype(np.float32)


def test_load_acts_exactly_like_the_agent_mtrl_eval_builds(toy_run):
    policy = mtrl.load(toy_run, device="cpu")
    agent = rebuilt_agent(toy_run)
    assert policy.task_names == ("reach-east", "reach-north", "reach-west", "reach-south")
    assert policy.env_steps == 400 and policy.checkpoint == toy_run / "checkpoints" / "step_400.pt"
    assert policy.device == torch.device("cpu") and (policy.obs_dim, policy.act_dim) == (2, 2)
    obs = random_obs(8, 2)
    ids = np.arange(8) % 4
    expected = agent.act(obs, ids, deterministic=True)
    names = [policy.task_names[i] for i in ids]
    np.testing.assert_array_equal(policy.act(obs, ids), expected)
    np.testing.assert_array_equal(policy.act(obs, names), expected)  # names and indices: the same actions
    np.testing.assert_array_equal(policy.act(obs, np.array(names)), expected)
    np.testing.assert_array_equal(policy.act(obs, "reach-west"), policy.act(obs, 2))  # one id for every row
    np.testing.assert_array_equal(policy.act(obs, "reach-west"), agent.act(obs, np.full(8, 2), deterministic=True))
    single = agent.act(obs[3:4], np.array([3]), deterministic=True)[0]  # (a batch of 1 rounds differently from 8)
    np.testing.assert_array_equal(policy.act(obs[3], "reach-south"), single)  # one observation, one action
    assert policy.act(obs, ids, deterministic=False).shape == (8, 2)


def test_load_evaluates_to_mtrl_evals_eval_json(toy_run, tmp_path):
    assert main(["eval", str(toy_run), "--episodes", "3", "--device", "cpu"]) == 0
    saved = json.loads((toy_run / "eval.json").read_text())
    policy = mtrl.load(toy_run, device="cpu")
    suite = make_suite(policy.config)
    env = suite.make_eval_env(3, seed=run_seeds(policy.config.seed).evaluation)
    result = evaluate(policy, env, list(policy.task_names), 3, policy.config.train.eval_stop_on_success)
    assert result.to_json()["tasks"] == saved["tasks"]
    env = suite.make_eval_env(3, seed=run_seeds(policy.config.seed).evaluation)
    reference = evaluate(make_policy(rebuilt_agent(toy_run)), env, list(policy.task_names), 3, True)
    assert result.to_json() == reference.to_json()


def test_load_builds_no_environment(toy_run, monkeypatch):
    from mtrl.envs.toy import ToySuite

    def no_envs(*args, **kwargs):
        raise AssertionError("mtrl.load built an environment")

    monkeypatch.setattr(ToySuite, "make_env", no_envs)
    monkeypatch.setattr(ToySuite, "make_eval_env", no_envs)
    state = load_checkpoint(list_checkpoints(toy_run)[-1])
    assert state["spec"]["obs_dim"] == 2 and state["spec"]["act_dim"] == 2 and len(state["spec"]["descriptions"]) == 4
    assert mtrl.load(toy_run, device="cpu").obs_dim == 2


def test_a_checkpoint_without_sizes_is_loaded_by_building_the_suites_env(toy_run, tmp_path, monkeypatch):
    import shutil

    run_dir = Path(shutil.copytree(toy_run, tmp_path / "old"))
    latest = list_checkpoints(run_dir)[-1]
    state = load_checkpoint(latest)
    del state["spec"]  # as written before checkpoints stored the sizes
    save_checkpoint(run_dir, 400, state, keep=5)
    obs = random_obs(4, 2)
    np.testing.assert_array_equal(
        mtrl.load(run_dir, device="cpu").act(obs, [0, 1, 2, 3]),
        rebuilt_agent(toy_run).act(obs, np.arange(4), deterministic=True),
    )


def test_load_a_given_checkpoint_by_step_or_path(toy_run):
    early = mtrl.load(toy_run, checkpoint=200, device="cpu")
    assert early.env_steps == 200 and early.checkpoint.name == "step_200.pt"
    by_path = mtrl.load(toy_run, checkpoint=toy_run / "checkpoints" / "step_200.pt", device="cpu")
    obs = random_obs(4, 2)
    np.testing.assert_array_equal(early.act(obs, 1), by_path.act(obs, 1))
    np.testing.assert_array_equal(
        early.act(obs, 1), rebuilt_agent(toy_run, early.checkpoint).act(obs, np.ones(4, int), True)
    )


@pytest.mark.parametrize(
    "call, message",
    [
        (
            lambda p: p.act(np.zeros((3, 2)), "reach-est"),
            "unknown task 'reach-est' (did you mean 'reach-west' or 'reach-east'",
        ),
        (
            lambda p: p.act(np.zeros((3, 2)), ["reach-east", "nope", "reach-west"]),
            "this agent's tasks are: reach-east, reach-north, reach-west, reach-south",
        ),
        (lambda p: p.act(np.zeros((3, 6)), 0), "observations have shape (3, 6), the agent takes (batch, 2)"),
        (lambda p: p.act(np.zeros((3, 5)), 0), "observations have shape (3, 5), the agent takes (batch, 2)"),
        (lambda p: p.act(np.zeros((3, 2)), 4), "task index 4 is out of range: this agent has 4 tasks"),
        (lambda p: p.act(np.zeros((3, 2)), [0, 1]), "task_ids has shape (2,) for 3 observations"),
        (lambda p: p.act(np.zeros((3, 2)), [0.5, 1.0, 2.0]), "task ids must be task names or integer indices"),
    ],
)
def test_bad_input_to_act_is_one_line(toy_run, call, message):
    policy = mtrl.load(toy_run, device="cpu")
    with pytest.raises(ConfigError) as e:
        call(policy)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_a_one_hot_appended_observation_is_recognised(toy_run):
    with pytest.raises(ConfigError, match="one-hot task id is appended: pass the raw observation"):
        mtrl.load(toy_run, device="cpu").act(np.zeros((3, 6)), 0)  # 2 + 4 tasks


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"checkpoint": 3}, "has no checkpoint of step 3; its checkpoints' steps: 200, 400"),
        ({"checkpoint": "nowhere.pt"}, "checkpoint 'nowhere.pt' is not a file"),
    ],
)
def test_load_of_a_missing_checkpoint_is_one_line(toy_run, arguments, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        mtrl.load(toy_run, device="cpu", **arguments)


def test_load_of_a_folder_that_is_not_a_run(tmp_path):
    with pytest.raises(ConfigError, match="is not a run directory"):
        mtrl.load(tmp_path)


def test_load_of_a_care_run_reads_the_shipped_embeddings(tmp_path):
    run_dir = tmp_path / "care"
    assert main(["train", "toy-care", *TINY_TOY, "agent.num_encoders=2", f"run.dir={run_dir}"]) == 0
    obs = random_obs(4, 2)
    np.testing.assert_array_equal(
        mtrl.load(run_dir, device="cpu").act(obs, ["reach-north"] * 4),
        rebuilt_agent(run_dir).act(obs, np.ones(4, int), deterministic=True),
    )


def test_import_mtrl_stays_cheap_and_load_is_lazy():
    code = (
        "import sys, mtrl; assert 'torch' not in sys.modules and 'mtrl.inference.policy' not in sys.modules; "
        "from mtrl import load; assert callable(load) and 'mtrl.inference.policy' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --- Meta-World: the README's example, on metaworld's own gymnasium vector env --------------


@pytest.mark.slow
def test_load_on_metaworlds_gymnasium_mt10_vector_env(tmp_path):
    """A few-step MT10 run, then the README's loop: gym.make_vec("Meta-World/MT10") gives raw
    39-d observations (use_one_hot=False) and the policy takes the task names beside them."""
    import time

    import gymnasium as gym
    import metaworld  # noqa: F401  (registers Meta-World/*)

    run_dir = tmp_path / "mt10"
    assert main(["train", "mt10-mtsac", *TINY_METAWORLD, f"run.dir={run_dir}"]) == 0
    started = time.perf_counter()
    policy = mtrl.load(run_dir, device="cpu")
    assert time.perf_counter() - started < 5  # no Meta-World env is built
    agent = rebuilt_agent(run_dir)
    envs = gym.make_vec(
        "Meta-World/MT10", vector_strategy="sync", seed=0, autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP
    )
    try:
        tasks = [t[0].env_name for t in envs.get_attr("tasks")]
        assert tasks == list(policy.task_names)
        obs, _ = envs.reset(seed=0)
        assert obs.shape == (10, 39)
        success = np.zeros(envs.num_envs, bool)
        for _ in range(10):
            actions = policy.act(obs, tasks)
            np.testing.assert_array_equal(actions, agent.act(obs, np.arange(10), deterministic=True))
            obs, _, _, _, info = envs.step(actions)
            success |= info["success"] > 0
    finally:
        envs.close()
    with pytest.raises(ConfigError, match="one-hot task id is appended"):
        policy.act(np.zeros((10, 49)), tasks)


@pytest.mark.slow
def test_the_readme_example_runs_on_a_run_of_any_meta_world_tasks(tmp_path):
    """README's "Using a trained agent" block, as written, on a (tiny) quickstart run: 4 tasks, not MT10."""
    import ast
    import re

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    (code,) = [b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "mtrl.load(" in b]
    run_dir = tmp_path / "quickstart"
    assert main(["train", "quickstart", *TINY_METAWORLD, f"run.dir={run_dir}"]) == 0
    assert 'mtrl.load("runs/my-run")' in code
    proc = subprocess.run(
        [sys.executable, "-c", code.replace('"runs/my-run"', repr(str(run_dir)))],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert list(ast.literal_eval(proc.stdout.strip().splitlines()[-1])) == [
        "reach-v3",
        "drawer-close-v3",
        "handle-press-v3",
        "plate-slide-v3",
    ]
