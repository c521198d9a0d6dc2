"""Where a training step and an evaluation step spend their time: torch.profiler's top operators, as markdown.

    python scripts/profile_steps.py                                  # MiniLM, project defaults, 2 + 5 steps
    python scripts/profile_steps.py --model minilm --steps 5 --eval-samples 512 --threads 2
    python scripts/profile_steps.py --pretraining mlm --pretraining-dropout 0   # a pretraining step instead

The steps are the project's (scripts/benchmark.py's `project` setup): the real Trainer (PipelineTrainer) on real MNLI
pairs, dynamic padding, length-grouped batches of 32, fused AdamW with gradient clipping, the precision that
`precision: auto` picks here; evaluation of length-sorted dev-matched pairs in batches of 128. The profiler starts
after the warm-up steps. Operators are ranked by self CPU time (time in the operator itself, not in the operators it
calls), so the shares add up to the profiled total.

With `--pretraining mlm|electra`: steps of the scratch small-3l-4h pre-LN model on packed blocks of 64 x 128 tokens
from <data-dir>/corpus/enwiki_sample.txt (scripts/benchmark.py --pretraining's steps), operators grouped by input
shape, so that the vocabulary-sized tensors of the masked-LM head show as such.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from pipelines import benchmark, cli
from pipelines.profiling import profile_finetuning, profile_pretraining

REPO = Path(__file__).resolve().parent.parent


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--warmup-steps", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5, help="profiled training steps")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--eval-samples", type=int, default=512, help="dev-matched pairs in the profiled evaluation")
    parser.add_argument("--eval-batch-size", type=int, default=benchmark.PROJECT.eval_batch_size)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--rows", type=int, default=15)
    parser.add_argument("--pretraining", choices=("mlm", "electra"), default=None)
    parser.add_argument("--pretraining-dropout", type=float, default=None, help="None: the model's own (0.1)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.pretraining:
        report = profile_pretraining(
            args.pretraining, args.pretraining_dropout, args.data_dir, args.warmup_steps, args.steps, args.rows
        )
    else:
        report = profile_finetuning(
            args.model,
            args.data_dir,
            args.warmup_steps,
            args.steps,
            args.batch_size,
            args.eval_samples,
            args.eval_batch_size,
            args.rows,
        )
    print(report)


if __name__ == "__main__":
    cli.run(main)
