"""What the final-state head's own pass costs a Meta-World training step (session 52): forward and backward of
`VLAModel.keypoint_head_loss` on a batch of first frames, in bf16 autocast as the trainer runs it, against the
whole step's forward and backward on a training batch, for head batches of 32 and 16, with the vision tower's
head pass eager (as the trainer runs it: only the language model's forward is compiled) and compiled.
Random pixels and states: the cost does not depend on them. Nothing else may run on the machine.
Usage: head_pass_speed.py CHECKPOINT [REPEATS=60]"""
import json
import sys
import time

import numpy as np
import torch

from vla.policies.vla_policy import VLAPolicy

policy = VLAPolicy.from_pretrained(sys.argv[1], merge_lora=False)
repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 60
model = policy.model.train()
backbone = model.backbone
size = backbone.model.config.vision_config.image_size
task = next(iter(model._text_ids)) if model._text_ids else "reach the goal"
rng = np.random.default_rng(0)


def batch(n: int, cameras: int):
    images = torch.from_numpy(rng.integers(0, 256, (n, cameras, size, size, 3), dtype=np.uint8))
    state = rng.uniform(-0.5, 0.5, (n, 4)).astype(np.float32)
    return images, state


def timed(step) -> float:
    for _ in range(5):
        step()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    return (time.perf_counter() - start) / repeats


def head_step(n: int):
    images, state = batch(n, 1)

    def step():
        model.zero_grad(set_to_none=True)
        prefix = model.build_prefix(images, state, [task] * n, head_only=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model.keypoint_head_loss(prefix, state, state + 0.1, state - 0.1)
        loss.backward()
    return step


def whole_step(n: int):
    images, state = batch(n, len(policy.schema.image_keys))
    target = torch.zeros(n, model.n_action_values)
    mask = torch.ones(n, model.n_action_values, dtype=torch.bool)

    def step():
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            prefix = model.build_prefix(images, state, [task] * n)
            loss = model(prefix, target=target, target_mask=mask)["loss"]
        loss.backward()
    return step


model.cfg.final_state_weight = 0.0  # the whole step without the head, which first_frames would add
rows = {}
backbone.compile(training=True)
rows["step without head, compiled (batch 32)"] = timed(whole_step(32))
for n in (32, 16):
    rows[f"head pass eager, batch {n}"] = timed(head_step(n))
backbone.image_features = torch.compile(backbone.image_features)
for n in (32, 16):
    rows[f"head pass compiled, batch {n}"] = timed(head_step(n))
for name, seconds in rows.items():
    print(json.dumps({"part": name, "ms": round(1000 * seconds, 1)}))
