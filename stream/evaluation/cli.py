"""`signals eval`: offline evaluation of the model suite on a labelled JSONL file.

    signals eval --data FILE.jsonl [--task NAME] [--manifest models_onnx/manifest.json]
                 [--model TASK=VERSION] [--map OLD=NEW,...] [--out DIR] [--baseline OLD.json]
                 [--target-precision P | --target-recall R] [--bootstrap N] [--seed S]
    signals eval --from-topic signals.model_eval.v1 [--out DIR]   (champion vs challenger)

Exit status: 0 when evaluated (and no regression against --baseline), 1 when a gate metric fell
by more than the manifest's tolerance, 2 on bad input or settings (``error: ...``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stream.errors import ConfigError
from stream.models.manifest import load_manifest, parse_task_versions
from stream.paths import SHARED_DATASETS
from stream.settings import Settings

if TYPE_CHECKING:
    from stream.evaluation.gate import Gate


def add_eval(sub: Any, connection: Any) -> None:
    parser = sub.add_parser(
        "eval", help="score the models on a labelled JSONL file (offline), optionally gated",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", type=Path,
                        help="events with \"expected\" labels, or text/title+label records")
    source.add_argument("--from-topic", metavar="TOPIC",
                        help="summarise the worker's champion/challenger windows from TOPIC")
    parser.add_argument("--idle-timeout", type=float, default=5.0,
                        help="with --from-topic: stop reading after this many quiet seconds")
    parser.add_argument("--task", help="score this task only (needed for text+label records)")
    parser.add_argument("--manifest", type=Path,
                        help="model manifest (default: SIGNALS_MODELS_DIR/manifest.json)")
    parser.add_argument("--model", action="append", default=[], metavar="TASK=VERSION",
                        help="evaluate this listed version instead of the active one")
    parser.add_argument("--map", action="append", default=[], metavar="OLD=NEW,...",
                        help="rename truth labels, e.g. World=News,Sci/Tech=Technology")
    parser.add_argument("--out", type=Path, help="write result.json, report.md and PNGs here")
    parser.add_argument("--baseline", type=Path, help="a result.json to compare with (gate)")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--target-precision", type=_fraction, metavar="P",
                        help="per label: the threshold with the best recall at precision >= P")
    target.add_argument("--target-recall", type=_fraction, metavar="R",
                        help="per label: the threshold with the best precision at recall >= R")
    parser.add_argument("--bootstrap", type=int, default=1000, help="resamples for the 95%% CIs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bins", type=int, default=10, help="calibration bins")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bar on stderr (default: when stderr is a terminal)")
    parser.add_argument("--near-duplicates", action="store_true",
                        help="also score near_duplicate at the shipped threshold on labelled "
                             "pairs derived from --datasets-dir (`signals similar --calibrate`'s "
                             "held-out half)")
    parser.add_argument("--datasets-dir", type=Path, default=SHARED_DATASETS,
                        help="the shared corpora the pairs are derived from")
    parser.add_argument("--batch-max-size", type=int, help="records per pipeline batch")
    parser.add_argument("--model-threads", type=int)
    connection(parser)  # for --from-topic
    parser.set_defaults(run=run_eval)


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} must be in (0, 1]")
    return value


def run_eval(args: argparse.Namespace, settings: Settings) -> int:
    # ONNX Runtime, numpy and tqdm load only when evaluating: `signals --help` stays fast
    from stream.evaluation.gate import load_gate, load_result
    from stream.evaluation.markdown import result_summary

    if args.from_topic:
        return run_online(args, settings)
    if args.bootstrap < 0 or args.bins < 1:
        raise ConfigError("--bootstrap must be >= 0 and --bins >= 1")
    settings = _with_manifest(settings.replace(include_embedding=False), args.manifest)
    gate = load_gate(settings.manifest_path) if args.baseline else None   # fail before the run
    baseline = load_result(args.baseline) if args.baseline else None
    result = evaluate_file(args, settings)
    if args.near_duplicates:
        result["near_duplicate"] = near_duplicate_result(args, settings)
    print("\n".join(result_summary(result)))
    for note in result["notes"]:
        print(f"note: {note}")
    if args.out is not None:
        from stream.evaluation.report import write_outputs  # matplotlib: only when writing

        written = write_outputs(result, args.out)
        print(f"wrote {len(written)} files to {args.out}: " + ", ".join(p.name for p in written))
    if gate is None or baseline is None:
        return 0
    return gate_exit(baseline, result, gate, args.baseline)


def run_online(args: argparse.Namespace, settings: Settings) -> int:
    """Summarise the model-eval records on a topic (written by workers with challengers)."""
    import orjson

    from stream.connectors.kafka import read_topic
    from stream.evaluation.online import summarise, window_summary

    records = [orjson.loads(r.value) for r in
               read_topic(settings, args.from_topic, idle_timeout_s=args.idle_timeout)]
    summaries = summarise(records)
    print("\n".join(window_summary(summaries)))
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "model_eval_summary.json").write_bytes(
            orjson.dumps(summaries, option=orjson.OPT_INDENT_2))
        print(f"wrote {args.out / 'model_eval_summary.json'}")
    return 0


def evaluate_file(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """Load the models, run the file through the pipeline, score it: the result dict."""
    from stream.core.builder import build_pipeline
    from stream.evaluation.offline import evaluate, parse_label_map
    from stream.evaluation.scoring import ScoreOptions, build_result

    mapping = parse_label_map(args.map)
    pipeline = build_pipeline(settings, _versions(args.model, settings.manifest_path))
    evaluation = evaluate(args.data, pipeline, args.task, mapping,
                          manifest=settings.manifest_path, batch_size=settings.batch_max_size,
                          progress=args.progress)
    options = ScoreOptions(bootstrap=args.bootstrap, seed=args.seed, bins=args.bins,
                           target_precision=args.target_precision,
                           target_recall=args.target_recall)
    return build_result(evaluation, options, {"task": args.task, "map": mapping})


def near_duplicate_result(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """`near_duplicate` at the threshold the worker would use with these models, on the
    held-out half of the derived pairs (the same pairs and split as the calibration)."""
    from stream.bench.similarity import encode
    from stream.core.builder import build_pipeline
    from stream.similarity.calibration import (
        ORIGINALS,
        PER_FILE,
        derive_pairs,
        held_out_report,
        shipped_threshold,
    )

    encoder = build_pipeline(settings, _versions(args.model, settings.manifest_path)
                             ).enricher.encoder
    _, pairs, embedded = derive_pairs(args.datasets_dir, lambda texts: encode(texts, encoder),
                                      per_file=PER_FILE, originals=ORIGINALS, seed=args.seed)
    report = held_out_report(pairs, embedded, shipped_threshold(settings, encoder.version))
    return {**report, "encoder": encoder.version, "per_file": PER_FILE, "originals": ORIGINALS}


def gate_exit(baseline: dict[str, Any], result: dict[str, Any], gate: Gate, path: Path) -> int:
    """Print the comparison with the baseline; 1 when a gate metric regressed."""
    from stream.evaluation.gate import compare, comparison_notes

    for note in comparison_notes(baseline, result):
        print(f"note: {note}")
    regressions = compare(baseline, result, gate)
    if not regressions:
        print(f"gate: no regression against {path} (tolerances {gate.tolerance})")
        return 0
    print(f"gate: {len(regressions)} regression(s) against {path}:", file=sys.stderr)
    for regression in regressions:
        print(f"  {regression.describe()}", file=sys.stderr)
    return 1


def _with_manifest(settings: Settings, manifest: Path | None) -> Settings:
    if manifest is None:
        return settings
    if manifest.name != "manifest.json":
        raise ConfigError(f"--manifest {manifest}: the file must be called manifest.json (its "
                          "folder holds the model files it names)")
    return settings.replace(models_dir=manifest.parent)


def _versions(pairs: list[str], manifest_path: Path) -> dict[str, str]:
    """``--model TASK=VERSION`` flags, each checked against the manifest."""
    manifest = load_manifest(manifest_path)
    versions = {}
    for task, version in parse_task_versions(pairs, "--model").items():
        if task not in manifest.active:
            raise ConfigError(f"--model {task}={version}: no task {task!r} runs from "
                              f"{manifest_path}; tasks: {sorted(manifest.active)}")
        versions[task] = manifest.resolve(task, version).version  # unknown: ConfigError
    return versions
