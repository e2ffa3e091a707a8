"""``vtrbench prepare|train|evaluate|aggregate|report``: what the workflow's rules call.

Every command takes the run config as ``--config FILE`` (plus ``--set key.sub=value`` overrides) or as
``--config-json`` (the workflow passes the config Snakemake holds, command-line overrides included). Errors a user
can fix are printed as one line and exit with status 2 (set ``VTRBENCH_DEBUG=1`` for the traceback).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import yaml

from vtrbench import config as config_lib

# YAML 1.1 reads "3e-3" (an exponent without a dot) as a string; a user typing it means a number.
_EXPONENT_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _parse_value(raw: str) -> Any:
    value = yaml.safe_load(raw)
    return float(value) if isinstance(value, str) and _EXPONENT_NUMBER.fullmatch(value) else value


def _parse_set(items: list[str]) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep:
            raise config_lib.ConfigError(f"--set expects key.sub=value, got {item!r}")
        node = overrides
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = _parse_value(raw)
    return overrides


def _load_config(args: argparse.Namespace) -> dict[str, Any]:
    if args.config_json:
        return config_lib.validate(json.loads(args.config_json))
    if not args.config:
        raise config_lib.ConfigError("give --config FILE (or --config-json)")
    return config_lib.load(args.config, _parse_set(args.set))


def cmd_prepare(args: argparse.Namespace) -> None:
    from vtrbench.data.prepare import prepare

    manifest = prepare(_load_config(args), args.out, threads=args.threads)
    print(f"prepared {manifest['dataset']} in {args.out}: {manifest['counts']} (fingerprint {manifest['fingerprint']})")


def cmd_train(args: argparse.Namespace) -> None:
    from vtrbench.train import train

    config = _load_config(args)
    if args.threads:
        config["train"]["threads"] = args.threads
    path = train(config, args.method, args.seed, args.data, args.out, init_checkpoint=args.init_from)
    print(f"trained {args.method} seed {args.seed}: {path}")


def cmd_rerank(args: argparse.Namespace) -> None:
    from baselines.rerank import evaluate_rerank

    for m in evaluate_rerank(_load_config(args), args.method, args.seed, args.data, args.runs):
        print(f"{m['method']} seed {args.seed}: t2v R@1 {m['t2v']['R@1']:.1f} (ceiling {m['rerank_ceiling']:.1f})")


def cmd_latency(args: argparse.Namespace) -> None:
    from vtrbench.latency import benchmark

    rows = benchmark(_load_config(args), args.method, args.seed, args.data, args.runs, args.out)
    print(f"wrote {len(rows)} latency rows to {args.out}")


def cmd_tradeoff(args: argparse.Namespace) -> None:
    from vtrbench.report.tradeoff import tradeoff

    table = tradeoff(args.metrics, args.latency, args.tables, args.plots, args.reference_gallery)
    print(f"recall vs latency of {len(table)} method(s): {args.tables}/latency.csv, {args.plots}/recall_vs_latency.png")


def cmd_evaluate(args: argparse.Namespace) -> None:
    from vtrbench.runs import evaluate_checkpoint

    metrics = evaluate_checkpoint(
        _load_config(args), args.method, args.seed, args.data, args.model, args.out, split=args.split
    )
    t2v = metrics["t2v"]
    print(
        f"{args.method} seed {args.seed} {args.split}: t2v R@1 {t2v['R@1']:.1f} R@5 {t2v['R@5']:.1f} "
        f"R@10 {t2v['R@10']:.1f} MdR {t2v['MdR']:.1f}"
    )


def cmd_aggregate(args: argparse.Namespace) -> None:
    from vtrbench.report.aggregate import aggregate

    tables = aggregate(args.metrics, args.out)
    print(f"aggregated {len(tables['runs'])} run(s) into {args.out}")


def cmd_report(args: argparse.Namespace) -> None:
    from vtrbench.report.html import render_report

    render_report(args.tables, args.out, config=_load_config(args), published=args.published, figures_dir=args.figures)
    print(f"wrote {args.out}")


def cmd_throughput(args: argparse.Namespace) -> None:
    from vtrbench import throughput

    config = _load_config(args)
    if not args.losses and not (args.method and args.data):
        raise ValueError("throughput: give --method NAME --data DIR, or --losses")
    if args.losses:
        raw = throughput.run_loss_throughput(config, args.out)
    else:
        raw = throughput.run_throughput(config, args.method, args.data, args.out)
    print(f"wrote {len(raw)} timing rows to {args.out}")


def cmd_throughput_aggregate(args: argparse.Namespace) -> None:
    from vtrbench.throughput import aggregate_throughput

    table = aggregate_throughput(args.files, args.losses, args.batch_size, args.tables, args.plot)
    print(f"aggregated {len(args.files)} throughput file(s) into {args.tables}/throughput.csv ({len(table)} rows)")


def cmd_sweep_aggregate(args: argparse.Namespace) -> None:
    from vtrbench.sweep import aggregate_sweep

    table = aggregate_sweep(args.runs, args.batch_size, args.tables, args.plots)
    print(f"aggregated {len(args.runs)} sweep run(s) into {args.tables}/frame_sweep.csv ({len(table)} rows)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vtrbench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, func: Any, help_text: str, needs_config: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.set_defaults(func=func)
        if needs_config:
            p.add_argument("--config", type=Path, help="run config YAML (e.g. config/config.yaml)")
            p.add_argument(
                "--set",
                action="append",
                default=[],
                metavar="KEY=VALUE",
                help="override a config value, e.g. --set train.steps=100",
            )
            p.add_argument("--config-json", help="the whole config as JSON (used by the workflow)")
        return p

    def add_run(name: str, func: Any, help_text: str) -> argparse.ArgumentParser:
        """A command about one trained run: --method, --seed and the prepared --data folder."""
        p = add(name, func, help_text)
        p.add_argument("--method", required=True)
        p.add_argument("--seed", type=int, required=True)
        p.add_argument("--data", type=Path, required=True, help="prepared dataset folder")
        return p

    p = add("prepare", cmd_prepare, "generate or decode the dataset into results/data/{dataset}")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--threads", type=int, default=1)

    for name, func, text in (
        ("train", cmd_train, "train one method with one seed"),
        ("evaluate", cmd_evaluate, "evaluate a trained method on a split"),
    ):
        p = add_run(name, func, text)
        p.add_argument("--out", type=Path, required=True, help="run folder")
        if name == "train":
            p.add_argument("--threads", type=int, default=None, help="overrides train.threads")
            p.add_argument("--init-from", type=Path, default=None, help="model.pt of the method named by init_from")
        else:
            p.add_argument("--model", type=Path, required=True, help="model.pt written by train")
            p.add_argument("--split", default="test", choices=["val", "test"])

    p = add("aggregate", cmd_aggregate, "collect every run's result files into tables", needs_config=False)
    p.add_argument("--metrics", type=Path, nargs="+", required=True, help="metrics.json files of the runs")
    p.add_argument("--out", type=Path, required=True, help="tables folder")

    p = add("throughput", cmd_throughput, "time training steps of one method (or the losses) over frames x batch")
    p.add_argument("--method", help="method to time (or give --losses)")
    p.add_argument("--losses", action="store_true", help="time GEES vs NCE alone on random features instead")
    p.add_argument("--data", type=Path, help="prepared dataset folder (vocabulary, val captions)")
    p.add_argument("--out", type=Path, required=True, help="raw timing rows (CSV)")

    p = add("throughput-aggregate", cmd_throughput_aggregate, "throughput tables and plot", needs_config=False)
    p.add_argument("--files", type=Path, nargs="+", required=True, help="per-method throughput.csv files")
    p.add_argument("--losses", type=Path, required=True, help="loss-level raw rows (CSV)")
    p.add_argument("--batch-size", type=int, required=True, help="batch size shown in the plot (train.batch_size)")
    p.add_argument("--tables", type=Path, required=True, help="tables folder")
    p.add_argument("--plot", type=Path, required=True, help="step-time plot (PNG)")

    p = add("sweep-aggregate", cmd_sweep_aggregate, "frame sweep tables and plots (Fig. 5)", needs_config=False)
    p.add_argument("--runs", type=Path, nargs="+", required=True, help="sweep run folders {loss}/f{frames}/seed{seed}")
    p.add_argument("--batch-size", type=int, required=True, help="train.batch_size (for clips/s)")
    p.add_argument("--tables", type=Path, required=True, help="tables folder")
    p.add_argument("--plots", type=Path, required=True, help="plots folder")

    for name, func, text in (
        ("rerank", cmd_rerank, "evaluate a re-ranking method's (k, fusion) variants on the test split"),
        ("latency", cmd_latency, "query-latency benchmark of one trained method (raw rows, latency.csv)"),
    ):
        p = add_run(name, func, text)
        p.add_argument("--runs", type=Path, required=True, help="results/runs/{dataset}: the stages' model.pt")
        if name == "latency":
            p.add_argument("--out", type=Path, required=True, help="latency.csv to write")

    p = add("tradeoff", cmd_tradeoff, "recall-vs-latency tables and plot", needs_config=False)
    p.add_argument("--metrics", type=Path, nargs="+", required=True, help="metrics.json files")
    p.add_argument("--latency", type=Path, nargs="+", required=True, help="latency.csv files")
    p.add_argument("--tables", type=Path, required=True)
    p.add_argument("--plots", type=Path, required=True)
    p.add_argument("--reference-gallery", type=int, default=1000, help="gallery size of the per-query latency")

    p = add("report", cmd_report, "render results/report.html from the tables")
    p.add_argument("--tables", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--published", type=Path, default=None, help="ledger of published results (data/published.csv)")
    p.add_argument("--figures", type=Path, default=None, help="folder for the PNG figures (default: beside --out)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, FileNotFoundError, RuntimeError, FloatingPointError) as err:
        if os.environ.get("VTRBENCH_DEBUG"):
            raise
        print(f"vtrbench {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
