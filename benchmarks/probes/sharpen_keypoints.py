"""A tabletop policy with its keypoint maps sharpened at inference (every FiLM CNN's spatial-softmax logits
multiplied by SCALE), evaluated on the benchmark's episodes (seeds 100000+).

A keypoint is the expectation of the grid's coordinates under a softmax over the CNN's cells. Where the named object
is a pair never trained (a held-out composition), the cells of the objects that share its color or its shape match
it in part, and whatever mass they hold pulls the expected point toward them: place's keypoint head finds held-out
pairs to 2.9 cm (median) where it finds seen ones to 0.6 (README, tabletop), and in 2 of its seed 1's 8 held-out
misses the gripper closed about 6 cm from the named object. A sharper softmax moves the keypoint toward the map's
peak. If held-out compositions rise while seen pairs, whose maps are already peaked, stay, the spread of the maps is
part of what the held-out pairs lack.

Usage: sharpen_keypoints.py CHECKPOINT OUT_DIR SCALE [SPLIT] [SKILLS]   (SPLIT: seen, heldout-compositions, ...;
SKILLS comma-separated, all four by default). Each task's result is saved to OUT_DIR/<task>.json as it finishes, and
a rerun skips it. The checkpoint's own decoding; 15 episodes per skill.
"""
import sys
from pathlib import Path

import torch
from tabletop_cells import evaluate_cells, load

from vla.envs.tabletop.language import SKILLS

checkpoint, out, scale = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3])
split = sys.argv[4] if len(sys.argv) > 4 else "heldout-compositions"
skills = sys.argv[5].split(",") if len(sys.argv) > 5 else list(SKILLS)
policy = load(checkpoint)
with torch.no_grad():  # softmax(scale * logits): the logits are one linear map of the CNN's features
    for cnn in policy.model.backbone.cnns:
        cnn.keypoints.attend.weight.mul_(scale)
        cnn.keypoints.attend.bias.mul_(scale)
evaluate_cells(policy, out, split, skills)
