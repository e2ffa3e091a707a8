"""Video decoding: clips written by PyAV here (several codecs, odd sizes, variable frame rate, broken and
truncated files), frame folders, the sampling rule, and the two real MSR-VTT clips of the shared data folder."""

from __future__ import annotations

import csv
import os
import struct
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from vtrbench.data.real import DataProblemsError, RealDataConfig, prepare_real
from vtrbench.data.video import (
    THREAD_TYPES,
    VideoDecodeError,
    decode_frame_folder,
    decode_video,
    find_video,
    resize_crop,
    sample_indices,
)

SHARED = Path(os.environ.get("VTRBENCH_SHARED_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
REAL_CLIPS = SHARED / "msrvtt" / "videos"
STEP = 20  # grey level step between consecutive frames: frame i is uniformly i * STEP


def write_clip(
    path: Path,
    n: int,
    codec: str = "libx264",
    size: tuple[int, int] = (48, 32),
    pix_fmt: str = "yuv420p",
    pts_ms: list[int] | None = None,
    noise: bool = False,
    options: dict[str, str] | None = None,
) -> Path:
    """Write n frames; frame i is flat grey i * STEP (or noise), at 25 fps or at the given pts in ms.

    ``options`` go to the muxer, e.g. ``{"movflags": "+faststart"}`` puts the mp4 index (moov) first."""
    W, H = size
    rng = np.random.default_rng(0)
    with av.open(str(path), "w", options=options or {}) as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = W, H, pix_fmt
        if pts_ms is not None:  # variable frame rate: millisecond time base, irregular timestamps
            stream.codec_context.time_base = stream.time_base = Fraction(1, 1000)
        for i in range(n):
            img = rng.integers(0, 256, (H, W, 3), dtype=np.uint8) if noise else np.full((H, W, 3), i * STEP, np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            if pts_ms is not None:
                frame.pts, frame.time_base = pts_ms[i], Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def grey_levels(frames: np.ndarray) -> list[int]:
    """Index of the source frame each output frame shows: [T, H, W, 3] -> T frame numbers."""
    return [round(float(f.mean()) / STEP) for f in frames]


@pytest.mark.parametrize(
    ("codec", "size", "pix_fmt", "ext"),
    [
        ("libx264", (48, 32), "yuv420p", "mp4"),
        ("libx264", (33, 47), "yuv444p", "mp4"),  # odd sizes: x264 needs 4:4:4 for them
        ("mpeg4", (33, 47), "yuv420p", "avi"),
        ("mpeg4", (47, 33), "yuv420p", "mkv"),
    ],
)
def test_decode_codecs_and_odd_sizes(tmp_path, codec, size, pix_fmt, ext):
    path = write_clip(tmp_path / f"clip.{ext}", 10, codec, size, pix_fmt)
    frames = decode_video(path, 4, 16)
    assert frames.shape == (4, 16, 16, 3) and frames.dtype == np.uint8
    # n=10, k=4: segment midpoints (2i+1)*10/8 -> frames 1, 3, 6, 8
    assert grey_levels(frames) == [1, 3, 6, 8]


def test_variable_frame_rate_samples_by_decoded_frame(tmp_path):
    pts = [0, 10, 50, 60, 200, 210, 500, 900]  # irregular gaps; Matroska stores no frame count
    path = write_clip(tmp_path / "vfr.mkv", 8, pts_ms=pts)
    with av.open(str(path)) as c:
        assert c.streams.video[0].frames == 0  # metadata cannot be trusted, decoding counts
    assert grey_levels(decode_video(path, 4, 16)) == [1, 3, 5, 7]


def test_clip_shorter_than_frame_count_repeats(tmp_path):
    path = write_clip(tmp_path / "short.mp4", 3)
    frames = decode_video(path, 8, 16)
    assert frames.shape == (8, 16, 16, 3)
    levels = grey_levels(frames)
    assert levels == sorted(levels) and set(levels) == {0, 1, 2}


def test_single_frame_clip(tmp_path):
    path = write_clip(tmp_path / "one.mp4", 1)
    assert decode_video(path, 5, 8).shape == (5, 8, 8, 3)


def test_rotated_phone_video_is_displayed_upright(tmp_path):
    path = tmp_path / "landscape.mp4"
    W, H = 64, 32
    img = np.zeros((H, W, 3), np.uint8)
    img[:, : W // 2] = 255  # left half white
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        for _ in range(3):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        container.mux(stream.encode())
    data = bytearray(path.read_bytes())
    # tkhd v0: version/flags 4, times 8, track id 4, reserved 4, duration 4, reserved 8, layer..volume 8
    at = data.find(b"tkhd") + 4 + 4 + 20 + 8 + 8
    # the display matrix phones write for "rotate 90" (turn clockwise to display)
    data[at : at + 36] = struct.pack(">9i", 0, 65536, 0, -65536, 0, 0, 0, 0, 1 << 30)
    path.write_bytes(bytes(data))
    frames = decode_video(path, 1, 16)
    # turned clockwise, the left (white) half becomes the top half
    assert frames[0, :4].mean() > 200 and frames[0, -4:].mean() < 50


def test_resize_short_side_then_centre_crop():
    frame = np.zeros((40, 120, 3), np.uint8)
    frame[:, 40:80] = 200  # centre third bright
    out = resize_crop(frame, 20)  # -> 20 x 60, crop columns 20..40, all from the bright third
    assert out.shape == (20, 20, 3)
    assert out[:, 2:-2].min() > 190


@pytest.mark.parametrize("name", ["video9770.mp4", "video9771.mp4"])
def test_real_msrvtt_clips(name):
    path = REAL_CLIPS / name
    if not path.is_file():
        pytest.skip(f"shared data folder not found at {SHARED} (set VTRBENCH_SHARED_DATA)")
    frames = decode_video(path, 8, 64)
    assert frames.shape == (8, 64, 64, 3) and frames.dtype == np.uint8
    assert frames.mean() > 10 and frames.std() > 10  # real content, not black or flat
    assert not np.array_equal(frames[0], frames[-1])  # frames come from different times


def test_missing_file(tmp_path):
    with pytest.raises(VideoDecodeError, match="missing") as err:
        decode_video(tmp_path / "nope.mp4", 4, 16)
    assert err.value.reason == "missing" and "nope.mp4" in str(err.value)


def test_garbage_file(tmp_path):
    path = tmp_path / "garbage.mp4"
    path.write_bytes(b"not a video" * 100)
    with pytest.raises(VideoDecodeError) as err:
        decode_video(path, 4, 16)
    assert err.value.reason == "cannot_open" and "garbage.mp4" in str(err.value)
    assert not isinstance(err.value, av.FFmpegError)


@pytest.mark.parametrize(
    ("name", "codec", "reason", "message"),
    [
        ("cut.mp4", "libx264", "cannot_open", "cut.mp4"),  # the index (moov) is at the end: lost
        ("cut.avi", "mpeg4", "truncated", "of 30 frames"),  # the header still declares 30 frames
    ],
)
def test_a_file_cut_in_half_is_reported(tmp_path, name, codec, reason, message):
    path = write_clip(tmp_path / name, 30, codec=codec, noise=True)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoDecodeError) as err:
        decode_video(path, 4, 16)
    assert err.value.reason == reason and message in str(err.value)


FASTSTART_FRAMES = 250  # 10 s at 25 fps


@pytest.fixture(scope="module")
def faststart_clip(tmp_path_factory) -> Path:
    """A complete faststart mp4 of noise frames (P-frames of similar size, so bytes are spread over the clip)."""
    path = tmp_path_factory.mktemp("faststart") / "whole.mp4"
    return write_clip(path, FASTSTART_FRAMES, noise=True, options={"movflags": "+faststart"})


def cut_copy(src: Path, dest: Path, n_bytes: int) -> Path:
    dest.write_bytes(src.read_bytes()[:n_bytes])
    return dest


def packet_offsets(path: Path) -> list[int]:
    """Byte offset of each video packet, in file order."""
    with av.open(str(path)) as container:
        return [p.pos for p in container.demux(container.streams.video[0]) if p.size > 0]


@pytest.mark.parametrize("thread_type", ["AUTO", "NONE"])
def test_complete_faststart_mp4_decodes(faststart_clip, thread_type):
    assert faststart_clip.read_bytes().find(b"moov") < faststart_clip.read_bytes().find(b"mdat")  # index first
    frames = decode_video(faststart_clip, 4, 16, thread_type)
    assert frames.shape == (4, 16, 16, 3)
    assert np.array_equal(frames, decode_video(faststart_clip, 4, 16))  # threading never changes the frames


@pytest.mark.parametrize("thread_type", ["AUTO", "NONE"])
def test_faststart_mp4_cut_at_70_percent_is_truncated(faststart_clip, tmp_path, thread_type):
    # The index at the front still declares 250 frames and 10 s. Threaded decoding stops after ~172 frames
    # without an error (before the fix the clip was stored, sampled from its first 69 %); single-threaded
    # decoding raises InvalidDataError on the cut packet.
    size = faststart_clip.stat().st_size
    path = cut_copy(faststart_clip, tmp_path / "cut.mp4", int(0.7 * size))
    with pytest.raises(VideoDecodeError) as err:
        decode_video(path, 4, 16, thread_type)
    assert err.value.reason == "truncated"
    assert "of 250 frames the stream declares" in err.value.detail and "of a declared 10.00 s" in err.value.detail
    if thread_type == "NONE":
        assert "decoder error" in err.value.detail  # the decoder's own error is kept in the message


@pytest.mark.parametrize("thread_type", ["AUTO", "NONE"])
def test_truncation_tolerance(faststart_clip, tmp_path, thread_type):
    # Tolerance for 250 frames / 10 s: max(2 frames, 1 % = 2.5 frames) and max(2 * 0.04 s, 1 % = 0.1 s).
    offsets, size = packet_offsets(faststart_clip), faststart_clip.stat().st_size
    # cut at packet boundaries: 2 frames lost (248 of 250, ends at 9.92 s) is inside the tolerance ...
    two = cut_copy(faststart_clip, tmp_path / "minus2.mp4", offsets[-2])
    assert decode_video(two, 4, 16, thread_type).shape == (4, 16, 16, 3)
    # ... 3 frames lost (247 of 250, ends at 9.88 s) is beyond it on both measures
    three = cut_copy(faststart_clip, tmp_path / "minus3.mp4", offsets[-3])
    with pytest.raises(VideoDecodeError, match="decoded 247 of 250 frames") as err:
        decode_video(three, 4, 16, thread_type)
    assert err.value.reason == "truncated"
    # a cut at 99.5 % of the bytes ends inside a packet: the decoder drops it and the frames in flight with it
    # (246 of 250 decode, 0.16 s short), beyond the tolerance, so it is truncated too
    nearly = cut_copy(faststart_clip, tmp_path / "nearly.mp4", int(0.995 * size))
    with pytest.raises(VideoDecodeError) as err:
        decode_video(nearly, 4, 16, thread_type)
    assert err.value.reason == "truncated"


def test_edit_list_trim_is_not_truncation(faststart_clip, tmp_path):
    # A clip trimmed by its edit list (stream copy with -ss): the stream still declares all 250 stored
    # frames but only 220 are shown, over the 8.8 s the (trimmed) duration declares; only one measure is short.
    data = bytearray(faststart_clip.read_bytes())
    at = data.find(b"elst")
    assert at > 0 and data[at + 4] == 0 and struct.unpack(">I", data[at + 8 : at + 12]) == (1,)  # v0, 1 entry
    segment_ms, media_time = struct.unpack(">Ii", data[at + 12 : at + 20])  # movie 1/1000 s, media 1/12800 s
    data[at + 12 : at + 20] = struct.pack(">Ii", segment_ms - 30 * 40, media_time + 30 * 512)  # skip 30 frames
    path = tmp_path / "trimmed.mp4"
    path.write_bytes(bytes(data))
    with av.open(str(path)) as c:
        assert c.streams.video[0].frames == FASTSTART_FRAMES
    assert decode_video(path, 4, 16).shape == (4, 16, 16, 3)


def test_truncated_matroska_is_reported(tmp_path):
    # Matroska stores no frame count: the declared duration alone shows the cut
    path = write_clip(tmp_path / "clip.mkv", FASTSTART_FRAMES, noise=True)
    cut = cut_copy(path, tmp_path / "cut.mkv", int(0.7 * path.stat().st_size))
    assert decode_video(path, 4, 16).shape == (4, 16, 16, 3)
    with pytest.raises(VideoDecodeError, match=r"of a declared 10\.00 s") as err:
        decode_video(cut, 4, 16)
    assert err.value.reason == "truncated"


def test_unknown_thread_type(faststart_clip):
    with pytest.raises(ValueError, match=", ".join(THREAD_TYPES)):
        decode_video(faststart_clip, 4, 16, "auto")


def test_prepare_lists_the_truncated_clip(faststart_clip, tmp_path):
    root = tmp_path / "msrvtt"
    (root / "videos").mkdir(parents=True)
    (root / "videos" / "whole.mp4").write_bytes(faststart_clip.read_bytes())
    cut_copy(faststart_clip, root / "videos" / "cut.mp4", int(0.7 * faststart_clip.stat().st_size))
    rows = ["key,vid_key,video_id,sentence", "ret0,msr0,whole,a whole clip", "ret1,msr1,cut,a cut clip"]
    (root / "MSRVTT_JSFUSION_test.csv").write_text("\n".join(rows) + "\n")
    cfg = RealDataConfig("msrvtt", str(root), frames=4, resolution=16, splits=("test",))

    with pytest.raises(DataProblemsError, match=r"1 data problems \(truncated: 1\)") as err:
        prepare_real(cfg, tmp_path / "strict")
    assert "cut.mp4: truncated (decoded" in str(err.value)

    cfg.on_problem = "skip"
    summary = prepare_real(cfg, tmp_path / "skip")
    assert summary["counts"]["test"]["videos"] == 1 and summary["problem_kinds"] == {"truncated": 1}
    with (tmp_path / "skip" / "problems.csv").open(newline="") as f:
        (row,) = csv.DictReader(f)
    # problems.csv: kind truncated; the detail carries the VideoDecodeError
    assert (row["video_id"], row["problem"]) == ("cut", "truncated")
    assert ": truncated (decoded" in row["detail"] and "of 250 frames" in row["detail"]


def test_audio_only_file(tmp_path):
    path = tmp_path / "sound.wav"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    with pytest.raises(VideoDecodeError) as err:
        decode_video(path, 4, 16)
    assert err.value.reason == "no_video_stream" and "audio" in str(err.value)


def test_frame_folder_natural_order(tmp_path):
    folder = tmp_path / "video1"
    folder.mkdir()
    for i in range(12):  # f_0.png .. f_11.png: plain string order would put f_10 after f_1
        Image.fromarray(np.full((30, 50, 3), i * STEP, np.uint8)).save(folder / f"f_{i}.png")
    (folder / "notes.txt").write_text("ignored")
    frames = decode_frame_folder(folder, 4, 16)
    assert frames.shape == (4, 16, 16, 3)
    assert grey_levels(frames) == [1, 4, 7, 10]  # (2i+1)*12/8


def test_frame_folder_errors(tmp_path):
    with pytest.raises(VideoDecodeError, match="missing"):
        decode_frame_folder(tmp_path / "absent", 4, 16)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(VideoDecodeError) as err:
        decode_frame_folder(empty, 4, 16)
    assert err.value.reason == "no_frames"
    (empty / "0001.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(VideoDecodeError) as err:
        decode_frame_folder(empty, 4, 16)
    assert err.value.reason == "corrupt" and "0001.jpg" in str(err.value)


def test_find_video(tmp_path):
    (tmp_path / "a.mp4").write_bytes(b"")
    (tmp_path / "b.WEBM").write_bytes(b"")
    (tmp_path / "c.mov").write_bytes(b"")  # DiDeMo keeps the original name
    (tmp_path / "c.mov.mp4").write_bytes(b"")
    (tmp_path / "d").mkdir()
    assert find_video(tmp_path, "a") == tmp_path / "a.mp4"
    assert find_video(tmp_path, "b") == tmp_path / "b.WEBM"
    assert find_video(tmp_path, "c.mov") == tmp_path / "c.mov"
    assert find_video(tmp_path, "d") == tmp_path / "d"
    assert find_video(tmp_path, "e") is None


def test_sample_indices_uniform_takes_segment_midpoints():
    for n, k in [(10, 4), (330, 16), (16, 16), (17, 5), (1000, 12)]:
        idx = sample_indices(n, k, "uniform")
        expected = [int((i + 0.5) * n / k) for i in range(k)]
        assert idx.tolist() == expected
        assert idx.dtype == np.int64 and np.all(np.diff(idx) > 0)


def test_sample_indices_random_stays_in_segments():
    rng = np.random.default_rng(0)
    for n, k in [(10, 4), (330, 16), (17, 5), (12, 12)]:
        for _ in range(50):
            idx = sample_indices(n, k, "random", rng)
            for i, j in enumerate(idx.tolist()):
                # frame j spans [j, j + 1); it must overlap segment [i n / k, (i + 1) n / k)
                assert j + 1 > i * n / k and j < (i + 1) * n / k
    a = sample_indices(330, 16, "random", np.random.default_rng(3))
    b = sample_indices(330, 16, "random", np.random.default_rng(3))
    assert np.array_equal(a, b)


@pytest.mark.parametrize("mode", ["uniform", "random"])
def test_sample_indices_short_clip_repeats(mode):
    rng = np.random.default_rng(1)
    for n, k in [(1, 8), (3, 8), (7, 8)]:
        idx = sample_indices(n, k, mode, rng)
        assert len(idx) == k and idx.min() >= 0 and idx.max() < n
        assert np.all(np.diff(idx) >= 0)


def test_sample_indices_rejects_bad_input():
    with pytest.raises(ValueError, match="num_available"):
        sample_indices(0, 4)
    with pytest.raises(ValueError, match="num_frames"):
        sample_indices(4, 0)
    with pytest.raises(ValueError, match="uniform, random"):
        sample_indices(4, 2, "middle")
