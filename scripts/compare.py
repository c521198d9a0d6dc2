"""Compare finished runs: a report folder with Markdown, HTML, summary.json and PNG plots.

    python scripts/compare.py outputs/studies/mnli-cpu/pretrained/seed42 outputs/studies/mnli-cpu/scratch/seed42 \
        --output-dir outputs/reports/mnli-cpu
    python scripts/compare.py pretrained=outputs/a/seed42 pretrained=outputs/a/seed43 \\
        scratch=outputs/b/seed42 scratch=outputs/b/seed43
    python scripts/compare.py outputs/a/seed42/wandb/offline-run-* --wandb-run me/pipelines/abc123 --wandb-report

See pipelines/reports.py for what the report contains.
"""

import argparse
import logging
import sys
from pathlib import Path

from pipelines import cli, reports

logger = logging.getLogger("pipelines")


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="compare.py",
        description="Compare finished runs: metrics over seeds, paired statistics, plots, examples. "
        "Writes report.md, report.html, summary.json and PNGs to --output-dir.",
    )
    parser.add_argument(
        "runs",
        nargs="*",
        metavar="RUN",
        help="A run output folder, an offline W&B run folder (<output_dir>/wandb/offline-run-*), "
        "or ARM=PATH to put the run in the arm ARM. Runs without ARM= are grouped by job type, model "
        "and the recipe keys that differ between them.",
    )
    parser.add_argument(
        "--wandb-run",
        action="append",
        default=[],
        metavar="[ARM=]ENTITY/PROJECT/RUN_ID",
        help="An online W&B run (needs credentials); repeatable.",
    )
    parser.add_argument(
        "--output-dir", default="outputs/reports/comparison", help="Report folder (default: %(default)s)."
    )
    parser.add_argument("--title", help="Report title (default: from the runs' W&B group).")
    parser.add_argument("--baseline", help="Arm the others are compared with (default: the first arm).")
    parser.add_argument(
        "--examples", type=int, default=10, help="Examples listed per direction (default: %(default)s)."
    )
    parser.add_argument(
        "--bootstrap-resamples", type=int, default=2000, help="Bootstrap resamples (default: %(default)s)."
    )
    parser.add_argument(
        "--wandb-report",
        action="store_true",
        help="Also create a W&B Report (needs credentials and `pip install wandb-workspaces`).",
    )
    parser.add_argument("--wandb-project", help="Project of the W&B Report (default: the runs' wandb_project).")
    parser.add_argument(
        "--wandb-entity", help="Entity of the W&B Report (default: WANDB_ENTITY or your default entity)."
    )
    args = parser.parse_args(argv)
    if not args.runs and not args.wandb_run:
        parser.error("give at least one RUN folder or --wandb-run")
    return args


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(format="%(levelname)s %(message)s", level=logging.INFO)
    logger.setLevel(logging.INFO)
    args = parse_args(sys.argv[1:] if argv is None else argv)
    sources = [reports.parse_source(s) for s in args.runs]
    for text in args.wandb_run:
        arm, path = reports.parse_source(text)
        sources.append((arm, "wandb:" + path))
    # A ReportError reaches cli.run: `error: <message>`, exit status 2.
    summary = reports.build_report(
        sources,
        args.output_dir,
        title=args.title,
        baseline=args.baseline,
        max_examples=args.examples,
        n_resamples=args.bootstrap_resamples,
    )
    print(f"Report: {Path(args.output_dir) / 'report.html'} (and report.md, summary.json)")
    if args.wandb_report:
        return reports.publish_wandb_report(summary, args.output_dir, sources, args.wandb_project, args.wandb_entity)
    return 0


if __name__ == "__main__":
    cli.run(main)
