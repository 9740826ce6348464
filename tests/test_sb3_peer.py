"""benchmarks/sb3_peer.py: SB3's SAC configured as MT-SAC, writing an mtrl run directory."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("stable_baselines3")

from mtrl.builders import make_suite  # noqa: E402
from mtrl.checkpoint import list_checkpoints  # noqa: E402
from mtrl.config import ConfigError, load_config  # noqa: E402
from mtrl.training.logger import read_metrics, without_timing  # noqa: E402

from conftest import CountdownConfig, CountdownEnv  # noqa: E402

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "sb3_peer.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("sb3_peer", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["sb3_peer"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


peer = _load_script()

TINY = [
    "train.total_steps=3000",
    "train.warmup_steps=1000",
    "train.eval_every=1500",
    "train.eval_episodes=4",
    "train.log_every=1500",
    "train.buffer_per_task=10000",
    "train.batch_per_task=64",
    "agent.hidden_sizes=[32,32]",
    "train.progress=false",
]


class StepSpy:
    """Remembers the wrapped env's own last StepResult."""

    def __init__(self, env):
        self.env, self.last = env, None
        self._step = env.step
        env.step = self

    def __call__(self, actions, active=None):
        self.last = self._step(actions, active)
        return self.last


def test_vec_env_time_limit_terminal_observation_one_hot_and_reset():
    cfg = load_config("toy-mtsac", ["env.episode_steps=5"])
    suite = make_suite(cfg)
    env = suite.make_env(suite.num_tasks, seed=0)
    spy = StepSpy(env)
    venv = peer.OneHotTaskVecEnv(env, suite.task_names)
    obs = venv.reset()
    n = suite.num_tasks
    assert obs.shape == (n, 2 + n) and obs.dtype == np.float32
    np.testing.assert_array_equal(obs[:, 2:], np.eye(n))
    action = np.tile([[0.5, -0.3]], (n, 1)).astype(np.float32)
    for _ in range(4):
        obs, reward, dones, infos = venv.step(action)
        assert not dones.any() and infos == [{}] * n
    obs, reward, dones, infos = venv.step(action)  # the 5th step: time limit
    assert dones.all()
    for s in range(n):
        assert infos[s]["TimeLimit.truncated"] is True
        np.testing.assert_array_equal(infos[s]["terminal_observation"][:2], spy.last.obs[s])
        np.testing.assert_array_equal(infos[s]["terminal_observation"][2:], np.eye(n)[s])
        assert infos[s]["episode"]["l"] == 5
    # reset at once: new episodes, first observations near the origin, one-hot kept
    assert (env.t == 0).all()
    assert np.abs(obs[:, :2]).max() <= cfg.env.start_noise
    assert not np.allclose(obs[:, :2], spy.last.obs)
    np.testing.assert_array_equal(obs[:, 2:], np.eye(n))
    stats = venv.pop_episode_stats()
    assert set(stats) == {f"train/episode_{k}/{t}" for k in ("success", "return") for t in suite.task_names}
    assert venv.pop_episode_stats() == {}
    _, _, dones, _ = venv.step(action)
    assert not dones.any()


def test_vec_env_true_termination_is_not_a_time_limit():
    env = CountdownEnv(CountdownConfig(num_tasks=2, terminate_at=3, episode_steps=5), 2)
    venv = peer.OneHotTaskVecEnv(env, ["count-0", "count-1"])
    venv.reset()
    zero = np.zeros((2, 1), np.float32)
    for _ in range(2):
        venv.step(zero)
    _, _, dones, infos = venv.step(zero)  # task 0 terminates at step 3
    assert dones.tolist() == [True, False]
    assert infos[0]["TimeLimit.truncated"] is False
    np.testing.assert_array_equal(infos[0]["terminal_observation"], [3, 0, 1, 0])
    assert infos[0]["is_success"] is True  # success at step 2 counts
    venv.step(zero)
    obs, _, dones, infos = venv.step(zero)  # task 1 hits its time limit at step 5
    assert dones.tolist() == [False, True] and infos[1]["TimeLimit.truncated"] is True
    np.testing.assert_array_equal(infos[1]["terminal_observation"], [5, 1, 0, 1])
    np.testing.assert_array_equal(obs[1], [0, 1, 0, 1])  # the new episode's first observation


def test_model_mirrors_the_mtrl_config():
    cfg = load_config(
        "toy-mtsac",
        [
            "train.batch_per_task=48",
            "train.updates_per_step=2",
            "train.buffer_per_task=1000",
            "agent.hidden_sizes=[32,16]",
            "train.warmup_steps=400",
            "sac.gamma=0.95",
        ],
    )
    suite = make_suite(cfg)
    venv = peer.OneHotTaskVecEnv(suite.make_env(suite.num_tasks, seed=0), suite.task_names)
    model = peer.build_model(cfg, venv)
    assert model.batch_size == 48 * suite.num_tasks
    assert model.gradient_steps == 2 and model.train_freq.frequency == 1
    assert model.replay_buffer.buffer_size == 1000 and model.replay_buffer.n_envs == suite.num_tasks  # a FIFO per task
    assert model.learning_starts == 399 and model.gamma == 0.95 and model.tau == cfg.sac.tau
    assert float(model.log_ent_coef.detach().exp()) == pytest.approx(cfg.sac.initial_alpha)
    assert model.target_entropy == -2.0
    linear = lambda net: [m.out_features for m in net.modules() if hasattr(m, "out_features")]  # noqa: E731
    assert linear(model.actor.latent_pi) == [32, 16]
    assert linear(model.critic.q_networks[0]) == linear(model.critic.q_networks[1]) == [32, 16, 1]
    bad = load_config("toy-mtsac", ["sac.actor_lr=0.001"])
    with pytest.raises(ConfigError, match="one learning rate"):
        peer.check_supported(bad, 4)


def test_end_to_end_writes_an_mtrl_run(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert peer.main(["toy-mtsac", f"run.dir={run_dir}", *TINY]) == 0
    out = capsys.readouterr().out
    assert f"run directory: {run_dir}" in out and "reach-east" in out
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["agent"]["name"] == "sb3-sac" and config["run"]["name"] == "sb3-sac"
    assert config["agent"]["hidden_sizes"] == [32, 32] and config["agent"]["sb3_version"]
    assert config["agent"]["sb3"]["batch_size"] == 64 * 4
    records = read_metrics(run_dir)
    evals = [r for r in records if "eval/success_mean" in r]
    assert [r["step"] for r in evals] == [1500, 3000]
    assert all(len([k for k in r if k.startswith("eval/success/")]) == 4 for r in evals)
    train = {r["step"]: r for r in records if "train/steps_per_second" in r}
    assert sorted(train) == [1500, 3000]
    # as many updates as mtrl makes: one per vector step from env step 1000 on
    assert train[3000]["train/updates"] == (3000 - 1000) // 4 + 1
    assert {"loss/critic", "loss/actor", "loss/alpha", "alpha", "train/episode_success/reach-east"} <= set(train[3000])


def test_run_name_given_on_the_command_line_is_kept(tmp_path):
    run_dir = tmp_path / "run"
    assert (
        peer.main(
            [
                "toy-mtsac",
                f"run.dir={run_dir}",
                "run.name=sb3-small",
                *TINY,
                "train.total_steps=400",
                "train.warmup_steps=200",
                "train.eval_every=0",
            ]
        )
        == 0
    )
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["run"]["name"] == "sb3-small"
    assert [r["step"] for r in read_metrics(run_dir) if "eval/success_mean" in r] == [400]  # the final one


def test_existing_run_directory_exits_2_and_overwrites_nothing(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("precious: true\n")
    assert peer.main(["toy-mtsac", f"run.dir={run_dir}", *TINY]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"sb3_peer: error: run.dir '{run_dir}' already holds a run; pass resume=true to continue it or "
        "choose another run.dir"
    ]
    assert (run_dir / "config.yaml").read_text() == "precious: true\n"
    assert sorted(p.name for p in run_dir.iterdir()) == ["config.yaml"]


def stop_at(monkeypatch, step: int) -> None:
    """A SIGTERM as if it arrived at env step ``step`` (the peer checkpoints there and exits)."""
    after_updates = peer.PeerRun.after_updates

    def signalled(self):
        if self.model.num_timesteps >= step and self.stop is not None and self.stop.received is None:
            self.stop.received = "SIGTERM"
        after_updates(self)

    monkeypatch.setattr(peer.PeerRun, "after_updates", signalled)


def test_a_stopped_run_resumes_to_the_same_metrics_as_one_never_stopped(tmp_path, capsys, monkeypatch):
    args = ["toy-mtsac", *TINY, "train.checkpoint_every=1000", "train.save_replay=true"]
    assert peer.main([*args, f"run.dir={tmp_path / 'reference'}"]) == 0
    run_dir = tmp_path / "run"
    stop_at(monkeypatch, 2000)
    capsys.readouterr()
    assert peer.main([*args, f"run.dir={run_dir}"]) == 143
    said = capsys.readouterr().err.strip().splitlines()[-1]
    assert said.startswith("sb3_peer: stopped by SIGTERM at step 2,000; checkpoint saved") and "resume=true" in said
    assert [p.name for p in list_checkpoints(run_dir)] == ["step_1000.pt", "step_2000.pt"]
    monkeypatch.undo()
    assert peer.main([*args, f"run.dir={run_dir}", "resume=true"]) == 0
    assert "sb3_peer: resumed from step 2,000 (step_2000.pt)" in capsys.readouterr().err
    resumed = without_timing(read_metrics(run_dir))
    assert [r["step"] for r in resumed] == [1500, 1500, 3000, 3000]  # no record twice
    assert resumed == without_timing(read_metrics(tmp_path / "reference"))


def test_a_resume_without_the_replay_waits_for_one_batch_and_acts_with_the_policy(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    args = ["toy-mtsac", *TINY, "train.checkpoint_every=1000", f"run.dir={run_dir}"]
    stop_at(monkeypatch, 2000)
    assert peer.main(args) == 143
    monkeypatch.undo()
    random_steps = []
    sample_action = peer.SAC._sample_action

    def counted(self, learning_starts, action_noise=None, n_envs=1):
        random_steps.append(self.num_timesteps < learning_starts)
        return sample_action(self, learning_starts, action_noise, n_envs)

    monkeypatch.setattr(peer.SAC, "_sample_action", counted)
    assert peer.main([*args, "resume=true"]) == 0
    assert len(random_steps) == 1000 // 4 and not any(random_steps)  # the refill acts with the policy
    last = [r for r in read_metrics(run_dir) if "train/updates" in r][-1]
    # 251 updates up to step 2,000; then none until 64 rows per task are back (step 2,256)
    assert last["step"] == 3000 and last["train/updates"] == 251 + (3000 - 2256) // 4 + 1


def test_resume_without_a_run_is_refused_in_one_line(tmp_path, capsys):
    assert peer.main(["toy-mtsac", *TINY, f"run.dir={tmp_path / 'none'}", "resume=true"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"sb3_peer: error: run.dir '{tmp_path / 'none'}' holds no run to resume; drop resume=true to start one there"
    )


def test_config_errors_exit_2_with_one_line(tmp_path, capsys):
    assert peer.main(["toy-mtsac", "train.total_step=10", f"run.dir={tmp_path / 'a'}"]) == 2
    assert capsys.readouterr().err.startswith("sb3_peer: error: unknown config key 'train.total_step'")
    assert peer.main(["toy-mtsac"]) == 2  # run.dir is required
    assert capsys.readouterr().err.strip() == "sb3_peer: error: run.dir=<a new folder> is required"
    assert not (tmp_path / "a").exists()


def test_learns_the_toy_suite(tmp_path):
    """SB3-as-MT-SAC on the 4 conflicting point-mass tasks: 8k env steps (1750 updates)."""
    run_dir = tmp_path / "run"
    assert (
        peer.main(
            [
                "toy-mtsac",
                f"run.dir={run_dir}",
                "train.total_steps=8000",
                "train.warmup_steps=1000",
                "train.eval_every=8000",
                "train.eval_episodes=10",
                "train.log_every=4000",
                "train.buffer_per_task=10000",
                "agent.hidden_sizes=[64,64]",
                "train.progress=false",
            ]
        )
        == 0
    )
    final = [r for r in read_metrics(run_dir) if "eval/success_mean" in r][-1]
    assert final["step"] == 8000
    assert final["eval/success_mean"] >= 0.8


@pytest.mark.parametrize("precision", ["auto", "float32"])
def test_the_recorded_precision_is_sb3s_float32_so_auto_and_float32_runs_are_one_method(precision):
    from mtrl.analysis.report import method_key

    cfg = load_config("toy-mtsac", [*TINY, f"sac.precision={precision}"])
    num_tasks = make_suite(cfg).num_tasks
    data = peer.run_config(cfg, num_tasks, None)
    assert data["sac"]["precision"] == "float32"
    other = "float32" if precision == "auto" else "auto"
    other_cfg = load_config("toy-mtsac", [*TINY, f"sac.precision={other}"])
    assert method_key(data) == method_key(peer.run_config(other_cfg, num_tasks, None))
