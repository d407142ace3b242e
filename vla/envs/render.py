"""Offscreen MuJoCo rendering at the model's resolution with the settings that matter on a CPU.

Shadows, reflections and multisampling cost ~10x with Mesa's software EGL and add nothing a small policy
needs. Measured on drawer-close-v3 at 96x96: 17 ms/frame with them off, 131 ms with Meta-World's defaults.
"""

from __future__ import annotations

import atexit
import os
import weakref

os.environ.setdefault("MUJOCO_GL", "egl")

import mujoco
import numpy as np

_live: weakref.WeakSet = weakref.WeakSet()


def _close_all() -> None:
    # Close EGL contexts before interpreter teardown unloads the EGL bindings their __del__ needs.
    for renderer in list(_live):
        renderer.close()


class FastRenderer:
    def __init__(self, model: mujoco.MjModel, height: int, width: int, camera: str, fast: bool = True):
        if fast:
            # Multisampling is fixed when the offscreen buffer is made, so set it before the context.
            model.vis.quality.offsamples = 0
        self._renderer = mujoco.Renderer(model, height, width)
        if not _live:
            # Registered after mujoco.egl's own exit hook (made with the first context), so it runs first.
            atexit.register(_close_all)
        _live.add(self)
        if fast:
            flags = self._renderer.scene.flags
            flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
            flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False
            flags[mujoco.mjtRndFlag.mjRND_SKYBOX] = False
        self._camera = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, camera)
        if self._camera < 0:
            raise ValueError(f"camera {camera!r} is not in the MJCF model")

    def render(self, data: mujoco.MjData) -> np.ndarray:
        self._renderer.update_scene(data, camera=self._camera)
        return self._renderer.render()

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
