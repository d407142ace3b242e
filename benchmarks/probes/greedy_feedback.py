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


def gen_ar(self, prefix, given_ids, n_values):
    """VLAModel._generate_autoregressive, less one line: the ids fed back are the argmax bin's."""
    g = self.values_per_token
    inputs = self.backbone.append(prefix, given_ids[..., 0])
    out = self.backbone(self._model_inputs(inputs, given_ids), use_cache=True)
    hidden, cache = out.last_hidden_state[:, -1:], out.past_key_values
    values = [torch.zeros(len(given_ids), given_ids.shape[1] * g, device=given_ids.device)]
    centers = torch.as_tensor(self.action_tokenizer.bin_centers(), device=hidden.device)
    for step in range(-(-n_values // g)):
        logits = self.action_logits(hidden).float()
        values.append(self.action_tokenizer.expected_value(logits))
        if (step + 1) * g >= n_values:
            break
        ids = self.action_ids(centers[logits.argmax(-1)])
        inputs = self.backbone.append(inputs, ids[..., 0])
        out = self.backbone(self._model_inputs(self.backbone.last(inputs, 1), ids), past_key_values=cache, use_cache=True)
        hidden, cache = out.last_hidden_state[:, -1:], out.past_key_values
    return torch.cat(values, dim=1)

vla_model.VLAModel._generate_autoregressive = gen_ar
run = pathlib.Path(sys.argv[1])
policy = load_policy(run / "train/checkpoints/step_010000")
policy.cfg = policy.model.cfg = dataclasses.replace(policy.cfg, decoding="autoregressive", decode="expected")
r = evaluate_policy(policy, ["tabletop-lift", "tabletop-place"], 15, 100000, None, 15, policy.schema, out=run / "eval-greedy-feedback", video=False)
print(json.dumps({str(run): {t: round(v["success_rate"], 3) for t, v in r["tasks"].items()}}))
