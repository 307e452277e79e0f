"""Videos through python -m restore.predict: round trips on small lossless clips, resume, refusals."""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console

av = pytest.importorskip("av", reason="PyAV is the app extra: pip install -e '.[app]'")

import restore.predict as predict_module  # noqa: E402
from restore.data.io import decode_image, write_image  # noqa: E402
from restore.errors import UserError  # noqa: E402
from restore.predict import predict  # noqa: E402
from restore.video import ResumeError, VideoReadError, parts_folder, probe, read_frames  # noqa: E402
from tests.helpers import compose_config  # noqa: E402
from tests.test_predict import TINY_1S as TINY  # noqa: E402

SIZE = (48, 64)  # height, width


def run_predict(*overrides: str) -> list[Path]:
    return predict(compose_config("predict", "device=cpu", *overrides), console=Console(file=io.StringIO()))


def make_clip(
    path: Path, frames: int = 8, codec: str = "ffv1", pix_fmt: str = "bgr0", rate=Fraction(25, 2), audio=True
):
    """A clip of smooth moving colour patterns (a denoiser has something to do), with a tone."""
    rng = np.random.default_rng(0)
    h, w = SIZE
    yy, xx = np.mgrid[0:h, 0:w]
    written = []
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
        sound = container.add_stream("flac", rate=8000) if audio else None
        for index in range(frames):
            base = np.stack([np.sin((xx + 3 * index) / 7), np.cos((yy - 2 * index) / 5), np.sin((xx + yy) / 9)], -1)
            noisy = (base + 1) * 110 + rng.normal(0, 12, base.shape)
            image = np.clip(noisy, 0, 255).astype(np.uint8)
            written.append(image)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))
        if sound is not None:
            samples = int(8000 * frames / rate)
            tone = (8000 * np.sin(np.arange(samples) * 0.3)).astype(np.int16)[None]
            frame = av.AudioFrame.from_ndarray(tone, format="s16", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = 8000, 0, Fraction(1, 8000)
            container.mux(sound.encode(frame))
            container.mux(sound.encode(None))
    return written


def decoded(path: Path) -> list[np.ndarray]:
    return [rgb for rgb, _ in read_frames(path, probe(path))]


def stream_summary(path: Path) -> list[tuple[str, str]]:
    with av.open(str(path)) as container:
        return [(stream.type, stream.codec_context.name) for stream in container.streams]


def audio_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(packet) for packet in container.demux(audio=0) if packet.size]


def test_a_video_is_restored_frame_by_frame_exactly_as_its_frames_as_images(tmp_path):
    """An 8-frame FFV1 clip in 3-frame segments: same frame count, size, rate, timestamps and audio,
    and every frame equal, bit for bit, to predict's output for that frame saved as a PNG."""
    clip = tmp_path / "in" / "clip.mkv"
    clip.parent.mkdir()
    frames = make_clip(clip)
    np.testing.assert_array_equal(decoded(clip)[3], frames[3])  # the source itself is lossless
    for index, frame in enumerate(frames):
        write_image(tmp_path / "frames" / f"{index:03d}.png", frame.astype(np.float32) / 255)
    torch.manual_seed(0)
    run_predict(f"input={clip}", f"output={tmp_path / 'out'}", *TINY, "segment_frames=3")
    torch.manual_seed(0)  # the same random weights for the image path
    run_predict(f"input={tmp_path / 'frames'}", f"output={tmp_path / 'png'}", *TINY)

    out = tmp_path / "out" / "clip.mkv"
    source, restored = probe(clip), probe(out)
    assert (restored.width, restored.height, restored.rate, restored.codec) == (64, 48, Fraction(25, 2), "ffv1")
    assert restored.frames == 8
    outputs = decoded(out)
    assert len(outputs) == 8
    for index, frame in enumerate(outputs):
        np.testing.assert_array_equal(frame, decode_image(tmp_path / "png" / f"{index:03d}.png"))
    assert not np.array_equal(outputs[0], frames[0])  # the model changed the frames
    assert [pts for _, pts in read_frames(out, restored)] == [pts for _, pts in read_frames(clip, source)]
    assert stream_summary(out) == [("video", "ffv1"), ("audio", "flac")]
    assert audio_packets(out) == audio_packets(clip)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["clip.mkv"]  # no segments left behind


def test_h264_mp4_keeps_its_codec_rate_and_frame_count(tmp_path):
    """A lossy MP4 (x264, B-frames, 7-frame segments joined): the output decodes to all its frames."""
    clip = tmp_path / "clip.mp4"
    make_clip(clip, frames=20, codec="libx264", pix_fmt="yuv420p", rate=Fraction(30000, 1001), audio=False)
    run_predict(f"input={clip}", f"output={tmp_path / 'out'}", "model=identity", "segment_frames=7")
    out = tmp_path / "out" / "clip.mp4"
    info = probe(out)
    assert (info.codec, info.pix_fmt, info.rate) == ("h264", "yuv420p", Fraction(30000, 1001))
    assert (info.width, info.height) == (64, 48)
    assert [pts for _, pts in read_frames(out, info)] == [pts for _, pts in read_frames(clip, probe(clip))]
    errors = [np.abs(a.astype(int) - b).mean() for a, b in zip(decoded(out), decoded(clip))]
    # the identity re-encoded at crf 17: grainy 4:2:0 frames come back within a few levels
    assert len(errors) == 20 and max(errors) < 8


class Interrupt(Exception):
    pass


def test_an_interrupted_video_resumes_at_its_first_unfinished_segment(tmp_path, monkeypatch):
    """Killed at frame 6 of 8 with 2-frame segments: the rerun restores frames 4-7 only, and the
    result equals an uninterrupted run; other settings are refused with the reason."""
    clip = tmp_path / "clip.mkv"
    make_clip(clip)
    calls = []
    restore = predict_module.restore_photo

    def counting(*args, **kwargs):
        calls.append(1)
        if len(calls) == 6 and stop_at_six:
            raise Interrupt
        return restore(*args, **kwargs)

    monkeypatch.setattr(predict_module, "restore_photo", counting)
    stop_at_six = True
    out = tmp_path / "out"
    with pytest.raises(Interrupt):
        run_predict(f"input={clip}", f"output={out}", "model=identity", "segment_frames=2")
    parts = parts_folder(out / "clip.mkv")
    assert not (out / "clip.mkv").exists()
    assert sorted(p.name for p in parts.glob("segment_*.mkv")) == ["segment_00000.mkv", "segment_00001.mkv"]

    with pytest.raises(FileExistsError, match="skip_existing=true continues it"):
        run_predict(f"input={clip}", f"output={out}", "model=identity", "segment_frames=2")
    with pytest.raises(ResumeError, match="segment_frames=2"):
        run_predict(f"input={clip}", f"output={out}", "model=identity", "segment_frames=4", "skip_existing=true")
    with pytest.raises(ResumeError, match="had model="):
        run_predict(f"input={clip}", f"output={out}", *TINY, "segment_frames=2", "skip_existing=true")

    stop_at_six, calls[:] = False, []
    run_predict(f"input={clip}", f"output={out}", "model=identity", "segment_frames=2", "skip_existing=true")
    assert len(calls) == 4  # frames 4..7; the two finished segments were kept
    assert not parts.exists()
    run_predict(f"input={clip}", f"output={tmp_path / 'whole'}", "model=identity", "segment_frames=2")
    for resumed, whole in zip(decoded(out / "clip.mkv"), decoded(tmp_path / "whole" / "clip.mkv"), strict=True):
        np.testing.assert_array_equal(resumed, whole)
    assert audio_packets(out / "clip.mkv") == audio_packets(clip)


def test_a_folder_mixes_images_and_videos_and_nothing_is_overwritten(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    make_clip(folder / "clip.mkv", frames=3, audio=False)
    write_image(folder / "photo.png", np.full((20, 30, 3), 0.5, np.float32))
    written = run_predict(f"input={folder}", f"output={tmp_path / 'out'}", "model=identity")
    assert sorted(p.name for p in written) == ["clip.mkv", "photo.png"]
    assert len(decoded(tmp_path / "out" / "clip.mkv")) == 3
    before = (tmp_path / "out" / "clip.mkv").read_bytes()
    with pytest.raises(FileExistsError, match="never overwritten"):
        run_predict(f"input={folder}", f"output={tmp_path / 'out'}", "model=identity")
    assert run_predict(f"input={folder}", f"output={tmp_path / 'out'}", "model=identity", "skip_existing=true") == []
    assert (tmp_path / "out" / "clip.mkv").read_bytes() == before


def test_a_broken_video_gets_one_line_naming_it(tmp_path):
    clip = tmp_path / "clip.mp4"
    make_clip(tmp_path / "good.mp4", frames=10, codec="libx264", pix_fmt="yuv420p", audio=False)
    clip.write_bytes(b"not a video at all" * 100)
    with pytest.raises(VideoReadError, match=f"{clip} cannot be read as a video"):
        run_predict(f"input={clip}", f"output={tmp_path / 'out'}", "model=identity")
    truncated = tmp_path / "cut.mp4"
    truncated.write_bytes((tmp_path / "good.mp4").read_bytes()[:300])  # the header's start only
    with pytest.raises(UserError, match="cut.mp4"):
        run_predict(f"input={truncated}", f"output={tmp_path / 'out2'}", "model=identity")
    assert not (tmp_path / "out" / "clip.mp4").exists()
