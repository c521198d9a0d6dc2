"""Plot a downstream dev score against pretraining FLOPs (log axis), one curve per pretraining objective, with the
scratch arm as a band and pretrained references as lines; print the points as a markdown table.

  python scripts/plot_compute_curve.py --metric eval_matched_accuracy \
    --curve mlm=outputs/pretraining/en_trainside_small_3l_4h_2400_cpu:outputs/studies/mnli-pretraining-curve-2400-cpu \
    --curve electra=outputs/pretraining/electra_small_cpu:outputs/studies/mnli-curve-electra-cpu \
    --scratch outputs/studies/mnli-what-pretraining-buys-cpu/scratch \
    --reference minilm=outputs/studies/mnli-what-pretraining-buys-cpu/pretrained \
    --output compute_curve.png --table compute_curve.md

--curve NAME=PRETRAINING_RUN[,PRETRAINING_RUN...]:FOLDER[:FOLDER...]  (repeatable) a curve: the pretraining run's
    output folder (several, comma-separated, when each budget is a run of its own: word vectors,
    scripts/train_word_vectors.py), then the folders of the fine-tuning runs that started from its checkpoints. A
    folder is a run, a study's arm (its seed<k>/ runs) or a whole study (<arm>/seed<k>/); each run's budget is the
    checkpoint its model_name_or_path names (PRETRAINING_RUN/checkpoint-<step>, or PRETRAINING_RUN itself for the
    last step or a word-vector run). Runs of one checkpoint make one point: the mean over their seeds with a 95%
    t-interval.
--scratch FOLDER  (repeatable) the runs fine-tuned from random weights: a horizontal band (mean, 95% interval).
--reference NAME=FOLDER  (repeatable) runs of a pretrained model (MiniLM): a dashed line at their mean; the figure
    and the table carry the model's caveat (all-MiniLM-L6-v2 was trained on AllNLI and SQuAD pairs).
--metric KEY  the all_results.json key (eval_matched_accuracy, eval_f1, ...); its name and scale come from the runs.
Unfinished jobs (no all_results.json) are left out. A pretraining run that was stopped before its last step is read
from its checkpoints (config, log history). See pipelines/compute_curve.py for how FLOPs are counted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipelines import cli
from pipelines.compute_curve import CurveError, draw, markdown_table, read_curve, read_group, save


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    curve = "NAME=PRETRAINING_RUN[,PRETRAINING_RUN...]:FOLDER[:FOLDER...]"
    parser.add_argument("--curve", action="append", default=[], metavar=curve)
    parser.add_argument("--scratch", action="append", default=[], metavar="FOLDER")
    parser.add_argument("--reference", action="append", default=[], metavar="NAME=FOLDER")
    parser.add_argument("--metric", required=True, help="all_results.json key, e.g. eval_matched_accuracy, eval_f1")
    parser.add_argument("--title", help="default: the metric's label, by pretraining compute")
    parser.add_argument("--output", type=Path, required=True, help="the PNG to write")
    parser.add_argument("--table", type=Path, help="also write the markdown table to this file")
    args = parser.parse_args(argv)
    if not args.curve:
        parser.error("give at least one --curve NAME=PRETRAINING_RUN:FOLDER")
    args.curve = [split_curve(parser, spec) for spec in args.curve]
    args.reference = [split_reference(parser, spec) for spec in args.reference]
    names = [name for name, _, _ in args.curve]
    if len(set(names)) != len(names):
        parser.error(f"two --curve options have the same name: {', '.join(names)}")
    return args


def split_curve(parser: argparse.ArgumentParser, spec: str) -> tuple[str, str, list[str]]:
    name, _, paths = spec.partition("=")
    pretraining, *folders = paths.split(":")
    runs = pretraining.split(",")
    if not name or not all(runs) or not folders or not all(folders):
        parser.error(f"--curve {spec}: expected NAME=PRETRAINING_RUN[,PRETRAINING_RUN...]:FOLDER[:FOLDER...]")
    return name, runs, folders


def split_reference(parser: argparse.ArgumentParser, spec: str) -> tuple[str, str]:
    name, _, folder = spec.partition("=")
    if not name or not folder:
        parser.error(f"--reference {spec}: expected NAME=FOLDER")
    return name, folder


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    curves, scales = {}, []
    for name, pretraining, folders in args.curve:
        curves[name], scale = read_curve(name, pretraining, folders, args.metric)
        scales.append(scale)
    scratch = None
    if args.scratch:
        scratch, scale = read_group("scratch", args.scratch, args.metric)
        scales.append(scale)
    references = []
    for name, folder in args.reference:
        reference, scale = read_group(name, [folder], args.metric)
        references.append(reference)
        scales.append(scale)
    if len(set(scales)) > 1:
        raise CurveError(f"the folders hold runs of different tasks: {', '.join(sorted({s.label for s in scales}))}")
    table = markdown_table(curves, scratch, references, scales[0])
    print(table)
    if args.table:
        args.table.write_text(table, encoding="utf-8")
    save(draw(curves, scratch, references, scales[0], args.title), args.output)
    print(f"Wrote {args.output}" + (f" and {args.table}" if args.table else ""))


if __name__ == "__main__":
    cli.run(main, sys.argv[1:])
