import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from vla.model.action_tokenizer import BinActionTokenizer, BinTokenizerConfig

LOW = np.array([-1.0, -0.5, 0.0, -2.0], np.float32)
HIGH = np.array([1.0, 0.5, 3.0, 2.0], np.float32)


@settings(max_examples=200, deadline=None)
@given(
    n_bins=st.sampled_from([8, 64, 256]),
    unit=arrays(np.float32, (3, 4), elements=st.floats(0, 1, width=32)),
)
def test_round_trip_within_half_a_bin(n_bins, unit):
    tok = BinActionTokenizer(BinTokenizerConfig(n_bins=n_bins), LOW, HIGH)
    actions = LOW + unit * (HIGH - LOW)  # inside [q01, q99]
    ids = tok.encode(actions)
    assert ids.shape == (12,) and ids.min() >= 0 and ids.max() < n_bins
    decoded = tok.decode(ids)
    half_bin = (HIGH - LOW) / n_bins / 2
    assert np.all(np.abs(decoded - actions) <= half_bin * (1 + 1e-4) + 1e-6)


@settings(max_examples=50, deadline=None)
@given(arrays(np.float32, (5, 4), elements=st.floats(-1e6, 1e6, width=32)))
def test_out_of_range_actions_clip_to_the_end_bins(actions):
    tok = BinActionTokenizer(BinTokenizerConfig(n_bins=16), LOW, HIGH)
    decoded = tok.decode(tok.encode(actions))
    assert np.all(decoded >= LOW) and np.all(decoded <= HIGH)


def test_soft_targets_are_distributions_peaked_at_the_target():
    tok = BinActionTokenizer(BinTokenizerConfig(n_bins=64, smoothing_bins=2.0), LOW, HIGH)
    x = torch.tensor([-1.0, -0.3, 0.01, 0.77, 1.0])  # none on a bin edge, where argmax ties
    q = tok.soft_targets(x)
    torch.testing.assert_close(q.sum(-1), torch.ones(5))
    assert torch.equal(q.argmax(-1), tok.nearest_bin(x))
    # the expected value of the target distribution is close to the target itself (except at the edges)
    ev = tok.expected_value(torch.log(q))
    assert torch.allclose(ev[1:4], x[1:4], atol=tok.bin_width / 2)


def test_constant_dimension_does_not_divide_by_zero():
    tok = BinActionTokenizer(BinTokenizerConfig(n_bins=8), np.zeros(2), np.zeros(2))
    out = tok.decode(tok.encode(np.zeros((1, 2), np.float32)))
    assert np.all(np.isfinite(out)) and np.allclose(out, 0, atol=1e-6)


def test_save_load_and_bad_files(tmp_path):
    tok = BinActionTokenizer(BinTokenizerConfig(n_bins=32, smoothing_bins=1.5), LOW, HIGH)
    tok.save(tmp_path)
    back = BinActionTokenizer.load(tmp_path)
    assert back.cfg == tok.cfg and np.array_equal(back.low, tok.low) and np.array_equal(back.high, tok.high)
    (tmp_path / "action_tokenizer.json").write_text('{"type": "bins", "n_bins": 4}')
    with pytest.raises(KeyError, match="smoothing_bins"):
        BinActionTokenizer.load(tmp_path)
    with pytest.raises(FileNotFoundError, match="no fitted action tokenizer"):
        BinActionTokenizer.load(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="n_bins"):
        BinTokenizerConfig(n_bins=1)
