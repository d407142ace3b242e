"""LeRobotDataset v3 both ways, through lerobot's API, on a recorded Meta-World store."""

import numpy as np
import pytest

from vla.datasets.chunk_dataset import ChunkDataset, open_source
from vla.datasets.episode_store import EpisodeStore
from vla.datasets.lerobot_io import LeRobotSource, export_lerobot, import_lerobot
from vla.schema import SchemaError


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255**2 / mse))


@pytest.fixture(scope="module")
def exported(tiny_store, tmp_path_factory):
    return export_lerobot(tiny_store, tmp_path_factory.mktemp("lerobot") / "demos")


def test_round_trip_keeps_everything_and_images_within_the_codec(tiny_store, exported, tmp_path):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    lerobot = LeRobotDataset("local/demos", root=exported, video_backend="pyav")  # lerobot reads it
    src = EpisodeStore.open(tiny_store)
    assert (lerobot.meta.total_episodes, lerobot.meta.total_frames) == (src.num_episodes, src.num_frames)
    assert "observation.images.corner2" in lerobot.meta.video_keys

    back = import_lerobot(exported, tmp_path / "back.zarr")
    assert back.schema.to_json() == src.schema.to_json()
    assert back.env_tasks == src.env_tasks
    psnrs = []
    for i in range(src.num_episodes):
        a, b = src.episode(i), back.episode(i)
        for key in ("observation.state", "action"):
            np.testing.assert_array_equal(a[key], b[key])  # exact
        for key in ("task", "seed", "success", "source", "goal"):
            assert a[key] == b[key], key
        psnrs.append(psnr(a["observation.images.corner2"], b["observation.images.corner2"]))
    print(f"round-trip image PSNR: min {min(psnrs):.1f} dB, mean {np.mean(psnrs):.1f} dB")
    assert min(psnrs) > 25  # LeRobot's default AV1 (crf 30) on 32 px renders


def test_training_reads_a_lerobot_root_directly(tiny_store, exported):
    source = open_source(exported)
    assert isinstance(source, LeRobotSource)
    zarr_ds, lerobot_ds = ChunkDataset(EpisodeStore.open(tiny_store), 4), ChunkDataset(source, 4)
    assert len(zarr_ds) == len(lerobot_ds)
    idx = np.array([0, len(zarr_ds) - 1, 17, 17, 5])
    a, b = zarr_ds.get_batch(idx), lerobot_ds.get_batch(idx)
    for key in ("observation.state", "action", "action_is_pad", "task"):
        np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]))
    assert psnr(a["images"], b["images"]) > 25


def test_a_lerobot_dataset_without_what_a_policy_needs_is_refused(tmp_path):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    features = {"observation.images.top": {"dtype": "video", "shape": (64, 64, 3),
                                           "names": ["height", "width", "channels"]},
                "action": {"dtype": "float32", "shape": (2,), "names": ["a", "b"]}}
    ds = LeRobotDataset.create("local/nostate", 10, features, root=tmp_path / "nostate", video_backend="pyav")
    for _ in range(3):
        ds.add_frame({"observation.images.top": np.zeros((64, 64, 3), np.uint8),
                      "action": np.zeros(2, np.float32), "task": "x"})
    ds.save_episode()
    ds.finalize()
    with pytest.raises(SchemaError, match="has no 'observation.state' feature a policy needs"):
        open_source(tmp_path / "nostate")
    with pytest.raises(FileNotFoundError, match="neither a zarr episode store"):
        open_source(tmp_path)
    with pytest.raises(FileExistsError):
        import_lerobot(tmp_path / "nostate", tmp_path / "nostate")


def test_dataset_cli_info_and_viz(tiny_store, exported, tmp_path, monkeypatch, capsys):
    import imageio.v3 as iio

    from vla.cli import dataset

    for src in (tiny_store, exported):
        monkeypatch.setattr("sys.argv", ["vla-dataset", "info", f"src={src}"])
        dataset.main()
        out = capsys.readouterr().out
        assert "4 episodes" in out and "drawer-close-v3" in out and "q99" in out
    monkeypatch.setattr("sys.argv", ["vla-dataset", "viz", f"src={tiny_store}", "episode=1",
                                     f"out={tmp_path / 'ep.mp4'}"])
    dataset.main()
    video = iio.imread(tmp_path / "ep.mp4", plugin="pyav")
    assert video.shape[0] == EpisodeStore.open(tiny_store).episode(1)["action"].shape[0]
    monkeypatch.setattr("sys.argv", ["vla-dataset", "viz", f"src={tiny_store}", "episode=99"])
    with pytest.raises(SystemExit, match="episode=99 is out of range"):
        dataset.main()
