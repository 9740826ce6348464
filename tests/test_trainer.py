"""Bookkeeping of the training loop, checked through a real run on a scripted suite."""

import pytest
import torch
import yaml

from mtrl.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint
from mtrl.config import load_config
from mtrl.errors import ConfigError
from mtrl.run_files import read_run
from mtrl.training.logger import read_metrics
from mtrl.training.trainer import train

from conftest import TOY_FAST, make_config

COUNTDOWN = {
    "env": {"suite": "countdown"},
    "agent": {"name": "mtsac", "hidden_sizes": [8]},
    "train": {
        "total_steps": 40,
        "warmup_steps": 20,
        "batch_per_task": 4,
        "buffer_per_task": 100,
        "eval_every": 0,
        "eval_episodes": 2,
        "log_every": 10,
        "checkpoint_every": 0,
        "save_replay": True,
        "progress": False,
    },
}


def test_time_limit_is_stored_as_non_terminal_with_the_true_final_observation(run_dir):
    train(make_config(COUNTDOWN, run={"dir": str(run_dir)}))
    replay = load_checkpoint(latest_checkpoint(run_dir))["replay"]
    size = replay["size"]
    # task 0 ends by termination at step 3: those transitions carry terminated=1
    t0_next = replay["next_obs"][0, : size[0], 0]
    t0_term = replay["terminated"][0, : size[0]]
    assert torch.equal(t0_term, t0_next == 3)
    assert t0_term.any()
    # task 1 ends by the time limit at step 5: never terminal, and the next observation is
    # the real last state (t=5), not the first observation of the next episode (t=0)
    t1_next = replay["next_obs"][1, : size[1], 0]
    assert not replay["terminated"][1, : size[1]].any()
    assert (t1_next == 5).any() and not (t1_next == 0).any()


def test_episode_metrics_and_per_task_alphas_are_logged(run_dir):
    train(make_config(COUNTDOWN, run={"dir": str(run_dir)}))
    records = read_metrics(run_dir)
    last = [r for r in records if "alpha/count-1" in r][-1]
    assert {"alpha/count-0", "train/episode_success/count-0", "loss/critic"} <= set(last)
    assert {"per_task/critic_loss/count-0", "per_task/critic_loss/count-1", "per_task/q_mean/count-1"} <= set(last)
    # the scripted env succeeds at step 2 in every episode of both tasks
    assert last["train/episode_success/count-0"] == 1.0 and last["train/episode_success/count-1"] == 1.0
    final = [r for r in records if "eval/success_mean" in r][-1]
    assert final["step"] == 40 and final["eval/success_mean"] == 1.0


def test_resume_continues_from_the_latest_checkpoint(run_dir):
    cfg = make_config(
        TOY_FAST, run={"dir": str(run_dir)}, train={"total_steps": 2400, "checkpoint_every": 800, "eval_every": 1200}
    )
    result = train(cfg)
    assert result.env_steps == 2400
    assert [p.name for p in list_checkpoints(run_dir)] == ["step_1600.pt", "step_2400.pt"]  # keep=2
    first = load_checkpoint(latest_checkpoint(run_dir))
    resumed = train(
        make_config(
            TOY_FAST,
            run={"dir": str(run_dir)},
            resume=True,
            train={"total_steps": 4000, "checkpoint_every": 800, "eval_every": 1200},
        )
    )
    assert resumed.env_steps == 4000
    second = load_checkpoint(latest_checkpoint(run_dir))
    assert second["loop"]["updates"] > first["loop"]["updates"]
    steps = [r["step"] for r in read_metrics(run_dir)]
    assert steps == sorted(steps) and steps[0] <= 2400 < steps[-1] == 4000  # appended, not restarted


def test_a_run_resumes_only_with_the_agent_settings_it_was_trained_with(run_dir):
    """A setting without weights of its own (here CARE's embedding ReLU) would load a
    checkpoint silently into another network, so resuming with another value is refused in
    one line. A run recorded before the key existed ran without the ReLU, and reads so."""
    care = {"name": "care", "hidden_sizes": [8], "num_encoders": 2, "encoder_hidden": [4], "encoder_dim": 4}
    care |= {"context_hidden": [4], "task_embedding": "one_hot"}  # the countdown suite ships no sentence embeddings
    train(make_config(COUNTDOWN, run={"dir": str(run_dir)}, agent=care))
    saved = run_dir / "config.yaml"
    recorded = yaml.safe_load(saved.read_text())
    assert recorded["agent"].pop("embedding_relu") is True  # as a run before the key existed
    saved.write_text(yaml.safe_dump(recorded, sort_keys=False))
    assert read_run(run_dir).agent.embedding_relu is False
    longer = {"total_steps": 60}
    with pytest.raises(ConfigError, match=r"agent.embedding_relu=True, but the run .* was trained with False"):
        train(make_config(COUNTDOWN, run={"dir": str(run_dir)}, agent=care, resume=True, train=longer))
    resumed = load_config(str(saved), ["resume=true", "train.total_steps=60"])  # what a stopped run prints
    assert resumed.agent.embedding_relu is False
    assert train(resumed).env_steps == 60


def test_a_run_directory_is_never_overwritten(run_dir):
    train(make_config(COUNTDOWN, run={"dir": str(run_dir)}))
    before = (run_dir / "metrics.jsonl").read_bytes()
    with pytest.raises(ConfigError, match="already holds a run"):
        train(make_config(COUNTDOWN, run={"dir": str(run_dir)}))
    assert (run_dir / "metrics.jsonl").read_bytes() == before


def test_resume_of_a_folder_without_a_run_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="holds no run to resume"):
        train(make_config(COUNTDOWN, run={"dir": str(tmp_path / "empty")}, resume=True))
    assert not (tmp_path / "empty").exists()


def test_config_yaml_is_fully_resolved(run_dir):
    import yaml

    train(make_config(COUNTDOWN, run={"dir": str(run_dir)}))
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["sac"]["gamma"] == 0.99 and saved["env"]["terminate_at"] == 3
    assert saved["agent"]["hidden_sizes"] == [8] and saved["scheduler"]["name"] == "round_robin"


def test_random_streams_are_independent_and_reproducible():
    from mtrl.seeding import STREAMS, run_seeds

    a, b = run_seeds(0), run_seeds(1)
    assert a == run_seeds(0)
    values = [getattr(a, s) for s in STREAMS]
    assert len(set(values)) == len(values)  # no two consumers share a seed
    assert not set(values) & {getattr(b, s) for s in STREAMS}
