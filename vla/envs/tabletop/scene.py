"""The tabletop scene: Meta-World's Sawyer arm and table (installed with metaworld, so nothing downloads), with
object slots and target pads that each episode recolors, reshapes and places.

The model is compiled once per env with every variant in it: each of the object slots is one free body holding
a cube, a ball and a cylinder geom, of which an episode shows one (the others are made invisible and
collision-free), and each pad is a flat visual disc whose color and place an episode sets. Changing those
per episode is a write into mjModel arrays, not a recompile.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import mujoco
import numpy as np

COLORS: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.1, 0.1), "green": (0.1, 0.7, 0.15), "blue": (0.1, 0.25, 0.9),
    "yellow": (0.95, 0.85, 0.1), "purple": (0.55, 0.15, 0.75), "orange": (1.0, 0.5, 0.05),
}
SHAPES = ("cube", "ball", "cylinder")
N_OBJECTS = 4  # per scene: two colors x two shapes (language.scene_objects)
N_PADS = 2
OBJECT_HALF = 0.022  # half-size of every shape (m): graspable by the Sawyer gripper, ~8 px wide at 96 px
PAD_RADIUS = 0.05
TABLE_Z = 0.0
# Where objects and pads may be placed (robot frame: the arm stands at the origin facing +y).
PLACE_LOW, PLACE_HIGH = np.array([-0.22, 0.5]), np.array([0.22, 0.78])
MIN_SPACING = 0.11  # between centers: room for the gripper beside an object when pushing it
# The hand starts at a point drawn per episode in this box, above every object. A fixed start (Meta-World's)
# lets a policy read the goal off the arm: demonstrations run straight from one point, so where the hand is
# says where it is going, and a policy fits them without looking at the target (a copycat: measured on touch,
# its first command was the same for every target).
HAND_LOW, HAND_HIGH = np.array([-0.2, 0.45, 0.12]), np.array([0.2, 0.7, 0.25])
MOCAP_LOW, MOCAP_HIGH = np.array([-0.35, 0.38, 0.05]), np.array([0.35, 0.92, 0.35])


@dataclass(frozen=True)
class SceneObject:
    color: str
    shape: str
    xy: tuple[float, float]

    @property
    def name(self) -> str:
        return f"{self.color} {self.shape}"


@dataclass(frozen=True)
class Scene:
    objects: tuple[SceneObject, ...]
    pads: tuple[tuple[str, tuple[float, float]], ...]  # (color, xy)
    hand: tuple[float, float, float]  # where the hand starts

    def to_json(self) -> dict:
        return {"objects": [{"color": o.color, "shape": o.shape, "xy": list(o.xy)} for o in self.objects],
                "pads": [{"color": c, "xy": list(xy)} for c, xy in self.pads], "hand": list(self.hand)}


def sample_positions(rng: np.random.Generator, n: int) -> list[tuple[float, float]]:
    """n points in the placement area, at least MIN_SPACING apart (rejection sampling, restarted when stuck)."""
    while True:
        points: list[np.ndarray] = []
        for _ in range(200):
            p = rng.uniform(PLACE_LOW, PLACE_HIGH)
            if all(np.linalg.norm(p - q) >= MIN_SPACING for q in points):
                points.append(p)
                if len(points) == n:
                    return [(round(float(p[0]), 4), round(float(p[1]), 4)) for p in points]


def _metaworld_arm_xml() -> str:
    import metaworld

    return os.path.join(os.path.dirname(metaworld.__file__), "assets/sawyer_xyz/sawyer_reach_v3.xml")


def _look_at(pos: np.ndarray, target: np.ndarray) -> list[float]:
    """xyaxes of a camera at `pos` looking at `target`, with the image's up toward world +z."""
    forward = (target - pos) / np.linalg.norm(target - pos)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    return [*right, *up]


SCENE_CAMERA_POS, SCENE_CAMERA_TARGET = np.array([0.0, 1.1, 0.5]), np.array([0.0, 0.62, 0.02])


def build_model() -> mujoco.MjModel:
    """Meta-World's reach scene without its object and goal, plus the object slots, pads and two cameras."""
    spec = mujoco.MjSpec.from_file(_metaworld_arm_xml())
    spec.delete(spec.body("obj"))
    spec.delete(spec.site("goal"))
    world = spec.worldbody
    # Scene camera: in front of the table looking back at the arm, so the robot's left is the image's right.
    world.add_camera(name="scene", pos=SCENE_CAMERA_POS, fovy=50,
                     xyaxes=_look_at(SCENE_CAMERA_POS, SCENE_CAMERA_TARGET))
    # Wrist camera: on the hand, behind the fingers, looking down along them.
    spec.body("hand").add_camera(name="wrist", pos=[0.02, -0.0, 0.0], fovy=90, xyaxes=[0, 0, 1, 0, 1, 0])
    for i in range(N_PADS):
        pad = world.add_body(name=f"pad{i}", pos=[0.0, 0.0, TABLE_Z])
        pad.add_geom(name=f"pad{i}", type=mujoco.mjtGeom.mjGEOM_CYLINDER, size=[PAD_RADIUS, 0.001, 0],
                     pos=[0, 0, 0.001], contype=0, conaffinity=0, rgba=[1, 1, 1, 1])
    h = OBJECT_HALF
    sizes = {"cube": ([h, h, h], mujoco.mjtGeom.mjGEOM_BOX), "ball": ([h, 0, 0], mujoco.mjtGeom.mjGEOM_SPHERE),
             "cylinder": ([h, h, 0], mujoco.mjtGeom.mjGEOM_CYLINDER)}
    for i in range(N_OBJECTS):
        body = world.add_body(name=f"obj{i}", pos=[0.0, 0.0, h])
        body.add_freejoint(name=f"obj{i}")
        # Explicit inertia, so that the hidden variants do not weigh anything.
        body.mass, body.inertia, body.explicitinertial = 0.1, [2e-5, 2e-5, 2e-5], True
        for shape in SHAPES:
            size, kind = sizes[shape]
            # condim 4 adds torsional friction and the ball's rolling friction keeps it where it is pushed.
            body.add_geom(name=f"obj{i}_{shape}", type=kind, size=size, rgba=[1, 1, 1, 1], friction=[1, 0.1, 0.002],
                          condim=6 if shape == "ball" else 4, solref=[0.01, 1], solimp=[0.99, 0.99, 0.01, 0.5, 2])
    return spec.compile()


class SceneModel:
    """A compiled model and data plus the ids that set a scene and read it back."""

    def __init__(self):
        self.model = build_model()
        self.model.vis.quality.offsamples = 0
        # Weld the hand to the mocap body with no offset (Meta-World's reset_mocap_welds).
        for i in np.flatnonzero(self.model.eq_type == mujoco.mjtEq.mjEQ_WELD):
            self.model.eq_data[i] = [0, 0, 0, 0, 0, 0, -1, 0, 0, 0, 5]
        self.data = mujoco.MjData(self.model)
        m = self.model
        self.geom = {(i, s): m.geom(f"obj{i}_{s}").id for i in range(N_OBJECTS) for s in SHAPES}
        self.pad_geom = [m.geom(f"pad{i}").id for i in range(N_PADS)]
        self.pad_body = [m.body(f"pad{i}").id for i in range(N_PADS)]
        self.qpos_adr = [m.jnt_qposadr[m.joint(f"obj{i}").id] for i in range(N_OBJECTS)]
        self.qvel_adr = [m.jnt_dofadr[m.joint(f"obj{i}").id] for i in range(N_OBJECTS)]
        self.mocap = m.body_mocapid[m.body("mocap").id]
        self.hand = m.body("hand").id
        self.claws = m.body("rightclaw").id, m.body("leftclaw").id
        self.effectors = m.site("rightEndEffector").id, m.site("leftEndEffector").id
        self._contype = {key: (int(m.geom_contype[g]), int(m.geom_conaffinity[g])) for key, g in self.geom.items()}

    def set_scene(self, scene: Scene) -> None:
        m, d = self.model, self.data
        mujoco.mj_resetData(m, d)
        for i, obj in enumerate(scene.objects):
            for shape in SHAPES:
                g, shown = self.geom[(i, shape)], shape == obj.shape
                m.geom_rgba[g] = (*COLORS[obj.color], 1.0) if shown else (0, 0, 0, 0)
                m.geom_contype[g], m.geom_conaffinity[g] = self._contype[(i, shape)] if shown else (0, 0)
            d.qpos[self.qpos_adr[i]: self.qpos_adr[i] + 7] = [*obj.xy, TABLE_Z + OBJECT_HALF, 1, 0, 0, 0]
        for i, (color, xy) in enumerate(scene.pads):
            m.geom_rgba[self.pad_geom[i]] = (*COLORS[color], 1.0)
            m.body_pos[self.pad_body[i]] = (*xy, TABLE_Z)
        # Bring the hand to its start with the gripper open (Meta-World's _reset_hand).
        for _ in range(50):
            d.mocap_pos[self.mocap] = scene.hand
            d.mocap_quat[self.mocap] = (1, 0, 1, 0)
            self.step_physics(-1.0, 5)

    def step_physics(self, grip: float, n: int) -> None:
        self.data.ctrl[:] = (grip, -grip)
        mujoco.mj_step(self.model, self.data, nstep=n)

    def object_pos(self, i: int) -> np.ndarray:
        return self.data.qpos[self.qpos_adr[i]: self.qpos_adr[i] + 3].copy()

    def hand_pos(self) -> np.ndarray:
        return self.data.xpos[self.hand].copy()

    def tcp(self) -> np.ndarray:
        """The point between the fingertips (Meta-World's tcp_center)."""
        return (self.data.site_xpos[self.effectors[0]] + self.data.site_xpos[self.effectors[1]]) / 2

    def gripper_opening(self) -> float:
        """Finger distance normalized to [0, 1] as Meta-World's observation has it."""
        right, left = (self.data.xpos[c] for c in self.claws)
        return float(np.clip(np.linalg.norm(right - left) / 0.1, 0.0, 1.0))
