"""Plot downstream dev scores against pretraining steps and FLOPs (see pipelines/compute_curve.py).

    python scripts/plot_compute_curve.py outputs/pretraining/en_trainside_small_3l_4h_cpu \
        0=outputs/studies/mnli-pretraining-curve-cpu/step0/seed42 600=outputs/studies/mnli-pretraining-curve-cpu/step600/seed42 \
        --metric eval_matched_accuracy --metric eval_mismatched_accuracy --output compute_curve.png
"""

import argparse
import json
from pathlib import Path

from pipelines.compute_curve import plot, read_points

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pretraining_dir", type=Path, help="the pretraining run's output folder")
    parser.add_argument("runs", nargs="+", help="STEP=fine-tuning run folder")
    parser.add_argument("--metric", action="append", help="all_results.json key (repeatable)")
    parser.add_argument("--title", default="MNLI dev accuracy after fine-tuning, by pretraining budget")
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()
    points = {metric: read_points(args.pretraining_dir, args.runs, metric) for metric in args.metric or ["eval_matched_accuracy"]}
    plot(points, args.output, args.title)
    print(json.dumps(points, indent=2))
