"""Videos, restored frame by frame: decode, restore and encode overlap; a killed run resumes.

:func:`restore_video` runs three stages at once: a reader thread decodes frames (PyAV), the
caller's thread restores them, and a writer thread encodes them, with small bounded queues in
between, so decoding and encoding hide behind the model's forward. The output keeps the input's
size, frame timestamps (so its frame rate, constant or variable) and container; its audio
streams are copied packet for packet.

The encoded frames go into segments of ``segment_frames`` frames in a hidden folder beside the
output (``.<name>.parts/``), each a complete file once it is closed; the finished segments are
then joined (packets copied, no second encoding) with the audio into the output. A killed run
leaves its finished segments behind, and a rerun with ``resume=True`` restores only the frames
after them, provided the source, the model and the settings are those that made them (recorded
in ``run.json``); otherwise it says which differs.
"""

from __future__ import annotations

import heapq
import json
import os
import queue
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from restore.errors import UserError

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".ts")
# The encoder for a source whose codec PyAV can only decode: H.264 fits every container above
# but WebM, which takes VP8/VP9/AV1 only.
FALLBACK_ENCODERS = {".webm": "libvpx-vp9"}

# Encoder settings used when the caller gives none: x264/x265 at a constant quality that keeps
# a restored frame's fine detail (ffmpeg's own default, crf 23, smears the grain a denoiser
# leaves); every other encoder keeps ffmpeg's defaults.
DEFAULT_CODEC_OPTIONS = {"libx264": {"crf": "17"}, "libx265": {"crf": "20"}}
QUEUE_FRAMES = 4  # frames held between stages: enough to absorb jitter, little memory
_DONE = object()  # the end of a queue's stream
_ABANDON = object()  # the end of a stream cut short: the writer keeps only finished segments


class VideoReadError(UserError):
    """A file that should hold a video cannot be read (or written back in its format)."""


class ResumeError(UserError):
    """The unfinished run of a video cannot be continued; the message says why and what to do."""


def is_video_file(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS


def list_videos(folder: Path, *, recursive: bool = False) -> list[Path]:
    """Video files in ``folder`` (sorted); hidden entries (a run's ``.parts`` folders) are left out."""
    entries = folder.rglob("*") if recursive else folder.iterdir()

    def hidden(path: Path) -> bool:
        return any(part.startswith(".") for part in path.relative_to(folder).parts)

    return sorted(path for path in entries if is_video_file(path) and path.is_file() and not hidden(path))


def parts_folder(target: Path) -> Path:
    """Where the segments of ``target`` wait until the whole video is restored."""
    return target.with_name(f".{target.name}.parts")


@dataclass(frozen=True)
class VideoInfo:
    """What the output copies from the first video stream of a file."""

    width: int
    height: int
    rate: Fraction  # frames per second (average)
    time_base: Fraction
    frames: int  # from the header or the duration; 0 when neither tells
    codec: str  # the decoder's name, e.g. h264, ffv1
    pix_fmt: str
    bits: int  # bits per sample the frames are restored at: 8, or 16 for deeper sources


def _open(path: Path):
    import av

    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError) as error:
        raise VideoReadError(f"{path} cannot be read as a video: {error}; check the file or convert it") from None
    if not container.streams.video:
        container.close()
        raise VideoReadError(f"{path} holds no video stream")
    return container


def probe(path: Path) -> VideoInfo:
    """The first video stream's size, rate and format; a VideoReadError names a file that is no video."""
    with _open(path) as container:
        stream = container.streams.video[0]
        context = stream.codec_context
        rate = stream.average_rate or stream.guessed_rate
        if not context.width or not context.height or not rate or context.format is None:
            raise VideoReadError(f"{path}: its video stream has no size, frame rate or pixel format; it is broken")
        frames = stream.frames
        if not frames and stream.duration is not None:
            frames = round(stream.duration * stream.time_base * rate)
        if not frames and container.duration is not None:  # Matroska: only the file's duration, in microseconds
            frames = round(Fraction(container.duration, 1_000_000) * rate)
        deep = max(component.bits for component in context.format.components) > 8
        return VideoInfo(
            width=context.width,
            height=context.height,
            rate=Fraction(rate),
            time_base=Fraction(stream.time_base),
            frames=int(frames or 0),
            codec=context.name,
            pix_fmt=context.format.name,
            bits=16 if deep else 8,
        )


def read_frames(path: Path, info: VideoInfo, start: int = 0) -> Iterator[tuple[np.ndarray, int]]:
    """``(rgb, pts)`` of each frame from frame ``start`` on: (H, W, 3) uint8 or uint16, its timestamp."""
    import av

    rgb_format = "rgb48le" if info.bits == 16 else "rgb24"
    step = 1 / (info.rate * info.time_base)  # one frame in time_base units, for streams without timestamps
    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        index = 0
        try:
            for index, frame in enumerate(container.decode(stream)):
                if index < start:
                    continue  # decoding (not seeking) keeps the frame count exact
                pts = frame.pts if frame.pts is not None else round(index * step)
                yield frame.to_ndarray(format=rgb_format), pts
        except av.error.FFmpegError as error:
            raise VideoReadError(f"{path} is corrupt after frame {index}: {error}; check or re-encode it") from None


# ---------------------------------------------------------------------------------------------
# Encoding


@dataclass(frozen=True)
class Encoding:
    """How restored frames are encoded: an encoder, its pixel format and options."""

    codec: str
    pix_fmt: str
    options: dict[str, str]

    @staticmethod
    def choose(info: VideoInfo, target: Path, codec: str | None = None, options: dict | None = None) -> Encoding:
        """``codec`` (or the source's own codec, or else the container's usual one) with the source's
        pixel format where the encoder takes it, so a lossless source stays lossless."""
        import av

        try:
            encoder = av.Codec(codec or info.codec, "w")
        except (av.error.FFmpegError, ValueError):
            if codec is not None:
                raise VideoReadError(f"codec={codec}: this PyAV has no such video encoder") from None
            encoder = av.Codec(FALLBACK_ENCODERS.get(target.suffix.lower(), "libx264"), "w")
        formats = [video_format.name for video_format in encoder.video_formats or ()]
        pix_fmt = info.pix_fmt if info.pix_fmt in formats or not formats else formats[0]
        chosen = DEFAULT_CODEC_OPTIONS.get(encoder.name, {}) if options is None else options
        return Encoding(encoder.name, pix_fmt, {str(k): str(v) for k, v in chosen.items()})


def to_integers(image: np.ndarray, bits: int) -> np.ndarray:
    """[0, 1] float -> uint8 / uint16, clipped then rounded as :func:`restore.data.io.write_image` does."""
    scale = 255.0 if bits == 8 else 65535.0
    return np.rint(np.clip(image, 0.0, 1.0) * scale).astype(np.uint8 if bits == 8 else np.uint16)


class _SegmentWriter:
    """Encodes frames into ``segment_NNNNN<suffix>`` files of ``segment_frames`` frames each."""

    def __init__(self, parts: Path, suffix: str, info: VideoInfo, encoding: Encoding, segment_frames: int, first: int):
        self.parts, self.suffix, self.info, self.encoding = parts, suffix, info, encoding
        self.segment_frames, self.index = segment_frames, first
        self.container = self.stream = None

    def write(self, rgb: np.ndarray, pts: int) -> None:
        import av

        if self.container is None:
            self._open_segment()
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb48le" if rgb.dtype == np.uint16 else "rgb24")
        frame.pts, frame.time_base = pts, self.info.time_base
        if self.first_pts is None:
            self.first_pts = pts
        self.container.mux(self.stream.encode(frame.reformat(format=self.encoding.pix_fmt)))
        self.index += 1
        if self.index % self.segment_frames == 0:
            self.finish_segment()

    def _open_segment(self) -> None:
        import av

        # the name ends in the output's suffix, from which ffmpeg picks the output's muxer
        self.container = av.open(str(self._tmp()), "w")
        self.first_pts = None
        stream = self.container.add_stream(self.encoding.codec, rate=self.info.rate, options=self.encoding.options)
        stream.width, stream.height, stream.pix_fmt = self.info.width, self.info.height, self.encoding.pix_fmt
        stream.codec_context.time_base = self.info.time_base
        stream.time_base = self.info.time_base
        self.stream = stream

    def _tmp(self) -> Path:
        return self.parts / f"segment_{self.index // self.segment_frames:05d}.tmp{self.suffix}"

    def finish_segment(self) -> None:
        """Flush and close the open segment and give it its final name: from now on it counts as done."""
        if self.container is None:
            return
        self.container.mux(self.stream.encode(None))
        self.container.close()
        number = (self.index - 1) // self.segment_frames
        final = segment_path(self.parts, number, self.suffix)
        final.with_suffix(".json").write_text(json.dumps({"first_pts": self.first_pts}))
        os.replace(self.parts / f"segment_{number:05d}.tmp{self.suffix}", final)
        self.container = self.stream = None

    def abandon(self) -> None:
        """Close an unfinished segment without keeping it (a resumed run encodes it again)."""
        if self.container is not None:
            try:
                self.container.close()
            finally:
                self.container = None
                self._tmp().unlink(missing_ok=True)


def segment_path(parts: Path, number: int, suffix: str) -> Path:
    return parts / f"segment_{number:05d}{suffix}"


def done_segments(parts: Path, suffix: str) -> int:
    """How many segments, from the first on without a gap, a run finished."""
    count = 0
    while segment_path(parts, count, suffix).is_file():
        count += 1
    return count


# ---------------------------------------------------------------------------------------------
# The pipeline


def _source_record(source: Path) -> dict[str, Any]:
    stat = source.stat()
    return {"source": str(source.resolve()), "bytes": stat.st_size, "modified_ns": stat.st_mtime_ns}


def _start_or_resume(source: Path, target: Path, run: dict[str, Any], segment_frames: int, resume: bool) -> int:
    """Prepare the parts folder; the first frame to restore (0, or where the unfinished run stopped)."""
    parts = parts_folder(target)
    manifest = parts / "run.json"
    if parts.exists():
        if not resume:
            raise FileExistsError(
                f"{parts} holds an interrupted run of {target}; skip_existing=true resumes it, "
                "or delete the folder to start over"
            )
        if not manifest.is_file():
            raise ResumeError(f"cannot resume {target}: {parts} has no run.json; delete the folder to start over")
        before = json.loads(manifest.read_text())
        for key, value in run.items():
            if before.get(key) != value:
                raise ResumeError(
                    f"cannot resume {target}: its unfinished run in {parts} had {key}={before.get(key)!r}, this run "
                    f"has {value!r}; rerun with the same settings, or delete the folder to start over"
                )
        for leftover in parts.glob("segment_*.tmp*"):
            leftover.unlink()  # the segment a killed run was writing: incomplete by construction
        return done_segments(parts, target.suffix) * segment_frames
    parts.mkdir(parents=True)
    manifest.write_text(json.dumps(run, indent=1))
    return 0


def _put(items: queue.Queue, item: Any, stop: threading.Event) -> bool:
    """Put ``item`` unless ``stop`` is set first (the other end failed); whether it was put."""
    while not stop.is_set():
        try:
            items.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _get(items: queue.Queue, stop: threading.Event) -> Any:
    """The next item, or _DONE once ``stop`` is set."""
    while not stop.is_set():
        try:
            return items.get(timeout=0.1)
        except queue.Empty:
            continue
    return _DONE


class _Stage(threading.Thread):
    """A thread running ``work``; an exception stops the pipeline and is kept for the caller."""

    def __init__(self, work: Callable[[], None], stop: threading.Event):
        super().__init__(daemon=True)
        self.work, self.stop, self.error = work, stop, None

    def run(self) -> None:
        try:
            self.work()
        except BaseException as error:  # raised again in the caller's thread
            self.error = error
            self.stop.set()


def restore_video(
    source: Path,
    target: Path,
    restore_frame: Callable[[np.ndarray], np.ndarray],
    *,
    settings: dict[str, Any],
    codec: str | None = None,
    codec_options: dict | None = None,
    segment_frames: int = 120,
    resume: bool = False,
    on_start: Callable[[int, int], None] = lambda total, done: None,
    on_frame: Callable[[], None] = lambda: None,
) -> Path:
    """Restore every frame of ``source`` into ``target`` (which may not exist); returns ``target``.

    restore_frame: (H, W, 3) uint8/uint16 frame -> (H, W, 3) float image in [0, 1].
    settings: what makes the output what it is (the model's fingerprint, restore options); a
        resumed run must have the same.
    on_start(total, done): the frame count (0 when unknown) and the frames an earlier run did.
    on_frame(): called as each frame is written.
    """
    if target.exists():
        raise FileExistsError(f"{target} already exists; not overwriting it")
    info = probe(source)
    encoding = Encoding.choose(info, target, codec, codec_options)
    run = {**_source_record(source), "encoding": vars(encoding), "segment_frames": segment_frames, **settings}
    start = _start_or_resume(source, target, run, segment_frames, resume)
    on_start(info.frames, start)
    parts = parts_folder(target)
    writer = _SegmentWriter(parts, target.suffix, info, encoding, segment_frames, start)
    decoded, restored, stop = queue.Queue(QUEUE_FRAMES), queue.Queue(QUEUE_FRAMES), threading.Event()

    def read() -> None:
        for item in read_frames(source, info, start):
            if not _put(decoded, item, stop):
                return
        _put(decoded, _DONE, stop)

    def write() -> None:
        while (item := restored.get()) is not _DONE:
            if item is _ABANDON:
                return
            writer.write(*item)
            on_frame()
        writer.finish_segment()

    reader, encoder = _Stage(read, stop), _Stage(write, stop)
    reader.start()
    encoder.start()
    ending = _ABANDON
    try:
        while (item := _get(decoded, stop)) is not _DONE:
            rgb, pts = item
            if not _put(restored, (to_integers(restore_frame(rgb), info.bits), pts), stop):
                break
        if not stop.is_set():  # the reader reached the end, and the writer is still well
            ending = _DONE
    finally:
        # also after an error here or Ctrl-C: the writer still encodes the frames restored so
        # far, so every segment they complete is kept for a resumed run
        while encoder.is_alive():
            try:
                restored.put(ending, timeout=0.1)
                break
            except queue.Full:
                continue
        encoder.join()
        stop.set()
        reader.join()
        writer.abandon()
    for stage in (reader, encoder):
        if stage.error is not None:
            raise stage.error
    if start == 0 and not done_segments(parts, target.suffix):
        raise VideoReadError(f"{source} holds no frame that can be decoded")
    _join_segments(source, target, parts)
    shutil.rmtree(parts)
    return target


def _packets(path: Path, kind: str, first_pts: int | None = None, time_base: Fraction | None = None) -> Iterator:
    """The packets of every ``kind`` (video/audio) stream of a file, with timestamps.

    ``first_pts`` (in ``time_base``): the timestamp the file's first frame was encoded with. MP4
    and MOV start each file at a shift stored in milliseconds, so a segment's timestamps come
    back off by a constant; they are moved back to the encoded ones.
    """
    import av

    with av.open(str(path)) as container:
        streams = getattr(container.streams, kind)
        if not streams:
            return
        shift = 0
        if first_pts is not None:
            stream = streams[0]
            earliest = min(packet.pts for packet in container.demux(stream) if packet.pts is not None)
            shift = earliest - round(first_pts * time_base / stream.time_base)
            container.seek(0, stream=stream)
        for packet in container.demux(*streams):
            if packet.dts is not None:
                packet.pts, packet.dts = packet.pts - shift, packet.dts - shift
                yield packet


def _join_segments(source: Path, target: Path, parts: Path) -> None:
    """Copy the segments' video packets and the source's audio packets into ``target``, by time."""
    import av

    segments = [segment_path(parts, number, target.suffix) for number in range(done_segments(parts, target.suffix))]
    joined = parts / f"joined{target.suffix}"
    with av.open(str(segments[0])) as first, _open(source) as original, av.open(str(joined), "w") as out:
        video = out.add_stream_from_template(first.streams.video[0])
        audio = {}
        for stream in original.streams.audio:
            try:
                audio[stream.index] = out.add_stream_from_template(stream)
            except (av.error.FFmpegError, ValueError) as error:
                codec = stream.codec_context.name
                raise VideoReadError(f"{source}: its audio ({codec}) cannot be copied: {error}") from None
        time_base = Fraction(original.streams.video[0].time_base)
        first_pts = [json.loads(segment.with_suffix(".json").read_text())["first_pts"] for segment in segments]
        video_packets = (
            packet for segment, pts in zip(segments, first_pts) for packet in _packets(segment, "video", pts, time_base)
        )
        audio_packets = _packets(source, "audio")

        def seconds(packet) -> float:
            return float(packet.dts * packet.time_base)

        for packet in heapq.merge(video_packets, audio_packets, key=seconds):
            packet.stream = video if packet.stream.type == "video" else audio[packet.stream.index]
            out.mux(packet)
    # a hard link fails when the target exists: the output appears whole, and never over a file
    os.link(joined, target)
