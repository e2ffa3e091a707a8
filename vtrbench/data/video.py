"""Video decoding for the real datasets: PyAV in, uint8 RGB frames out.

One function turns a file into the ``[T, H, W, 3]`` uint8 array every prepared dataset stores
(``records.video_features``). Frames are sampled TSN-style: the decoded frames ``[0, n)`` are split into
``num_frames`` equal segments and one frame is taken per segment, the segment's middle frame at test time
(CLIP4Clip's ``slice_framepos=2`` up to rounding) and a random frame of the segment for training.

Frames are counted by decoding, never from container metadata, so variable frame rate files, containers
without a frame count (Matroska) and wrong headers all give the same sampling. Each frame is resized so its
short side equals ``resolution`` (bicubic, as CLIP's preprocessing) and centre-cropped to a square.

Metadata is used only to catch a file that was cut short (an interrupted download or copy). With frame
threads (``thread_type="AUTO"``, the default) FFmpeg does not raise on a truncated stream, it just stops, so
the decoded stream is compared with what the container declares: the frame count (mp4, avi) and the video
duration (the stream's, Matroska's per-track ``DURATION`` tag, or the container's when video is its only
stream). The stream is ``truncated`` when it ends early on every declared measure by more than
``TRUNCATION_TOLERANCE_FRAMES`` frames or ``TRUNCATION_TOLERANCE_FRACTION`` of the declared value, whichever
is larger. One wrong measure alone is no truncation: an mp4 edit list that trims the clip keeps counting
every stored frame (count short, duration right), and headers off by a frame or two stay inside the
tolerance. A file that declares neither (a raw stream) cannot be checked.

Every failure is a :class:`VideoDecodeError` naming the file and the reason; PyAV and PIL exceptions never
escape raw, so callers can report a bad file and carry on (CLIP4Clip instead prints "video path ... error"
and trains on a zero tensor, issues #4 and #44).
"""

from __future__ import annotations

import re
from pathlib import Path

import av
import numpy as np
import torch

try:  # Pillow ships with matplotlib; the torch fallback keeps decoding working without it
    from PIL import Image

    _PIL_ERRORS: tuple[type[BaseException], ...] = (Image.DecompressionBombError,)
except ImportError:  # pragma: no cover - Pillow is installed in the project environment
    Image = None
    _PIL_ERRORS = ()

VIDEO_EXTENSIONS = (".mp4", ".webm", ".avi", ".mkv", ".m4v", ".mpg", ".mpeg", ".mov", ".wmv", ".flv", ".3gp")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
# Errors a broken file can raise inside PyAV or PIL (av.FFmpegError is not an OSError/ValueError subclass).
_DECODE_ERRORS = (av.FFmpegError, OSError, EOFError, ValueError, *_PIL_ERRORS)
# A stream is truncated when it ends early by more than max(frames, fraction of the declared value) on every
# declared measure (frame count, duration): 2 frames absorb headers off by one or two frames, 1 % the rounding
# and padding of long clips' durations. Losing 3 of 250 frames (or 0.12 of 10 s) is truncation.
TRUNCATION_TOLERANCE_FRAMES = 2
TRUNCATION_TOLERANCE_FRACTION = 0.01
# PyAV's thread_type values; "AUTO" (frame + slice threads) is fast, "NONE" also surfaces FFmpeg's decoder errors.
THREAD_TYPES = ("AUTO", "FRAME", "SLICE", "NONE")


class VideoDecodeError(Exception):
    """A video (file or frames folder) that cannot give frames.

    Attributes:
        path: the file or folder.
        reason: one of ``missing``, ``cannot_open``, ``no_video_stream``, ``no_frames``, ``corrupt``,
            ``truncated``.
        detail: the underlying message.
    """

    REASONS = ("missing", "cannot_open", "no_video_stream", "no_frames", "corrupt", "truncated")

    def __init__(self, path: str | Path, reason: str, detail: str = ""):
        assert reason in self.REASONS, reason
        self.path, self.reason, self.detail = Path(path), reason, detail
        super().__init__(f"cannot decode {self.path}: {reason}" + (f" ({detail})" if detail else ""))


def sample_indices(
    num_available: int, num_frames: int, mode: str = "uniform", rng: np.random.Generator | None = None
) -> np.ndarray:
    """Pick ``num_frames`` frame indices out of ``num_available``, one per equal segment.

    Segment ``i`` covers the time ``[i * n / k, (i + 1) * n / k)``, where frame ``j`` spans ``[j, j + 1)``.
    ``uniform`` takes the frame at the segment's midpoint, ``random`` the frame at a uniformly random time in
    the segment. Indices never decrease; a clip shorter than ``num_frames`` repeats frames instead of failing.

    Args:
        num_available: decoded frames n (>= 1).
        num_frames: frames k to return (>= 1).
        mode: ``"uniform"`` (evaluation) or ``"random"`` (training).
        rng: generator for ``random``; None uses a fresh unseeded one.

    Returns:
        [num_frames] int64 indices in ``[0, num_available)``.

    >>> sample_indices(8, 4).tolist()
    [1, 3, 5, 7]
    >>> sample_indices(3, 5).tolist()
    [0, 0, 1, 2, 2]
    """
    if num_available < 1:
        raise ValueError(f"num_available must be >= 1, got {num_available}")
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    n, k = num_available, num_frames
    seg = np.arange(k, dtype=np.int64)
    if mode == "uniform":
        idx = ((2 * seg + 1) * n) // (2 * k)  # floor of the midpoint (i + 1/2) * n / k, exact in integers
    elif mode == "random":
        rng = rng if rng is not None else np.random.default_rng()
        idx = np.floor((seg + rng.random(k)) * n / k).astype(np.int64)
    else:
        raise ValueError(f"unknown sampling mode {mode!r}; choose one of: uniform, random")
    return np.minimum(idx, n - 1)  # guards float rounding at the very end of the last segment


def resize_crop(frame: np.ndarray, resolution: int) -> np.ndarray:
    """Resize so the short side is ``resolution`` (bicubic, antialiased), then centre-crop a square.

    Args:
        frame: [H, W, 3] uint8 RGB.
        resolution: output side in pixels.

    Returns:
        [resolution, resolution, 3] uint8.
    """
    H, W, _ = frame.shape
    scale = resolution / min(H, W)
    new_h, new_w = max(resolution, round(H * scale)), max(resolution, round(W * scale))
    if Image is not None:
        resized = np.asarray(Image.fromarray(frame).resize((new_w, new_h), Image.Resampling.BICUBIC))
    else:  # pragma: no cover - exercised only without Pillow
        x = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)[None].float()  # [1, 3, H, W]
        x = torch.nn.functional.interpolate(x, size=(new_h, new_w), mode="bicubic", antialias=True)
        resized = x[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()  # [new_h, new_w, 3]
    top, left = (new_h - resolution) // 2, (new_w - resolution) // 2
    return np.ascontiguousarray(resized[top : top + resolution, left : left + resolution])


def decode_video(path: str | Path, num_frames: int, resolution: int, thread_type: str = "AUTO") -> np.ndarray:
    """Decode a video file and return ``num_frames`` uniformly sampled, resized, centre-cropped frames.

    The first video stream is decoded in full (no seeking; audio is skipped). A first pass counts packets
    to plan which frames to keep, so only ``num_frames`` decoded frames are held in memory; when the decoded
    count differs from the packet count (packed or broken streams) the file is decoded once more with the
    plan for the true count.

    Args:
        path: a file any PyAV build decodes (h264, mpeg4, vp9, ...), any size, any (variable) frame rate.
        num_frames: frames to return; shorter clips repeat frames.
        resolution: output side in pixels.
        thread_type: FFmpeg's decoder threading, one of ``THREAD_TYPES``; the frames are identical for all.
            ``"NONE"`` is slower but also raises on a decoder error that threads pass over silently.

    Returns:
        [num_frames, resolution, resolution, 3] uint8 RGB.

    Raises:
        VideoDecodeError: missing, cannot be opened, no video stream, no decodable frame, a decoder error
            (corrupt), or a stream that ends earlier than its declared frame count and duration, beyond the
            tolerance of the module docstring (truncated; a decoder error there is reported as truncated too).
        ValueError: an unknown ``thread_type``.
    """
    if thread_type not in THREAD_TYPES:
        raise ValueError(f"unknown thread_type {thread_type!r}; choose one of: {', '.join(THREAD_TYPES)}")
    path = Path(path)
    if not path.is_file():
        raise VideoDecodeError(path, "missing", "no such file")
    planned = _count_packets(path)
    n_decoded, kept = _decode_pass(path, sample_indices(max(planned, 1), num_frames), thread_type)
    if n_decoded != planned:  # the packet count was not the frame count: plan again from the true count
        n_decoded, kept = _decode_pass(path, sample_indices(n_decoded, num_frames), thread_type)
    return np.stack([resize_crop(frame, resolution) for frame in kept])


def _open(path: Path) -> av.container.InputContainer:
    try:
        container = av.open(str(path))
    except _DECODE_ERRORS as err:
        raise VideoDecodeError(path, "cannot_open", str(err)) from err
    if not container.streams.video:
        kinds = [s.type for s in container.streams]
        container.close()
        raise VideoDecodeError(path, "no_video_stream", f"streams: {kinds or 'none'}")
    return container


def _count_packets(path: Path) -> int:
    with _open(path) as container:
        stream = container.streams.video[0]
        try:
            return sum(1 for packet in container.demux(stream) if packet.size > 0)
        except _DECODE_ERRORS as err:
            raise VideoDecodeError(path, "corrupt", f"demuxing failed: {err}") from err


def _decode_pass(path: Path, wanted: np.ndarray, thread_type: str) -> tuple[int, list[np.ndarray]]:
    """Decode every frame; return the decoded count and the RGB frames at ``wanted`` (repeats allowed)."""
    want = set(wanted.tolist())
    found: dict[int, np.ndarray] = {}
    n = 0
    last_pts, last_duration = None, 0  # the latest-ending frame seen, in stream time_base units
    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = thread_type  # "AUTO": frame + slice threads inside FFmpeg; bit-identical output
        try:
            for frame in container.decode(stream):
                if n in want:
                    found[n] = _to_rgb(frame)
                n += 1
                if frame.pts is not None and (last_pts is None or frame.pts > last_pts):
                    last_pts, last_duration = frame.pts, frame.duration or 0
        except _DECODE_ERRORS as err:  # single-threaded decoding raises here on a cut stream
            cut = _truncation(container, stream, n, last_pts, last_duration)
            detail = f"decoder error after {n} frames: {err}"
            raise VideoDecodeError(
                path, "truncated" if cut else "corrupt", f"{cut}; {detail}" if cut else detail
            ) from err
        cut = _truncation(container, stream, n, last_pts, last_duration)
    if cut:  # threaded decoding just stops early on a cut stream
        raise VideoDecodeError(path, "truncated", cut)
    if n == 0:
        raise VideoDecodeError(path, "no_frames", "the video stream decodes to zero frames")
    return n, [found[i] for i in wanted.tolist() if i in found]


def _truncation(
    container: av.container.InputContainer, stream: av.VideoStream, n: int, last_pts: int | None, last_duration: int
) -> str:
    """Why the decoded stream ends early on every declared measure (see the module docstring), or "" if not.

    Args:
        container: the open file.
        stream: its first video stream.
        n: frames decoded.
        last_pts: presentation time of the latest-ending decoded frame (stream time_base), None if unknown.
        last_duration: that frame's duration (stream time_base), 0 if unknown.
    """
    tb = stream.time_base
    rate = stream.average_rate or stream.guessed_rate
    frame_s = float(last_duration * tb) if last_duration and tb else (1 / float(rate) if rate else 0.0)
    checks = []  # (short beyond the tolerance, what was compared)
    declared = stream.frames  # 0 when the container does not store it (Matroska, WebM)
    if declared > 0:
        allowed = max(TRUNCATION_TOLERANCE_FRAMES, TRUNCATION_TOLERANCE_FRACTION * declared)
        checks.append((declared - n > allowed, f"decoded {n} of {declared} frames the stream declares"))
    start, duration = _declared_span(container, stream)
    if duration and last_pts is not None and tb:
        end = float((last_pts + last_duration) * tb) if last_duration else float(last_pts * tb) + frame_s
        allowed = max(TRUNCATION_TOLERANCE_FRAMES * frame_s, TRUNCATION_TOLERANCE_FRACTION * duration)
        checks.append(
            (start + duration - end > allowed, f"frames end at {end:.2f} s of a declared {start + duration:.2f} s")
        )
    if checks and all(short for short, _ in checks):
        return ", ".join(text for _, text in checks)
    return ""


def _declared_span(container: av.container.InputContainer, stream: av.VideoStream) -> tuple[float, float | None]:
    """(start, duration) in seconds that the file declares for the video stream; duration None if it does not."""
    tb = stream.time_base
    start = float(stream.start_time * tb) if stream.start_time is not None and tb else 0.0
    if stream.duration and tb:
        return start, float(stream.duration * tb)
    tag = stream.metadata.get("DURATION", "")  # Matroska's per-track tag, "HH:MM:SS.nnnnnnnnn"
    if re.fullmatch(r"\d+:\d\d:\d\d(\.\d+)?", tag):
        h, m, sec = tag.split(":")
        return start, int(h) * 3600 + int(m) * 60 + float(sec)
    if container.duration and len(container.streams) == 1:  # the container's span is the video's only then
        return (container.start_time or 0) / av.time_base, container.duration / av.time_base
    return start, None


def _to_rgb(frame: av.VideoFrame) -> np.ndarray:
    rgb = frame.to_ndarray(format="rgb24")  # [H, W, 3]
    rotation = getattr(frame, "rotation", 0)  # display matrix of phone videos (DiDeMo), counter-clockwise
    if rotation and rotation % 90 == 0:
        rgb = np.ascontiguousarray(np.rot90(rgb, k=(rotation // 90) % 4))
    return rgb


def decode_frame_folder(folder: str | Path, num_frames: int, resolution: int) -> np.ndarray:
    """Treat a folder of extracted frames (JPEG/PNG, in name order) as a video.

    Names are sorted with digit runs compared as numbers, so ``f_2.jpg`` comes before ``f_10.jpg``; for
    zero-padded names this is plain name order.

    Args:
        folder: the folder; other files in it are ignored.
        num_frames: frames to return (uniform segment centres; fewer images repeat).
        resolution: output side in pixels.

    Returns:
        [num_frames, resolution, resolution, 3] uint8 RGB.

    Raises:
        VideoDecodeError: missing folder, no image in it, or an unreadable image.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise VideoDecodeError(folder, "missing", "no such folder")
    images = sorted(
        (p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()),
        key=lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)],
    )
    if not images:
        raise VideoDecodeError(folder, "no_frames", f"no image files ({', '.join(IMAGE_EXTENSIONS)})")
    frames = []
    for i in sample_indices(len(images), num_frames).tolist():
        try:
            frames.append(resize_crop(_read_image(images[i]), resolution))
        except _DECODE_ERRORS as err:
            raise VideoDecodeError(folder, "corrupt", f"cannot read {images[i].name}: {err}") from err
    return np.stack(frames)


def _read_image(path: Path) -> np.ndarray:
    if Image is not None:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    with av.open(str(path)) as container:  # pragma: no cover - FFmpeg's image2 demuxer without Pillow
        return next(container.decode(video=0)).to_ndarray(format="rgb24")


def find_video(video_dir: str | Path, path_stem: str) -> Path | None:
    """Find a video: the exact name, ``stem + extension`` (case-insensitive), or a frames folder ``stem``.

    Args:
        video_dir: the dataset's video folder.
        path_stem: the annotation's file name without extension (DiDeMo: the full file name, which already
            has one; a re-encoded ``name.ext.mp4`` is found too).

    Returns:
        The file or folder, or None when nothing matches.
    """
    video_dir = Path(video_dir)
    exact = video_dir / path_stem
    if exact.is_file():
        return exact
    for ext in VIDEO_EXTENSIONS:
        for candidate in (video_dir / f"{path_stem}{ext}", video_dir / f"{path_stem}{ext.upper()}"):
            if candidate.is_file():
                return candidate
    if exact.is_dir():
        return exact
    return None
