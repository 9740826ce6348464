"""Off-screen MuJoCo frames without a display, for ``mtrl eval --video`` (Meta-World, or any
suite of gymnasium ``MujocoEnv`` objects).

MuJoCo renders through the OpenGL backend that ``MUJOCO_GL`` names: ``egl`` (a GPU driver,
or Mesa's software EGL), ``osmesa`` (software; ``apt-get install libosmesa6``) or ``glfw``
(needs a display). When ``MUJOCO_GL`` is unset, :func:`gl_backend` tries glfw (only with a
``DISPLAY``), egl, then osmesa, each in a child process -- a backend that fails can abort
the process that tried it -- and sets ``MUJOCO_GL`` to the first that renders.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from typing import Any

import numpy as np

from mtrl.errors import RenderUnavailable

BACKENDS = ("glfw", "egl", "osmesa")
GL_HINT = (
    "install OSMesa (apt-get install libosmesa6) and set MUJOCO_GL=osmesa, "
    "or set MUJOCO_GL=egl on a machine with a GPU driver"
)

_PROBE = """
import mujoco
from mujoco.{name} import GLContext
context = GLContext(16, 16)
context.make_current()
model = mujoco.MjModel.from_xml_string("<mujoco><worldbody><geom size='0.1'/></worldbody></mujoco>")
mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_150)
context.free()
"""


@functools.cache
def gl_backend() -> str | None:
    """The OpenGL backend MuJoCo renders with here (``MUJOCO_GL``'s, or the first that works,
    which is then set in ``MUJOCO_GL``), or None when none renders. Checked once per process."""
    chosen = os.environ.get("MUJOCO_GL")
    candidates = [chosen] if chosen else (["glfw"] if os.environ.get("DISPLAY") else []) + ["egl", "osmesa"]
    for name in candidates:
        if name in BACKENDS and _renders(name):
            os.environ["MUJOCO_GL"] = name
            return name
    return None


def no_backend_message() -> str:
    """One line: no OpenGL backend renders here, what was tried, and what to install."""
    chosen = os.environ.get("MUJOCO_GL")
    tried = (
        f"MUJOCO_GL={chosen} does not render"
        if chosen
        else (f"tried {'glfw, ' if os.environ.get('DISPLAY') else ''}egl and osmesa")
    )
    return f"no OpenGL backend for MuJoCo rendering here ({tried}); {GL_HINT}"


def _renders(backend: str, timeout: float = 120.0) -> bool:
    """Can a child process make a MuJoCo rendering context with ``backend``?"""
    env = {**os.environ, "MUJOCO_GL": backend}
    try:
        probe = subprocess.run(
            [sys.executable, "-c", _PROBE.format(name=backend)], env=env, capture_output=True, timeout=timeout
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return probe.returncode == 0


class MujocoFrames:
    """RGB frames of MuJoCo envs from a named camera, one off-screen renderer per env.
    ``flip``: turn the image upside down (Meta-World's cameras render it that way)."""

    def __init__(self, size: int, camera: str, flip: bool = False):
        self.size, self.camera, self.flip = size, camera, flip
        self._renderers: dict[int, tuple[Any, Any]] = {}  # id(env) -> (env, renderer); the env kept alive

    def render(self, env: Any) -> np.ndarray:
        """The current frame of ``env`` (a gymnasium ``MujocoEnv``), (size, size, 3) uint8.
        :class:`RenderUnavailable` with what to install when no OpenGL backend works."""
        entry = self._renderers.get(id(env))
        if entry is None:
            backend = gl_backend()
            if backend is None:
                raise RenderUnavailable(no_backend_message())
            from gymnasium.envs.mujoco.mujoco_rendering import MujocoRenderer

            entry = self._renderers[id(env)] = (
                env,
                MujocoRenderer(env.model, env.data, None, self.size, self.size, camera_name=self.camera),
            )
        try:
            frame = entry[1].render("rgb_array")
        except Exception as e:  # a backend that imports but cannot make a context
            why = (str(e).strip().splitlines() or [type(e).__name__])[0][:120]
            raise RenderUnavailable(
                f"MuJoCo rendering failed with MUJOCO_GL={os.environ.get('MUJOCO_GL')} ({why}); {GL_HINT}"
            ) from None
        return np.ascontiguousarray(frame[::-1] if self.flip else frame)

    def close(self) -> None:
        """Free the rendering contexts (before the envs go, which avoids EGL errors at exit)."""
        for _, renderer in self._renderers.values():
            try:
                renderer.close()
            except Exception:
                pass
        self._renderers.clear()
