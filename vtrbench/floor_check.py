"""How far a pair method's scorer is from its FLOP floor at each fusion width (docs/cross-encoder.md).

The embedded default fuses at width 64; the cross-encoders people deploy fuse at 512-768 (CLIP ViT-B, BERT-base).
Per token the GEMM FLOPs grow with the width squared but the elementwise work (GELU, softmax, LayerNorm, residual
adds, layout copies) only with the width, so the same code can be memory- and call-bound at 64 and near its FLOP
speed at 512. The latency job measures ``x_floor`` of the trained model at the configured width; this check
measures it across widths, with random weights and inputs shaped like the default run's (captions of
``caption_tokens`` tokens, ``frames`` frames of ``resolution`` px), one thread, timed as the latency job times::

    python -m vtrbench.floor_check --out results/floor_check                          # 64 128 256 512, 1k videos
    python -m vtrbench.floor_check --out /tmp/fc --widths 16 32 --videos 20 --repeats 1 # seconds (the test)

Columns of ``floor_check.csv``: method_class, width, heads, videos, flops_per_query (counted by
``torch.utils.flop_counter``), matmul_gflops (this process's 512³ fp32 rate), floor_ms (those FLOPs at that rate),
query_ms (median of ``repeats``), x_floor = query_ms / floor_ms.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import pandas as pd
import torch

from vtrbench import resultfiles
from vtrbench.backbones import BackboneConfig, Backbones
from vtrbench.device import start
from vtrbench.latency import pair_flops
from vtrbench.methods import PairMethod, build_method, resolve
from vtrbench.timing import matmul_gflops, time_calls

VOCAB = 200


def _method(method_class: str, width: int, heads: int, resolution: int) -> PairMethod:
    """A pair method on one-layer scratch towers of ``width`` (the towers only shape its inputs)."""
    if resolve(method_class).kind != "pair":
        raise ValueError(f"floor_check: --method-class {method_class!r} is not a pair method (e.g. cross_encoder)")
    tower = {"hidden": width, "layers": 1, "heads": heads}
    cfg = BackboneConfig.from_dict(
        {
            "text": {**tower, "max_length": 40, "pooling": "mean"},
            "frame": {**tower, "patch_size": 8, "pooling": "mean"},
            "temporal": {"layers": 1, "heads": heads, "position_std": 0.5},
        }
    )
    method = build_method(Backbones(cfg, VOCAB, resolution), {"class": method_class, "fusion_heads": heads}, {})
    assert isinstance(method, PairMethod)
    return method.eval()


@torch.no_grad()
def measure(
    method_class: str, width: int, videos: int, repeats: int, caption_tokens: int, frames: int, resolution: int
) -> dict[str, float | int | str]:
    """One row: one query against ``videos`` videos at fusion width ``width``."""
    torch.manual_seed(0)
    heads = max(4, width // 64)  # 64-wide heads from 256 up (CLIP ViT-B: 8 heads at 512), 4 below as the default
    method = _method(method_class, width, heads, resolution)
    device = torch.device("cpu")
    clips = torch.randint(0, 256, (videos, frames, resolution, resolution, 3), dtype=torch.uint8)
    gallery = method.encode_videos(clips)
    ids = torch.randint(1, VOCAB, (1, caption_tokens))
    query = method.encode_texts(ids, torch.ones_like(ids))
    flops = pair_flops(method, query, gallery, torch.arange(videos)[None])
    rate = matmul_gflops(device)
    seconds = statistics.median(time_calls(lambda: method.score(query, gallery), 1, repeats, device))
    floor_s = flops / (rate * 1e9)
    return {
        "method_class": method_class,
        "width": width,
        "heads": heads,
        "videos": videos,
        "flops_per_query": flops,
        "matmul_gflops": rate,
        "floor_ms": floor_s * 1e3,
        "query_ms": seconds * 1e3,
        "x_floor": seconds / floor_s,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vtrbench.floor_check", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/floor_check"))
    parser.add_argument(
        "--method-class", default="cross_encoder", help="a registered pair-method class with a fusion_heads option"
    )
    parser.add_argument("--widths", type=int, nargs="+", default=[64, 128, 256, 512])
    parser.add_argument("--videos", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--caption-tokens",
        type=int,
        default=18,
        help="tokens per caption (default-run test captions: 12-26 words, median 19)",
    )
    parser.add_argument("--frames", type=int, default=4, help="eval.frames of the default run")
    parser.add_argument("--resolution", type=int, default=32, help="dataset.resolution of the default run")
    args = parser.parse_args(argv)
    start(1, "cpu")  # latency.threads of the default run
    shape = {"caption_tokens": args.caption_tokens, "frames": args.frames, "resolution": args.resolution}
    rows = []
    for width in args.widths:
        try:
            rows.append(measure(args.method_class, width, args.videos, args.repeats, **shape))
        except ValueError as err:
            print(f"vtrbench.floor_check: error: {err}", file=sys.stderr)
            return 2
        ms, floor, x = (rows[-1][k] for k in ("query_ms", "floor_ms", "x_floor"))
        print(f"width {width}: {ms:.1f} ms per query, floor {floor:.1f} ms, x_floor {x:.2f}")
    resultfiles.write_csv(pd.DataFrame(rows), args.out / "floor_check.csv")
    print(f"floor_check: table in {args.out / 'floor_check.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
