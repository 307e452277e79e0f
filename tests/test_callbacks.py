"""Lightning extensions: atomic checkpoint writes and the validation panels."""

from __future__ import annotations

import os

import pytest
import torch

from restore.callbacks import AtomicCheckpointIO, error_map, panel


def test_a_checkpoint_write_that_fails_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "checkpoints" / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"global_step": 1}, path)
    assert torch.load(path, weights_only=True) == {"global_step": 1}

    def dies_half_way(descriptor):  # the bytes are in the partial file, not yet on the disk
        assert path.with_name(".last.ckpt.partial").stat().st_size > 0
        raise KeyboardInterrupt  # e.g. the job is stopped while writing

    monkeypatch.setattr(os, "fsync", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"global_step": 2}, path)
    assert torch.load(path, weights_only=True) == {"global_step": 1}
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]  # no partial file left behind


def test_panel_is_input_output_target_and_amplified_error_side_by_side():
    target = torch.full((3, 4, 5), 0.5)
    degraded, restored = target + 0.2, target + 0.1
    image = panel(degraded, restored, target)
    assert image.shape == (3, 4, 20)
    assert torch.allclose(image[:, :, 0:5], degraded)
    assert torch.allclose(image[:, :, 5:10], restored)
    assert torch.allclose(image[:, :, 10:15], target)
    assert torch.allclose(image[:, :, 15:20], torch.full((3, 4, 5), 0.4))  # |0.1| x 4
    assert torch.equal(error_map(restored + 1, target), torch.ones(3, 4, 5))  # clipped to [0, 1]
