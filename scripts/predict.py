"""Run a finished run's model over a JSON-lines file: one prediction per input line, in the same order.

    python scripts/predict.py outputs/mnli/minilm_cpu --input pairs.jsonl --output predictions.jsonl
    python scripts/predict.py outputs/qa/minilm_squad --input questions.jsonl --output answers.jsonl --batch-size 64

The task comes from the run folder (run_info.json, else config.json), and says which fields a line needs:
- MNLI: each line has "premise" and "hypothesis"; the output line adds "predicted_label", "score" (its
  probability) and "scores" (every label's probability).
- Other GLUE tasks: the task's GLUE fields ("sentence", or "sentence1"/"sentence2", "question1"/"question2", ...);
  classifiers add the same three fields as MNLI, STS-B (regression) adds "predicted_score".
- QA: each line has "question" and "context"; the output line adds "predicted_answer", "score", and "start"/"end"
  (character offsets of the answer in the context). Windows follow the run's recipe (max_seq_length, doc_stride).
Every other field of an input line (an id, a gold label) is copied to its output line unchanged.

All input lines are checked before the model runs; an error names the file, the line and the field.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipelines import cli
from pipelines.prediction import predict


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="Output folder of a finished run (config.json, weights, tokenizer).")
    parser.add_argument(
        "--input",
        type=Path,
        required=True,
        help="JSON-lines file: the task's text fields (premise/hypothesis, sentence, question/context, ...) per line.",
    )
    parser.add_argument("--output", type=Path, required=True, help="JSON-lines file to write.")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--device", default=None, help="cpu, cuda, cuda:1, ... (default: the first GPU if any, else CPU)."
    )
    parser.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="Allow model code from the run folder (only needed without the pipelines package's own classes).",
    )
    args = parser.parse_args(argv)
    count = predict(args.run_dir, args.input, args.output, args.batch_size, args.device, args.trust_remote_code)
    print(f"Wrote {count} predictions to {args.output}")
    return 0


if __name__ == "__main__":
    cli.run(main)
