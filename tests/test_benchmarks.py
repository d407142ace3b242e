"""The MT benchmark on a tiny configuration: killed in the middle of training, rerun, it resumes."""

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TINY_IMAGE

ROOT = Path(__file__).resolve().parents[1]
TINY_TRAIN = [f"model.backbone.image_size={TINY_IMAGE}", "model.backbone.patch_size=8",
              "model.backbone.vision_hidden=32", "model.backbone.vision_layers=1", "model.backbone.text_hidden=64",
              "model.backbone.text_layers=2", "model.backbone.head_dim=32", "model.chunk_size=4",
              "model.n_action_steps=2", "batch_size=4", "warmup_steps=2"]


def test_metaworld_mt_resumes_after_being_killed_in_training(tmp_path):
    out = tmp_path / "mt"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "metaworld_mt.py"), "--suite",
           "drawer-close-v3,button-press-topdown-v3", "--out", str(out), "--demos", "2", "--steps", "30",
           "--save-every", "2", "--eval-episodes", "2", "--max-episode-steps", "60", "--image-size",
           str(TINY_IMAGE), "--set", *TINY_TRAIN]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    first_checkpoint = out / "train" / "checkpoints" / "step_000002"
    deadline = time.time() + 300
    while not first_checkpoint.exists():
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.time() < deadline, "no training checkpoint within 5 minutes"
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    assert not (out / "train" / "config.json").exists(), "training finished before it could be interrupted"
    recorded = json.loads((out / "record_report.json").read_text())

    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    steps = [json.loads(line)["step"] for line in (out / "train" / "metrics.jsonl").read_text().splitlines()]
    assert steps.count(1) == 1 and steps[-1] == 30, "the rerun must continue from a checkpoint, not start over"
    report = json.loads((out / "record_report.json").read_text())
    assert report["episodes"] == recorded["episodes"] == 4  # nothing recorded twice
    assert all(r["kept"] == 2 and r["short"] == 0 for r in report["tasks"].values())
    results = json.loads((out / "results.json").read_text())
    assert set(results) >= {"suite", "tasks", "groups", "mean_over_tasks", "mean_of_groups", "wall_s"}
    assert set(results["tasks"]) == {"drawer-close-v3", "button-press-topdown-v3"}
    for r in results["tasks"].values():
        assert r["episodes"] == 2 and r["group"] == "easy" and 0.0 <= r["success_rate"] <= 1.0
    assert results["groups"].keys() == {"easy"} and results["wall_s"] > 0
    assert (out / "groups.png").stat().st_size > 0 and (out / "cameras.png").stat().st_size > 0
    assert results["argmax_dims"] == []  # the checkpoint's own decoding

    # the same weights with the gripper by its likeliest bin: evaluated apart, nothing trained again (and in this
    # process: the run above evaluated its two tasks in two worker processes)
    regrip = subprocess.run(cmd + ["--argmax-dims", "3", "--eval-workers", "1"], capture_output=True, text=True,
                            timeout=600, check=False)
    assert regrip.returncode == 0, regrip.stderr[-2000:]
    assert sorted(p.name for p in (out / "eval-argmax3").iterdir()) == sorted(p.name for p in (out / "eval").iterdir())
    assert json.loads((out / "results.json").read_text())["argmax_dims"] == [3]
    assert [json.loads(line)["step"] for line in (out / "train" / "metrics.jsonl").read_text().splitlines()] == steps


def test_backbones_benchmark_writes_the_issue_format(tmp_path):
    out = tmp_path / "bb"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "backbones.py"), "--out", str(out), "--families", "embedded",
           "--modes", "full,lora", "--device", "cpu", "--batch-size", "2", "--steps", "1", "--repeats", "1"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [r["train_mode"] for r in rows] == ["full", "lora"]
    for row in rows:
        assert {"family", "size", "device", "params", "ms_per_chunk", "train_mode", "train_samples_per_s",
                "peak_mem_gb"} <= set(row), row
        assert row["ms_per_chunk"] > 0 and row["train_samples_per_s"] > 0 and row["peak_mem_gb"] > 0
    assert rows[1]["trainable_params"] < rows[0]["trainable_params"] == rows[0]["params"]
    assert (out / "backbones.png").stat().st_size > 0
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)  # resumes: nothing to do
    assert rerun.returncode == 0 and " on cpu ..." not in rerun.stdout


def test_film_cnn_speed_benchmark_writes_its_format_and_both_forwards_agree(tmp_path):
    out = tmp_path / "film"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "film_cnn_speed.py"), "--out", str(out), "--rounds", "1",
           "--iters", "1", "--batch-size", "2"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((out / "results.json").read_text())
    assert results["batch"] == 2 and len(results["configs"]) == 3
    assert all(r["ms_per_pass"] > 0 for r in results["configs"].values())
    assert results["speedup"] > 0 and results["max_abs_diff"] < 0.1  # the same function, bf16 apart
    assert (out / "film_cnn_speed.png").stat().st_size > 0


def _fake_tabletop_run(run: Path, seed: int, successes: dict[str, list[bool]], lr: float = 1e-3,
                       autoregressive: dict[str, list[bool]] | None = None, decoding: str = "parallel",
                       argmax_dims: list[int] | None = None) -> None:
    """What tabletop_seeds.py reads of a tabletop.py run: its final checkpoint's config and its eval files (with
    the checkpoint's decoding, and with autoregressive decoding overriding it if given)."""
    checkpoint = run / "train" / "checkpoints" / "step_000010"
    checkpoint.mkdir(parents=True)
    train = {"seed": seed, "dataset": str(run / "demos.zarr"), "out": str(run / "train"), "lr": lr}
    config = {"config": {"chunk_size": 8, "decoding": decoding, "argmax_dims": argmax_dims or []},
              "meta": {"train_config": train}}
    (checkpoint / "config.json").write_text(json.dumps(config))
    for folder, results in (("eval", successes), ("eval-autoregressive", autoregressive or {})):
        (run / folder).mkdir()
        for task, s in results.items():
            (run / folder / f"{task}.json").write_text(json.dumps({"successes": s, "success_rate": sum(s) / len(s)}))


def _tabletop_seeds(out, runs, *options):
    """benchmarks/tabletop_seeds.py's main in this process (each spawn would import torch and the suites again):
    its report; a refusal raises SystemExit, as the command exits."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import tabletop_seeds

    argv = ["tabletop_seeds.py", "--out", str(out), "--runs", *map(str, runs), *options]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", argv)
        tabletop_seeds.main()
    return json.loads((out / "results.json").read_text())


def _tabletop_seeds_refusal(capsys, out, runs, *options) -> str:
    """What tabletop_seeds.py prints when it refuses these runs, having checked that it exits with code 2."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as refused:
        _tabletop_seeds(out, runs, *options)
    assert refused.value.code == 2
    return capsys.readouterr().err


def test_tabletop_seeds_compares_the_episodes_every_run_has_and_refuses_other_settings(tmp_path, capsys):
    seen = [f"tabletop-{skill}" for skill in ("touch", "push", "lift", "place")]
    _fake_tabletop_run(tmp_path / "a", 0, {t: [True, True, False, True] for t in seen} |
                       {"tabletop-touch-heldout-compositions": [True]},  # a split not every skill has: left out
                       autoregressive={t: [False, False] for t in seen})
    _fake_tabletop_run(tmp_path / "b", 1, {t: [False, True] for t in seen},  # still evaluating: 2 episodes a task
                       autoregressive={t: [True, False] for t in seen})
    _fake_tabletop_run(tmp_path / "c", 2, {t: [True] for t in seen}, lr=3e-4)
    out, ab = tmp_path / "out", [tmp_path / "a", tmp_path / "b"]
    # once as a user runs it, then in this process
    cmd = [sys.executable, str(ROOT / "benchmarks" / "tabletop_seeds.py"), "--out", str(out), "--runs", *map(str, ab)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((out / "results.json").read_text())
    assert list(report["splits"]) == ["seen"]
    assert [r["seed"] for r in report["runs"].values()] == [0, 1]
    assert [r["splits"]["seen"] for r in report["runs"].values()] == [1.0, 0.5]  # on the first 2 episodes of each
    assert report["splits"]["seen"] == {"mean": 0.75, "min": 0.5, "max": 1.0, "runs": 2}
    assert report["runs"][str(tmp_path / "b")]["episodes"]["seen"] == 8
    assert (out / "seeds.png").stat().st_size > 0
    # the same runs' autoregressive evaluations (tabletop.py --decoding autoregressive), kept apart
    report = _tabletop_seeds(out, ab, "--decoding", "autoregressive")
    assert report["decoding"] == "autoregressive" and report["splits"]["seen"]["mean"] == 0.25
    # and their gripper decoded by its likeliest bin (tabletop.py --decoding autoregressive --argmax-dims 3)
    for run in ("a", "b"):
        (tmp_path / run / "eval-autoregressive-argmax3").mkdir()
        for t in seen:
            (tmp_path / run / "eval-autoregressive-argmax3" / f"{t}.json").write_text(json.dumps({"successes": [True]}))
    report = _tabletop_seeds(out, ab, "--decoding", "autoregressive", "--argmax-dims", "3")
    assert report["argmax_dims"] == [3] and report["splits"]["seen"]["mean"] == 1.0
    # and their overlapping chunks averaged (tabletop.py --chunking ensemble), kept apart in eval-ensemble
    for run in ("a", "b"):
        (tmp_path / run / "eval-ensemble").mkdir()
        for t in seen:
            (tmp_path / run / "eval-ensemble" / f"{t}.json").write_text(json.dumps({"successes": [False]}))
    report = _tabletop_seeds(out, ab, "--chunking", "ensemble")
    assert report["chunking"] == "ensemble" and report["splits"]["seen"]["mean"] == 0.0
    # a run trained to decode autoregressively keeps those evaluations in eval/; it compares with the overrides
    _fake_tabletop_run(tmp_path / "d", 3, {t: [True, True] for t in seen}, decoding="autoregressive")
    ad = [tmp_path / "a", tmp_path / "d"]
    report = _tabletop_seeds(out, ad, "--decoding", "autoregressive")
    assert [r["splits"]["seen"] for r in report["runs"].values()] == [0.0, 1.0]
    assert "model.decoding" in _tabletop_seeds_refusal(capsys, out, ad)  # two decodings
    stderr = _tabletop_seeds_refusal(capsys, out, ab + [tmp_path / "c"])  # another lr
    assert "differs from" in stderr and "lr" in stderr
    # a run trained to decode its gripper by its likeliest bin keeps those evaluations in eval/, and those by
    # expected value (tabletop.py --argmax-dims, none listed) in eval-expected/
    _fake_tabletop_run(tmp_path / "e", 4, {t: [False, False] for t in seen}, argmax_dims=[3])
    for run, folder in (("e", "eval-expected"), ("a", "eval-argmax3")):
        (tmp_path / run / folder).mkdir()
        for t in seen:
            (tmp_path / run / folder / f"{t}.json").write_text(json.dumps({"successes": [True, True]}))
    for argmax_dims, seen_rates in ((["3"], [1.0, 0.0]), ([], [1.0, 1.0])):
        report = _tabletop_seeds(out, [tmp_path / "a", tmp_path / "e"], "--argmax-dims", *argmax_dims)
        assert [r["splits"]["seen"] for r in report["runs"].values()] == seen_rates, argmax_dims


def test_tabletop_results_keep_what_tabletop_seeds_compares_once_the_run_folder_is_gone(tmp_path, capsys):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from argparse import Namespace

    from stages import Progress
    from tabletop import SPLITS, summarize

    from vla.envs import get_suite

    groups = get_suite("tabletop").groups()
    tasks = [t for group in SPLITS.values() for t in groups[group]]
    _fake_tabletop_run(tmp_path / "a", 0, {t: [True, False] for t in tasks})
    _fake_tabletop_run(tmp_path / "b", 1, {})
    args = Namespace(action_noise=0.0, demos_per_skill={}, attribute_tasks={}, steps=10, chunking="naive",
                     decoding=None, argmax_dims=None)
    experts = {"tasks": {f"tabletop-{skill}": {"expert_success": 1.0} for skill in ("touch", "push", "lift", "place")}}
    per_task = {t: {"successes": [True, True], "success_rate": 1.0} for t in tasks}
    results = summarize(args, experts, per_task, Progress(tmp_path / "b"),
                        tmp_path / "b" / "train" / "checkpoints" / "step_000010")
    saved = tmp_path / "b_results.json"
    del results["settings"]["model"]["backbone"]["film_cnn_width"]  # as a file written before the field existed
    saved.write_text(json.dumps(results))  # compares as one at the field's default
    shutil.rmtree(tmp_path / "b")
    runs = [tmp_path / "a", saved]
    report = _tabletop_seeds(tmp_path / "out", runs)
    assert list(report["splits"]) == list(SPLITS)
    assert [r["seed"] for r in report["runs"].values()] == [0, 1]
    assert [r["splits"]["seen"] for r in report["runs"].values()] == [0.5, 1.0]

    def refusal(*options):
        return _tabletop_seeds_refusal(capsys, tmp_path / "out", runs, *options)

    # saved results hold one decoding's episodes: another is refused, naming the file and what it holds
    assert f"{saved} was evaluated with parallel decoding" in refusal("--decoding", "autoregressive")
    # results written before session 44 name no pairs: place's were others then, and the same seeds drew them
    saved.write_text(json.dumps({k: v for k, v in results.items() if k != "heldout_pairs"}))
    stderr = refusal()
    assert "was evaluated on other held-out pairs" in stderr and "'place': ['green ball', 'yellow ball']" in stderr
    saved.write_text(json.dumps({k: v for k, v in results.items() if k != "settings"}))  # written before it kept them
    assert "no settings key" in refusal()


def test_tabletop_train_speed_rows_undo_the_levers_they_name():
    """Its "before" rows run today's trainer with code that undoes each later lever: if a lever is renamed, that
    code would set an attribute nothing reads and the row would silently measure today's trainer."""
    code = """
import sys; sys.path.insert(0, "benchmarks")
import vla.cpu_memory, vla.train
from vla.model.families.embedded import EmbeddedBackbone
from tabletop_train_speed import ROWS
class Fake:
    model = type("M", (), {"model": "the language model"})()
    cnns = ["a cnn"]
assert vla.train.keep_freed_memory is vla.cpu_memory.keep_freed_memory  # what train() calls
assert EmbeddedBackbone.compiled_parts(Fake()) == ["the language model", "a cnn"]
import torch
from vla.model.families import embedded
assert embedded.EmbeddedBackbone.run_cnn.__globals__ is vars(embedded)  # where run_cnn finds mark_batch_dynamic
pixels = torch.zeros(3, 1)
exec(ROWS["before"][1])
assert vla.train.keep_freed_memory() is False
assert EmbeddedBackbone.compiled_parts(Fake()) == ["the language model"]
embedded.mark_batch_dynamic(pixels)
assert not hasattr(pixels, "_dynamo_weak_dynamic_indices")  # the batch left static, as before session 41
# the lever rows' overrides are fields vla-train reads
from tabletop import POLICY
from vla.cli.config import load
cfg = load("train", ["dataset=x", *POLICY, *ROWS["head16_width24"][2]])
assert (cfg.model.final_state_batch, cfg.model.backbone.film_cnn_width) == (16, 24)
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]


def test_tabletop_records_more_demonstrations_of_the_skills_asked_and_refuses_a_bad_count(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from stages import Progress, record_stage
    from tabletop import demos_per_skill

    assert demos_per_skill(400, ["lift=600", "place=600"]) == {"touch": 400, "push": 400, "lift": 600, "place": 600}
    for bad in ("hoist=600", "lift=0", "lift"):
        with pytest.raises(ValueError, match="SKILL=N"):
            demos_per_skill(400, [bad])
    _, report = record_stage(tmp_path, ["tabletop-touch", "tabletop-lift"], 1, TINY_IMAGE, Progress(tmp_path),
                             demos_for={"tabletop-lift": 2})
    assert {t: r["kept"] for t, r in report["tasks"].items()} == {"tabletop-touch": 1, "tabletop-lift": 2}
    assert report["episodes"] == 3  # the store's count, after both parts
    assert json.loads((tmp_path / "record_report.json").read_text())["tasks"] == report["tasks"]
