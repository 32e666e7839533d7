"""Crossformer: segment padding and DSW embedding, the encoder's scale hierarchy, segment merging as the paper
describes it, the target channel in MS mode, and the calendar being ignored."""

from __future__ import annotations

import pytest
import torch

from tests.inputs import random_calendar
from tsprune_edge.models import create_model, resolve_config
from tsprune_edge.models.crossformer import Crossformer, SegmentMerging, scale_segment_counts

# The study's structure (seg_len 6, three scale blocks) at the small widths: the architecture under test.
STUDY = dict(seg_len=6, e_layers=3)


def test_history_is_padded_at_the_front_with_its_first_value_and_cut_into_segments():
    model = create_model("crossformer", "small", **STUDY, seq_len=92, enc_in=3, c_out=3)
    assert isinstance(model, Crossformer) and model.front_pad == 4 and model.scale_segments[0] == 16
    history = torch.randn(2, 92, 3)
    padded = model.pad_history(history)
    assert padded.shape == (2, 96, 3)
    torch.testing.assert_close(padded[:, :4], history[:, :1].expand(-1, 4, -1))
    torch.testing.assert_close(padded[:, 4:], history)
    segments = model.segments(history)
    assert segments.shape == (2, 3, 16, 6)
    for var in range(3):
        for seg in (0, 7, 15):
            torch.testing.assert_close(segments[:, var, seg], padded[:, seg * 6:(seg + 1) * 6, var])
    assert model.embed(history).shape == (2, 3, 16, 64)


def test_a_window_that_is_a_multiple_of_seg_len_is_not_padded():
    model = create_model("crossformer", "small", **STUDY)
    history = torch.randn(2, 96, 7)
    assert model.front_pad == 0 and model.pad_history(history) is history
    assert model.embed(history).shape == (2, 7, 16, 64)


def test_hierarchy_segment_counts_for_seq_96_seg_6_win_2_three_blocks():
    cfg = resolve_config("crossformer", "paper")
    assert (cfg.seq_len, cfg.seg_len, cfg.win_size, cfg.e_layers) == (96, 6, 2, 3)
    assert scale_segment_counts(cfg) == [16, 16, 8, 4]
    model = create_model("crossformer", "small", **STUDY).eval()
    assert [block.tsa.router.shape[0] for block in model.encoder] == [16, 8, 4]
    assert [block.merge is None for block in model.encoder] == [True, False, False]
    assert len(model.decoder) == 4 and model.dec_position.shape == (7, 16, 64)
    with torch.no_grad():
        scales = model.encode(torch.randn(2, 96, 7))
    assert [tuple(s.shape) for s in scales] == [(2, 7, n, 64) for n in (16, 16, 8, 4)]


def test_an_odd_segment_count_is_merged_after_repeating_the_last_segment():
    cfg = resolve_config("crossformer", "small", **STUDY, seq_len=42)
    assert scale_segment_counts(cfg) == [7, 7, 4, 2]
    model = create_model("crossformer", "small", **STUDY, seq_len=42).eval()
    with torch.no_grad():
        assert [s.shape[2] for s in model.encode(torch.randn(1, 42, 7))] == [7, 7, 4, 2]


def test_segment_merging_concatenates_adjacent_segments():
    """The reshape equals the paper's concatenation of segments 2j and 2j+1, then LayerNorm and projection."""
    merge = SegmentMerging(8, 2)
    x = torch.randn(2, 3, 5, 8)
    padded = torch.cat([x, x[:, :, -1:]], dim=2)
    concatenated = torch.cat([padded[:, :, 0::2], padded[:, :, 1::2]], dim=-1)
    torch.testing.assert_close(merge(x), merge.projection(merge.norm(concatenated)))


def test_ms_forecasts_the_target_channel():
    torch.manual_seed(0)
    model = create_model("crossformer", "small", **STUDY, enc_in=3, c_out=1, target_index=1, seq_len=48,
                         pred_len=24).eval()
    full = create_model("crossformer", "small", **STUDY, enc_in=3, c_out=3, seq_len=48, pred_len=24).eval()
    full.load_state_dict(model.state_dict())
    history, calendar = torch.randn(2, 48, 3), random_calendar(2, 72)
    with torch.no_grad():
        torch.testing.assert_close(model(history, calendar), full(history, calendar)[:, :, 1:2])


def test_forecast_ignores_the_calendar_and_crops_to_pred_len():
    model = create_model("crossformer", "small", **STUDY, pred_len=20).eval()
    history = torch.randn(2, 96, 7)
    with torch.no_grad():
        first = model(history, random_calendar(2, 116))
        second = model(history, random_calendar(2, 116))
    assert first.shape == (2, 20, 7)
    torch.testing.assert_close(first, second)


def test_c_out_other_than_enc_in_or_one_is_refused():
    with pytest.raises(ValueError, match="c_out must be enc_in"):
        create_model("crossformer", "small", **STUDY, enc_in=7, c_out=3)


def test_forecast_is_the_sum_of_every_decoder_layers_prediction():
    """Keeping one decoder layer's prediction head at a time, the forecasts add up to the full forecast."""
    model = create_model("crossformer", "small", **STUDY, seq_len=48, pred_len=24).eval()
    history, calendar = torch.randn(2, 48, 7), random_calendar(2, 72)
    heads = [layer.prediction for layer in model.decoder]
    saved = [(head.weight.clone(), head.bias.clone()) for head in heads]
    with torch.no_grad():
        full = model(history, calendar)
        parts = []
        for kept in range(len(heads)):
            for index, head in enumerate(heads):
                head.weight.copy_(saved[index][0] if index == kept else torch.zeros_like(head.weight))
                head.bias.copy_(saved[index][1] if index == kept else torch.zeros_like(head.bias))
            parts.append(model(history, calendar))
    assert len(parts) == 4 and all(not torch.equal(part, full) for part in parts)
    torch.testing.assert_close(sum(parts[1:], parts[0]), full)
