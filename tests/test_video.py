"""``mtrl eval --video``: one MP4 per task, the success bar, a missing renderer, report links."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

import mtrl
from mtrl.builders import make_suite
from mtrl.cli import main
from mtrl.errors import RenderUnavailable, install_hint
from mtrl.inference.video import NOT_YET, SUCCESS, film
from mtrl.seeding import run_seeds
from mtrl.suite import MultiTaskVecEnv

iio = pytest.importorskip("imageio.v3")
pytest.importorskip("imageio_ffmpeg")


def fresh_copy(run_dir: Path, tmp_path: Path) -> Path:
    import shutil

    copy = Path(shutil.copytree(run_dir, tmp_path / "run"))
    shutil.rmtree(copy / "videos", ignore_errors=True)
    (copy / "eval.json").unlink(missing_ok=True)
    return copy


def one_error_line(capsys) -> str:
    """The one line stderr has besides `mtrl eval`'s own "evaluating ..." progress line."""
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if not line.startswith("mtrl: evaluating ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def expected_frames(run_dir: Path, tasks: list[str]) -> list[int]:
    """Frames of each task's video, from an independent rollout on the same env: the first
    observation, then every step until the time limit or 2 steps (a tenth of 20) after success."""
    policy = mtrl.load(run_dir, device="cpu")
    env = make_suite(policy.config).make_eval_env(1, seed=run_seeds(policy.config.seed).evaluation)
    counts = []
    for name in tasks:
        t = policy.task_names.index(name)
        obs = np.zeros((env.num_slots, 2), np.float32)
        obs[t] = env.reset_slots(np.array([t]), np.array([t]), np.array([0]))[0]
        steps, first = 0, None
        while steps < 20 and (first is None or steps - first < 2):
            result = env.step(policy.act(obs, np.arange(env.num_slots) % 4))
            obs[t] = result.obs[t]
            steps += 1
            first = steps if first is None and result.success[t] else first
        counts.append(steps + 1)
    return counts


def test_video_writes_one_mp4_per_requested_task(toy_run, tmp_path, capsys):
    run_dir = fresh_copy(toy_run, tmp_path)
    tasks = ["reach-west", "reach-east"]
    assert main(["eval", str(run_dir), "--video", "--tasks", *tasks, "--episodes", "1", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert sorted(p.name for p in (run_dir / "videos").iterdir()) == [
        "reach-east.mp4",
        "reach-west.mp4",
    ]  # no temp files
    assert (run_dir / "eval.json").is_file()
    for name, frames in zip(tasks, expected_frames(run_dir, tasks)):
        path = run_dir / "videos" / f"{name}.mp4"
        assert path.stat().st_size > 0 and f"wrote {path} ({frames} frames" in out
        video = iio.imread(path, plugin="FFMPEG")
        assert video.shape == (frames, 128, 128, 3)


def test_video_without_tasks_films_every_task_and_eval_json_is_unchanged(toy_run, tmp_path):
    run_dir = fresh_copy(toy_run, tmp_path)
    assert main(["eval", str(run_dir), "--episodes", "2", "--device", "cpu"]) == 0
    plain = json.loads((run_dir / "eval.json").read_text())
    assert main(["eval", str(run_dir), "--video", "--episodes", "2", "--device", "cpu"]) == 0
    assert json.loads((run_dir / "eval.json").read_text()) == plain  # filming does not touch the evaluation's env
    assert sorted(p.stem for p in (run_dir / "videos").glob("*.mp4")) == sorted(
        mtrl.load(run_dir, device="cpu").task_names
    )


def test_the_bar_is_red_until_the_first_success_and_green_from_it(tmp_path):
    """A scripted policy that heads straight for the goal: success within a few steps, then 2 more."""
    from mtrl.envs.toy import ToyConfig, ToySuite

    suite = ToySuite(ToyConfig())
    env = suite.make_eval_env(1, seed=0)

    def to_goal(obs, task):
        return np.clip((env.goals[task] - obs) / env.cfg.speed, -1, 1)

    [video] = film(to_goal, env, suite.task_names, ["reach-north"], tmp_path)
    assert video.success and video.steps == video.first_success + 2 and video.frames == video.steps + 1
    frames = iio.imread(video.path, plugin="FFMPEG")
    bar = frames[:, -2].mean(axis=1)  # the bottom row's colour, per frame
    colours = [SUCCESS if step >= video.first_success else NOT_YET for step in range(video.frames)]
    np.testing.assert_allclose(bar, np.array(colours, float), atol=30)  # lossy video, exact colours


@pytest.mark.parametrize(
    "tasks, message",
    [
        (["reach-west", "reach-wst"], "--tasks: unknown task 'reach-wst' (did you mean 'reach-west'"),
        (["nope"], "the run's tasks are: reach-east, reach-north, reach-west, reach-south"),
    ],
)
def test_unknown_task_exits_2_with_one_line_and_writes_nothing(toy_run, tmp_path, capsys, tasks, message):
    run_dir = fresh_copy(toy_run, tmp_path)
    assert main(["eval", str(run_dir), "--video", "--tasks", *tasks, "--device", "cpu"]) == 2
    assert message in one_error_line(capsys)
    assert not (run_dir / "videos").exists() and not (run_dir / "eval.json").exists()


def test_tasks_without_video_exits_2(toy_run, tmp_path, capsys):
    run_dir = fresh_copy(toy_run, tmp_path)
    assert main(["eval", str(run_dir), "--tasks", "reach-west", "--device", "cpu"]) == 2
    assert "--tasks picks the tasks to film; add --video" in one_error_line(capsys)


def test_missing_video_extra_exits_2_naming_it(toy_run, tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # import fails
    run_dir = fresh_copy(toy_run, tmp_path)
    assert main(["eval", str(run_dir), "--video", "--device", "cpu"]) == 2
    assert install_hint("video") in one_error_line(capsys)
    assert not (run_dir / "eval.json").exists()


def test_without_an_opengl_backend_one_line_says_what_to_install_and_eval_json_is_written(
    toy_run, tmp_path, capsys, monkeypatch
):
    """The toy suite draws with numpy; here its renderer behaves as a MuJoCo suite's does where
    no OpenGL backend works (envs/mujoco_render.py's check made to find none)."""
    import mtrl.envs.mujoco_render
    from mtrl.envs.mujoco_render import MujocoFrames
    from mtrl.envs.toy import PointMassVecEnv

    monkeypatch.setattr(mtrl.envs.mujoco_render, "gl_backend", lambda: None)
    monkeypatch.setattr(PointMassVecEnv, "render_slots", lambda self, slots: [MujocoFrames(128, "corner").render(self)])
    run_dir = fresh_copy(toy_run, tmp_path)
    assert main(["eval", str(run_dir), "--video", "--episodes", "1", "--device", "cpu"]) == 0
    line = one_error_line(capsys)
    assert line.startswith("mtrl: warning: no videos: no OpenGL backend for MuJoCo rendering here")
    assert "apt-get install libosmesa6" in line and "MUJOCO_GL=osmesa" in line and "MUJOCO_GL=egl" in line
    assert (run_dir / "eval.json").is_file() and not list(run_dir.glob("videos/*"))


def test_a_suite_that_cannot_render_says_so_and_still_evaluates(toy_run, tmp_path, capsys, monkeypatch):
    from mtrl.envs.toy import PointMassVecEnv

    monkeypatch.setattr(PointMassVecEnv, "render_slots", MultiTaskVecEnv.render_slots)  # the contract's default: None
    run_dir = fresh_copy(toy_run, tmp_path)
    assert main(["eval", str(run_dir), "--video", "--episodes", "1", "--device", "cpu"]) == 0
    assert "no videos: PointMassVecEnv cannot render" in one_error_line(capsys)
    assert (run_dir / "eval.json").is_file()


def test_a_backend_that_fails_in_process_is_a_render_unavailable(monkeypatch):
    import mtrl.envs.mujoco_render

    class Broken:
        model = data = None

    monkeypatch.setattr(mtrl.envs.mujoco_render, "gl_backend", lambda: "egl")
    monkeypatch.setattr(
        "gymnasium.envs.mujoco.mujoco_rendering.MujocoRenderer",
        lambda *a, **k: type("R", (), {"render": lambda self, mode: 1 / 0, "close": lambda self: None})(),
    )
    with pytest.raises(
        RenderUnavailable, match="MuJoCo rendering failed with MUJOCO_GL=.*division by zero.*libosmesa6"
    ):
        mtrl.envs.mujoco_render.MujocoFrames(16, "corner").render(Broken())


def test_an_unknown_mujoco_gl_value_is_no_backend(monkeypatch):
    from mtrl.envs.mujoco_render import gl_backend

    monkeypatch.setenv("MUJOCO_GL", "bogus")
    gl_backend.cache_clear()
    try:
        assert gl_backend() is None
    finally:
        gl_backend.cache_clear()


def test_report_links_the_videos(toy_run, tmp_path):
    pytest.importorskip("rliable")
    from mtrl.analysis.report import write_report

    run_dir = fresh_copy(toy_run, tmp_path)
    assert (
        main(
            [
                "eval",
                str(run_dir),
                "--video",
                "--tasks",
                "reach-east",
                "reach-north",
                "--episodes",
                "1",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    out = tmp_path / "report"
    write_report([run_dir], out, reps=20)
    text = (out / "summary.md").read_text()
    assert "## Videos" in text
    links = re.findall(r"\]\(<([^>]+)>\)", text)
    assert links == ["../run/videos/reach-east.mp4", "../run/videos/reach-north.mp4"]
    assert all((out / link).resolve().is_file() for link in links)


def test_report_without_videos_has_no_videos_section(toy_run, tmp_path):
    pytest.importorskip("rliable")
    from mtrl.analysis.report import write_report

    run_dir = fresh_copy(toy_run, tmp_path)
    write_report([run_dir], tmp_path / "report", reps=20)
    assert "## Videos" not in (tmp_path / "report" / "summary.md").read_text()


# --- Meta-World: real MuJoCo frames (needs an OpenGL backend: EGL, or OSMesa) ---------------


@pytest.mark.slow
def test_metaworld_video_of_a_scripted_expert_shows_its_success(tmp_path):
    from mtrl.envs.meta_world import MetaWorldConfig, MetaWorldSuite
    from mtrl.envs.mujoco_render import GL_HINT, gl_backend

    if gl_backend() is None:
        pytest.skip(f"no OpenGL backend for MuJoCo here: {GL_HINT}")
    from metaworld.policies import SawyerReachV3Policy

    suite = MetaWorldSuite(MetaWorldConfig(benchmark="MT1", tasks=["reach-v3"]), seed=0)
    env = suite.make_eval_env(1, seed=0)
    expert = SawyerReachV3Policy()
    try:
        [video] = film(
            lambda obs, task: np.stack([expert.get_action(o) for o in obs]),
            env,
            suite.task_names,
            ["reach-v3"],
            tmp_path,
        )
    finally:
        env.close()
    assert video.success and video.steps == video.first_success + 50  # a tenth of 500 steps after it
    frames = iio.imread(video.path, plugin="FFMPEG")
    assert frames.shape == (video.frames, 240, 240, 3)
    assert video.frames == 1 + video.steps // 4 + (video.steps % 4 != 0)  # every 4th step, and the last
    assert frames[0].std() > 20  # a scene, not a blank frame
    np.testing.assert_allclose(frames[-1, -2].mean(0), SUCCESS, atol=30)
