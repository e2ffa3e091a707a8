"""``vtrbench <command>``: what the workflow's rules call, one function per step.

    check-config          validate a config file (YAML syntax with its line, schema, links between methods, each
                          method built and run on one random batch, the memory of a training step)
    write-config          write a unit's resolved config.json (the workflow's first job per result folder)
    prepare               generate or decode the dataset into its data folder
    pretrain              pretrain the shared towers on single SynthVTT frames against their descriptions
    features              the frozen towers' outputs on the training split (train.freeze_towers)
    tokenize              tokenise every split's captions once (the jobs that train and evaluate read them)
    train                 train one method with one seed
    evaluate              evaluate a trained method on a split (metrics.json, ranks.parquet)
    evaluate-scores       rank an external method's test scores (scores.npy) the same way
    rerank                choose a re-ranker's depth and weight on val, evaluate it on test
    latency               query-latency benchmark of one trained method (raw rows)
    distractors           encode one shard of the distractor stream with an embedding method (gallery vectors)
    scale                 exact recall and index recall-vs-QPS of one embedding method at every gallery size
    throughput            training-step timings of one method, or the declared losses alone (raw rows)
    aggregate             runs.csv, summary.csv, curves.csv from the runs' result files
    tradeoff              latency tables: latency.csv, latency_vs_gallery.csv, recall_latency.csv
    scale-tables          gallery-scale tables: scale.csv, recall_qps.csv
    throughput-aggregate  throughput.csv, loss_throughput.csv
    sweep-aggregate       the frame sweep's tables (CRET paper Fig. 5)
    compare               paired comparisons of every pair of methods (comparisons.csv)
    postprocess           the test-time post-processing variant's effect per method (postprocess.csv)
    convergence           the budget test: is each method at its plateau? (convergence.csv)
    report                report.html and its figures, from the tables it is given
    report-index          results/report.html: one line and a link per run root

Every command that needs the run config takes ``--config FILE`` (YAML or JSON, e.g. config/config.yaml or a
unit's config.json) plus ``--set key.sub=value`` overrides. Errors a user can fix (a bad value, a missing or
unreadable file, a folder that cannot be written) are printed as one line naming what to fix, with exit status 2
(set ``VTRBENCH_DEBUG=1`` for the traceback).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from vtrbench import config as config_lib


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
        node[leaf] = config_lib.parse_value(raw)
    return overrides


def _load_config(args: argparse.Namespace) -> dict[str, Any]:
    return config_lib.load(args.config, _parse_set(args.set))


def cmd_check_config(args: argparse.Namespace) -> None:
    from vtrbench.preflight import preflight

    config = _load_config(args)
    for warning in preflight(config):
        print(warning, file=sys.stderr)
    print(f"{args.config}: valid ({len(config['methods'])} methods, seeds {config['seeds']})")


def cmd_write_config(args: argparse.Namespace) -> None:
    from vtrbench import resultfiles

    resultfiles.write_json(args.out, json.loads(args.json))  # validated by the step that reads it
    print(f"wrote {args.out}")


def cmd_prepare(args: argparse.Namespace) -> None:
    from vtrbench.data.prepare import prepare

    manifest = prepare(_load_config(args), args.out, threads=args.threads)
    print(f"prepared {manifest['dataset']} in {args.out}: {manifest['counts']} (fingerprint {manifest['fingerprint']})")


def cmd_pretrain(args: argparse.Namespace) -> None:
    from vtrbench import resultfiles
    from vtrbench.pretrain import pretrain

    check = pretrain(_load_config(args), args.out)
    resultfiles.write_csv([check], args.table)
    print(
        f"pretrained the towers in {args.out}: held-out frame->description R@1 "
        f"{check['frame_to_description_R@1']:.1f} (chance {check['chance_R@1']:.2f})"
    )


def cmd_tokenize(args: argparse.Namespace) -> None:
    from vtrbench.runs import write_tokens

    files = write_tokens(_load_config(args), args.data, args.out)
    print(f"tokenised {sum(files.values())} captions into {args.out} ({len(files)} files)")


def cmd_features(args: argparse.Namespace) -> None:
    from vtrbench.device import start
    from vtrbench.runs import write_train_features

    start(args.threads, "cpu")  # one pass over the training split, before any training job
    meta = write_train_features(_load_config(args), args.data, args.tokens, args.out)
    print(
        f"cached the frozen towers' features of {meta['frames'][0]} videos and {meta['text'][0]} captions in {args.out}"
    )


def cmd_train(args: argparse.Namespace) -> None:
    from vtrbench.train import train

    path = train(
        _load_config(args),
        args.method,
        args.seed,
        args.data,
        args.out,
        args.init_from,
        tokens_dir=args.tokens,
        features_dir=args.features,
    )
    print(f"trained {args.method} seed {args.seed}: {path}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    from vtrbench.evaluate import evaluate_checkpoint

    metrics = evaluate_checkpoint(
        _load_config(args), args.method, args.seed, args.data, args.model, args.out, args.split, args.tokens
    )
    t2v = metrics["t2v"]
    print(
        f"{args.method} seed {args.seed} {args.split}: t2v R@1 {t2v['R@1']:.1f} R@5 {t2v['R@5']:.1f} "
        f"R@10 {t2v['R@10']:.1f} MdR {t2v['MdR']:.1f}"
    )


def cmd_evaluate_scores(args: argparse.Namespace) -> None:
    from vtrbench.evaluate import evaluate_scores

    metrics = evaluate_scores(_load_config(args), args.method, args.seed, args.data, args.scores, args.out)
    print(f"{args.method} seed {args.seed} test (external scores): t2v R@1 {metrics['t2v']['R@1']:.1f}")


def cmd_rerank(args: argparse.Namespace) -> None:
    from vtrbench.rerank import evaluate_rerank

    m = evaluate_rerank(
        _load_config(args), args.method, args.seed, args.data, args.first, args.second, args.out, args.tokens
    )
    chosen = m["rerank"]
    print(
        f"{args.method} seed {args.seed}: k={chosen['k']} w={chosen['weight']:g} chosen on val; test t2v R@1 "
        f"{m['t2v']['R@1']:.1f} (ceiling {m['rerank_ceiling']:.1f})"
    )


def cmd_latency(args: argparse.Namespace) -> None:
    from vtrbench.latency import benchmark

    rows = benchmark(_load_config(args), args.method, args.seed, args.data, args.models, args.out, args.tokens)
    print(f"wrote {len(rows)} latency rows to {args.out}")


def cmd_distractors(args: argparse.Namespace) -> None:
    from vtrbench.scale import encode_distractors

    cost = encode_distractors(
        _load_config(args), args.method, args.seed, args.data, args.model, args.start, args.stop, args.out, args.tokens
    )
    print(f"wrote {cost['videos']:,} gallery vectors to {args.out} ({cost['videos_per_s']:.0f} videos/s)")


def cmd_scale(args: argparse.Namespace) -> None:
    from vtrbench.scale import run_scale

    gallery, _ = run_scale(
        _load_config(args), args.method, args.seed, args.data, args.model, args.shards, args.out, args.tokens
    )
    print(f"measured {len(gallery)} gallery size(s) of {args.method} in {args.out}")


def cmd_throughput(args: argparse.Namespace) -> None:
    from vtrbench import throughput

    config = _load_config(args)
    if not args.losses and not (args.method and args.data):
        raise ValueError("throughput: give --method NAME --data DIR, or --losses")
    if args.losses:
        raw = throughput.run_loss_throughput(config, args.out)
    else:
        raw = throughput.run_throughput(config, args.method, args.data, args.out, args.tokens)
    print(f"wrote {len(raw)} timing rows to {args.out}")


def cmd_aggregate(args: argparse.Namespace) -> None:
    from vtrbench.report.aggregate import aggregate

    tables = aggregate(args.metrics, args.out, args.logs, args.rerank_sweeps, args.convergence)
    print(f"aggregated {len(tables['runs'])} run(s) into {args.out}")


def cmd_tradeoff(args: argparse.Namespace) -> None:
    from vtrbench.report.tradeoff import tradeoff

    table = tradeoff(args.metrics, args.latency, args.tables, args.reference_gallery, args.scale_points)
    print(f"recall vs latency of {len(table)} method(s): {args.tables}/recall_latency.csv")


def cmd_scale_tables(args: argparse.Namespace) -> None:
    from vtrbench.report.scale import scale_tables

    gallery, points = scale_tables(args.gallery, args.ann, args.tables)
    print(f"gallery scale: {len(gallery)} row(s), {len(points)} index point(s) in {args.tables}")


def cmd_throughput_aggregate(args: argparse.Namespace) -> None:
    from vtrbench.report.throughput import aggregate_throughput

    table = aggregate_throughput(args.files, args.losses, args.tables)
    print(f"aggregated {len(args.files)} throughput file(s) into {args.tables}/throughput.csv ({len(table)} rows)")


def cmd_sweep_aggregate(args: argparse.Namespace) -> None:
    from vtrbench.report.sweep import aggregate_sweep
    from vtrbench.sweep import parse_pair

    pairs = [parse_pair(p) for p in args.pairs] if args.pairs is not None else None
    table = aggregate_sweep(args.runs, args.tables, args.ledger, pairs)
    print(f"aggregated {len(args.runs)} sweep run(s) into {args.tables}/frame_sweep.csv ({len(table)} rows)")


def cmd_compare(args: argparse.Namespace) -> None:
    from vtrbench.report.compare import write_comparisons

    if len(args.methods) != len(args.runs):
        raise ValueError(
            f"compare: give one --methods name per --runs folder ({len(args.methods)} vs {len(args.runs)})"
        )
    table = write_comparisons(args.runs, args.methods, args.out)
    print(f"{len(table)} paired comparison(s) in {args.out}")


def cmd_postprocess(args: argparse.Namespace) -> None:
    from vtrbench.report.postprocess import write_postprocess

    if len(args.methods) != len(args.runs):
        raise ValueError(
            f"postprocess: give one --methods name per --runs folder ({len(args.methods)} vs {len(args.runs)})"
        )
    table = write_postprocess(args.runs, args.methods, args.variant, args.out)
    print(f"{len(table)} method(s) with the {args.variant} variant in {args.out}")


def cmd_convergence(args: argparse.Namespace) -> None:
    from vtrbench.report.convergence import convergence

    if not len(args.methods) == len(args.short) == len(args.long):
        raise ValueError("convergence: give as many --methods as --short and --long val folders")
    table = convergence(list(zip(args.methods, args.short, args.long, strict=True)), args.out)
    still = table[table.still_improving].method.tolist()
    print(f"budget test of {len(table)} method(s): still improving: {', '.join(still) or 'none'}")


def cmd_report(args: argparse.Namespace) -> None:
    from vtrbench.report.html import ReportInputs, render_report

    inputs = ReportInputs.from_paths(
        args.tables, manifest=args.manifest, ledger=args.ledger, benchmarks=list(args.benchmarks)
    )
    config = _load_config(args)
    render_report(inputs, args.out, config=config, figures_dir=args.figures)
    if args.summary is not None:
        from vtrbench import resultfiles
        from vtrbench.report.index import run_summary

        resultfiles.write_json(args.summary, run_summary(config, inputs.table("runs.csv")))
    print(f"wrote {args.out}")


def cmd_report_index(args: argparse.Namespace) -> None:
    from vtrbench.report.index import render_index

    n = render_index(args.results, args.out)
    print(f"wrote {args.out}: {n} run(s)")


class _Commands:
    """Adds sub-commands to the parser: one place for the flags every command of a kind shares."""

    def __init__(self, parser: argparse.ArgumentParser):
        self.sub = parser.add_subparsers(dest="command", required=True)

    def add(self, name: str, func: Any, help_text: str, needs_config: bool = True) -> argparse.ArgumentParser:
        p = self.sub.add_parser(name, help=help_text)
        p.set_defaults(func=func)
        if needs_config:
            p.add_argument("--config", type=Path, required=True, help="run config (YAML or JSON)")
            p.add_argument(
                "--set",
                action="append",
                default=[],
                metavar="KEY=VALUE",
                help="override a config value, e.g. --set train.steps=100",
            )
        return p

    def add_run(self, name: str, func: Any, help_text: str) -> argparse.ArgumentParser:
        """A command about one trained run: --method, --seed and the prepared --data folder."""
        p = self.add(name, func, help_text)
        p.add_argument("--method", required=True)
        p.add_argument("--seed", type=int, required=True)
        p.add_argument("--data", type=Path, required=True, help="prepared dataset folder")
        p.add_argument("--tokens", type=Path, default=None, help="the tokenize step's folder (default: tokenise here)")
        return p


def _run_commands(c: _Commands) -> None:
    """The steps of one unit: configs, data, training, evaluation, re-ranking, timing."""
    c.add("check-config", cmd_check_config, "validate a config file (schema, links, one probe step per method)")

    p = c.add("write-config", cmd_write_config, "write a unit's resolved config.json", needs_config=False)
    p.add_argument("--json", required=True, help="the config as JSON")
    p.add_argument("--out", type=Path, required=True)

    p = c.add("prepare", cmd_prepare, "generate or decode the dataset into its data folder")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--threads", type=int, default=1)

    p = c.add("pretrain", cmd_pretrain, "pretrain the shared towers on single SynthVTT frames and descriptions")
    p.add_argument("--out", type=Path, required=True, help="the stage's folder (writes clip/, check.json)")
    p.add_argument("--table", type=Path, required=True, help="pretraining.csv: the check, for the report")

    p = c.add("tokenize", cmd_tokenize, "tokenise every split's captions once, for the jobs that read them")
    p.add_argument("--data", type=Path, required=True, help="prepared dataset folder")
    p.add_argument("--out", type=Path, required=True, help="tokens folder")

    p = c.add("features", cmd_features, "the frozen towers' outputs on the training split, for train.freeze_towers")
    p.add_argument("--data", type=Path, required=True, help="prepared dataset folder")
    p.add_argument("--tokens", type=Path, default=None, help="the tokenize step's folder (default: tokenise here)")
    p.add_argument("--out", type=Path, required=True, help="features folder")
    p.add_argument("--threads", type=int, default=1)

    p = c.add_run("train", cmd_train, "train one method with one seed")
    p.add_argument("--out", type=Path, required=True, help="run folder")
    p.add_argument("--features", type=Path, default=None, help="the features step's folder (train.freeze_towers)")
    p.add_argument("--init-from", type=Path, default=None, help="model.pt of the method named by init_from")

    p = c.add_run("evaluate", cmd_evaluate, "evaluate a trained method on a split")
    p.add_argument("--out", type=Path, required=True, help="run folder")
    p.add_argument("--model", type=Path, required=True, help="model.pt written by train")
    p.add_argument("--split", default="test", choices=["val", "test"])

    p = c.add("evaluate-scores", cmd_evaluate_scores, "rank an external method's test scores (scores.npy)")
    p.add_argument("--method", required=True, help="the external method's name in the config")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--data", type=Path, required=True, help="prepared dataset folder")
    p.add_argument("--scores", type=Path, required=True, help="scores.npy: [n_caption, n_video] of the test split")
    p.add_argument("--out", type=Path, required=True, help="run folder")

    p = c.add_run("rerank", cmd_rerank, "choose a re-ranker's k and weight on val, evaluate it on test")
    p.add_argument("--first", type=Path, required=True, help="model.pt of the first stage (embedding method)")
    p.add_argument("--second", type=Path, required=True, help="model.pt of the second stage (pair method)")
    p.add_argument("--out", type=Path, required=True, help="the re-ranker's run folder")

    p = c.add_run("latency", cmd_latency, "query-latency benchmark of one trained method (raw rows, latency.csv)")
    p.add_argument("--models", type=Path, nargs="+", required=True, help="its model.pt (a re-ranker: both stages')")
    p.add_argument("--out", type=Path, required=True, help="latency.csv to write")

    p = c.add_run("distractors", cmd_distractors, "encode one shard of the distractor stream (gallery vectors)")
    p.add_argument("--model", type=Path, required=True, help="model.pt of the embedding method")
    p.add_argument("--start", type=int, required=True, help="first distractor video of the shard")
    p.add_argument("--stop", type=int, required=True, help="one past its last video")
    p.add_argument("--out", type=Path, required=True, help="{start}-{stop}.npy to write (its cost: .json beside it)")

    p = c.add_run("scale", cmd_scale, "exact recall and index recall-vs-QPS at every gallery size of one method")
    p.add_argument("--model", type=Path, required=True, help="model.pt of the embedding method")
    p.add_argument("--shards", type=Path, nargs="*", default=[], help="its distractor shards ({start}-{stop}.npy)")
    p.add_argument("--out", type=Path, required=True, help="folder for gallery.csv and ann.csv")

    p = c.add("throughput", cmd_throughput, "time training steps of one method (or the losses) over frames x batch")
    p.add_argument("--method", help="method to time (or give --losses)")
    p.add_argument("--losses", action="store_true", help="time the losses the methods declare, alone")
    p.add_argument("--data", type=Path, help="prepared dataset folder (vocabulary, val captions)")
    p.add_argument("--tokens", type=Path, default=None, help="the tokenize step's folder (default: tokenise here)")
    p.add_argument("--out", type=Path, required=True, help="raw timing rows (CSV)")


def _table_commands(c: _Commands) -> None:
    """The steps that read result files and write tables, statistics and the report."""
    p = c.add("aggregate", cmd_aggregate, "collect every run's result files into tables", needs_config=False)
    p.add_argument("--metrics", type=Path, nargs="+", required=True, help="metrics.json files of the runs")
    p.add_argument("--logs", type=Path, nargs="*", default=[], help="the runs' train_log.csv / val_log.csv")
    p.add_argument("--rerank-sweeps", type=Path, nargs="*", default=[], help="re-rankers' rerank_sweep.csv files")
    p.add_argument("--convergence", type=Path, default=None, help="convergence.csv (the budget test's flags)")
    p.add_argument("--out", type=Path, required=True, help="tables folder")

    p = c.add("tradeoff", cmd_tradeoff, "recall-vs-latency tables", needs_config=False)
    p.add_argument("--metrics", type=Path, nargs="+", required=True, help="metrics.json files")
    p.add_argument("--latency", type=Path, nargs="+", required=True, help="latency.csv files")
    p.add_argument("--tables", type=Path, required=True)
    p.add_argument("--reference-gallery", type=int, default=1000, help="gallery size of the per-query latency")
    p.add_argument("--scale-points", type=Path, default=None, help="recall_qps.csv: real-distractor search times")

    p = c.add("scale-tables", cmd_scale_tables, "gallery-scale tables", needs_config=False)
    p.add_argument("--gallery", type=Path, nargs="+", required=True, help="gallery.csv files of the scale step")
    p.add_argument("--ann", type=Path, nargs="+", required=True, help="ann.csv files of the scale step")
    p.add_argument("--tables", type=Path, required=True, help="tables folder")

    p = c.add("throughput-aggregate", cmd_throughput_aggregate, "throughput tables", needs_config=False)
    p.add_argument("--files", type=Path, nargs="+", required=True, help="per-method throughput.csv files")
    p.add_argument("--losses", type=Path, required=True, help="loss-level raw rows (CSV)")
    p.add_argument("--tables", type=Path, required=True, help="tables folder")

    p = c.add("sweep-aggregate", cmd_sweep_aggregate, "frame sweep tables (Fig. 5)", needs_config=False)
    p.add_argument("--runs", type=Path, nargs="+", required=True, help="sweep run folders .../seed{seed}")
    p.add_argument("--tables", type=Path, required=True, help="tables folder")
    p.add_argument("--ledger", type=Path, default=None, help="published results (data/published.csv)")
    p.add_argument(
        "--pairs",
        nargs="*",
        default=None,
        help="compared points A:B, e.g. gees@4:nce@16 (sweep_comparisons.csv; default: each loss pair at equal frames)",
    )

    p = c.add("compare", cmd_compare, "paired comparisons of every pair of methods", needs_config=False)
    p.add_argument("--methods", nargs="*", default=[], help="the method of each --runs folder")
    p.add_argument("--runs", type=Path, nargs="*", default=[], help="run folders .../seed{seed} (test ranks)")
    p.add_argument("--out", type=Path, required=True, help="comparisons.csv")

    p = c.add("postprocess", cmd_postprocess, "the post-processing variant's effect per method", needs_config=False)
    p.add_argument("--variant", required=True, help="the variant's tag (eval.postprocess: dsl, inverted_softmax)")
    p.add_argument("--methods", nargs="+", required=True, help="the method of each --runs folder")
    p.add_argument("--runs", type=Path, nargs="+", required=True, help="run folders .../seed{seed} (test ranks)")
    p.add_argument("--out", type=Path, required=True, help="postprocess.csv")

    p = c.add("convergence", cmd_convergence, "the budget test: still improving at this budget?", needs_config=False)
    p.add_argument("--methods", nargs="+", required=True)
    p.add_argument("--short", type=Path, nargs="+", required=True, help="val folders of the runs")
    p.add_argument("--long", type=Path, nargs="+", required=True, help="val folders of the longer runs")
    p.add_argument("--out", type=Path, required=True, help="convergence.csv")

    p = c.add("report", cmd_report, "render report.html from the tables it is given")
    p.add_argument("--tables", type=Path, nargs="+", required=True, help="table files (summary.csv required)")
    p.add_argument("--manifest", type=Path, default=None, help="the prepared dataset's manifest.json")
    p.add_argument("--ledger", type=Path, default=None, help="published results (data/published.csv)")
    p.add_argument("--benchmarks", type=Path, nargs="*", default=[], help="Snakemake benchmark files of the jobs")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--figures", type=Path, required=True, help="folder for the PNG figures")
    p.add_argument("--summary", type=Path, default=None, help="report.json: what the index of every run lists")

    p = c.add("report-index", cmd_report_index, "results/report.html: every run root's report", needs_config=False)
    p.add_argument("--results", type=Path, default=Path("results"), help="the folder of the run roots")
    p.add_argument("--out", type=Path, required=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vtrbench", description=__doc__.splitlines()[0])
    commands = _Commands(parser)
    _run_commands(commands)
    _table_commands(commands)
    return parser


def _os_error_line(err: OSError) -> str:
    """One line for a file-system error: our own messages as they are; a raw one with its path and what to check."""
    if not err.filename or err.strerror is None:
        return str(err)
    if isinstance(err, FileNotFoundError):
        hint = "check the path; a prepared dataset or model.pt is written by an earlier step: re-run it"
    else:
        hint = "check that the folder exists and is writable and that the disk is not full"
    return f"{err.strerror}: {err.filename} ({hint})"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, RuntimeError, FloatingPointError) as err:
        if os.environ.get("VTRBENCH_DEBUG"):
            raise
        print(f"vtrbench {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # FileNotFoundError included
        if os.environ.get("VTRBENCH_DEBUG"):
            raise
        print(f"vtrbench {args.command}: error: {_os_error_line(err)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
