"""Autoregressive decoding that acts on the expected value but feeds back the likeliest bin (greedy), not the
expected value re-binned, on a tabletop run's step-10000 checkpoint: seen lift and place, 15 episodes each
(README, tabletop, Levers left). Usage: greedy_feedback.py RUN_DIR"""
import dataclasses
import json
import os
import pathlib
import sys

os.environ.setdefault("MUJOCO_GL", "egl")

import torch

from vla.evaluate import evaluate_policy
from vla.policies.registry import load_policy
from vla.model import vla_model


def likeliest_bin(self, logits, value):
    """VLAModel._fed_back_ids, feeding back the likeliest bin instead of the decoded (expected) value's."""
    centers = torch.as_tensor(self.action_tokenizer.bin_centers(), device=logits.device)
    return self.action_ids(centers[logits.argmax(-1)])


vla_model.VLAModel._fed_back_ids = likeliest_bin
run = pathlib.Path(sys.argv[1])
policy = load_policy(run / "train/checkpoints/step_010000")
policy.cfg = policy.model.cfg = dataclasses.replace(policy.cfg, decoding="autoregressive", decode="expected")
r = evaluate_policy(policy, ["tabletop-lift", "tabletop-place"], 15, 100000, None, 15, policy.schema, out=run / "eval-greedy-feedback", video=False)
print(json.dumps({str(run): {t: round(v["success_rate"], 3) for t, v in r["tasks"].items()}}))
