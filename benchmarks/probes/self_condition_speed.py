"""A self-conditioned training step of the tabletop policy with its images encoded once for both passes
(`Backbone.encode_images`, session 31) against encoded again in the no-gradient pass (as before), and the step
without self-conditioning, on a tabletop checkpoint's weights, at the trainer's batch under bf16 autocast (eager;
the trainer compiles the language model for long runs, which was not measured here).
Forward and backward only (no optimizer); images random; rounds interleaved, each row its median; nothing else
may run. Usage: self_condition_speed.py CHECKPOINT [rounds] [steps]"""
import dataclasses
import json
import statistics
import sys
import time

import numpy as np
import torch

from vla.policies.registry import load_policy

BATCH = 32
checkpoint, rounds, steps = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 5, \
    int(sys.argv[3]) if len(sys.argv) > 3 else 5
policy = load_policy(checkpoint)
model = policy.model
model.train()
rng = np.random.default_rng(0)
cams = len(policy.schema.image_keys)
side = model.cfg.backbone.image_size
tasks = ["lift the red cube", "push the blue ball to the left", "touch the green cylinder",
         "put the yellow cube on the purple pad"] * (BATCH // 4)
states = rng.uniform(-0.2, 0.3, (BATCH, model.state_tokenizer.action_dim)).astype(np.float32)
images = torch.from_numpy(rng.integers(0, 256, (BATCH, cams, side, side, 3), dtype=np.uint8))
target = torch.from_numpy(rng.uniform(-1, 1, (BATCH, model.n_action_values)).astype(np.float32))
mask = torch.ones_like(target, dtype=torch.bool)
with torch.autocast("cpu", dtype=torch.bfloat16):
    head = model.build_prefix(images, states, tasks, head_only=True)
first_frames = (head, states, states + 0.1, states + 0.05)
backbone, family = model.backbone, type(model.backbone)


def encoding_forward(inputs, past_key_values=None, use_cache=False):
    """The backbone's forward, encoding the images itself, whatever `encode_images` the model is given."""
    return family.forward(backbone, family.encode_images(backbone, inputs), past_key_values, use_cache)


def step(self_condition: float, encode_once: bool) -> float:
    model.cfg = dataclasses.replace(model.cfg, self_condition=self_condition)
    if encode_once:  # the family's own methods
        for name in ("encode_images", "forward"):
            vars(backbone).pop(name, None)
    else:  # as before: VLAModel.forward's call a no-op, so each pass encodes the images
        backbone.encode_images, backbone.forward = (lambda inputs: inputs), encoding_forward
    start = time.perf_counter()
    for i in range(steps):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            prefix = model.build_prefix(images, states, tasks)
            loss = model(prefix, target, mask, generator=torch.Generator().manual_seed(i),
                         first_frames=first_frames)["loss"]
        loss.backward()
        model.zero_grad(set_to_none=True)
    return (time.perf_counter() - start) / steps


configs = {"without self-conditioning": (0.0, True), "self-conditioned, images encoded twice (before)": (0.5, False),
           "self-conditioned, images encoded once (now)": (0.5, True)}
step(0.5, True)  # warm-up
times = {name: [] for name in configs}
for _ in range(rounds):
    for name, args in configs.items():
        times[name].append(step(*args))
result = {name: round(statistics.median(t), 4) for name, t in times.items()}
print(json.dumps({"checkpoint": checkpoint, "s_per_step": result, "rounds": rounds, "steps_per_round": steps}))
