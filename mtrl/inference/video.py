"""``mtrl eval --video``: one deterministic episode per task, filmed as ``RUN_DIR/videos/<task>.mp4``.

Each task runs its first variant (Meta-World: goal 0, the first episode of the final
evaluation) until the time limit, or a short tail (a tenth of the time limit) after its
first success, so the video shows the success held. A bar along the bottom of every frame
is red until the first successful step and green from it on. Long episodes are filmed
every k-th step, so a video holds at most :data:`MAX_FRAMES` frames (Meta-World's 500
steps: every 4th, 6.25 s at 20 fps, which is real time). Frames come from the env's
``render_slots`` (see :class:`mtrl.suite.MultiTaskVecEnv`); files are written with imageio
and imageio-ffmpeg (the ``video`` extra), atomically.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mtrl.atomic_write import atomic_write
from mtrl.errors import ConfigError, RenderUnavailable, install_hint
from mtrl.suite import MultiTaskVecEnv
from mtrl.training.evaluation import Policy

FPS = 20
MAX_FRAMES = 125
SUCCESS, NOT_YET = (40, 170, 70), (200, 45, 45)  # colours of the bar


@dataclass
class Video:
    """One task's video: where it is, its frames, the episode's steps and its first success."""

    task: str
    path: Path
    frames: int
    steps: int
    first_success: int | None  # the step of the first success, None if none

    @property
    def success(self) -> bool:
        return self.first_success is not None


def require_video_extra() -> None:
    """A one-line :class:`ConfigError` when imageio or its ffmpeg plugin is missing."""
    try:
        import imageio  # noqa: F401
        import imageio_ffmpeg  # noqa: F401
    except ImportError as e:
        raise ConfigError(
            f"--video needs imageio and imageio-ffmpeg ({e.name} is missing): {install_hint('video')}"
        ) from None


def video_path(out_dir: Path, task: str) -> Path:
    """``out_dir/<task>.mp4``, with characters unsafe in file names replaced by '_'."""
    return Path(out_dir) / (re.sub(r"[^A-Za-z0-9._-]", "_", task) + ".mp4")


def mark(frame: np.ndarray, succeeded: bool) -> np.ndarray:
    """A copy of ``frame`` with the success bar along its bottom edge."""
    out = np.array(frame, dtype=np.uint8, copy=True)
    out[-max(3, out.shape[0] // 24) :] = SUCCESS if succeeded else NOT_YET
    return out


def film(
    policy: Policy, env: MultiTaskVecEnv, task_names: list[str], tasks: list[str], out_dir: Path, fps: int = FPS
) -> list[Video]:
    """Film one deterministic episode of each of ``tasks`` on ``env`` (an evaluation env:
    slot t runs task t) into ``out_dir``. :class:`RenderUnavailable` when the env cannot
    render (its ``render_slots`` returns None) or cannot here (no OpenGL backend); videos
    already written are kept."""
    n, num_tasks = env.num_slots, len(task_names)
    every = max(1, -(-env.max_episode_steps // MAX_FRAMES))
    tail = max(1, env.max_episode_steps // 10)
    slot_task = np.arange(n) % num_tasks
    videos = []
    for name in tasks:
        slot = task_names.index(name)
        obs = np.zeros((n, env.obs_dim), np.float32)
        active = np.zeros(n, bool)
        active[slot] = True
        obs[slot] = env.reset_slots(np.array([slot]), np.array([slot]), np.array([0]))[0]
        frames = [mark(_frame(env, slot), False)]
        first_success, step = None, 0
        while True:
            result = env.step(policy(obs, slot_task), active)
            step += 1
            obs[slot] = result.obs[slot]
            if first_success is None and result.success[slot]:
                first_success = step
            done = bool(result.terminated[slot] or result.truncated[slot]) or (
                first_success is not None and step - first_success >= tail
            )
            if step % every == 0 or done:
                frames.append(mark(_frame(env, slot), first_success is not None))
            if done:
                break
        path = write_mp4(video_path(out_dir, name), frames, fps)
        videos.append(Video(name, path, len(frames), step, first_success))
    return videos


def _frame(env: MultiTaskVecEnv, slot: int) -> np.ndarray:
    frames = env.render_slots(np.array([slot]))
    if frames is None:
        raise RenderUnavailable(f"{type(env).__name__} cannot render (its suite gives no render_slots)")
    return frames[0]


def write_mp4(path: Path, frames: list[np.ndarray], fps: int = FPS) -> Path:
    """Write ``frames`` (H, W, 3 uint8) as an H.264 MP4, atomically."""
    import imageio.v3 as iio

    stack = np.stack(frames)
    return atomic_write(
        path, lambda f: iio.imwrite(f, stack, extension=".mp4", plugin="FFMPEG", fps=fps, macro_block_size=16)
    )
