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
import tempfile
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from pipelines import benchmark, benchmark_pretraining, cli, model_loading, training
from pipelines.arguments import ModelArguments
from pipelines.tasks import mnli

REPO = Path(__file__).resolve().parent.parent


def top_ops(prof, rows: int) -> list[str]:
    """Markdown rows: operator, calls, self CPU ms, share of the total self CPU time."""
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    lines = ["| operator | calls | self CPU ms | share |", "|---|---:|---:|---:|"]
    for e in events[:rows]:
        lines.append(
            f"| `{e.key}` | {e.count} | {e.self_cpu_time_total / 1e3:.1f} | "
            f"{100 * e.self_cpu_time_total / total:.1f}% |"
        )
    lines.append(f"| total (all operators) | | {total / 1e3:.1f} | 100% |")
    return lines


def profile_after_warmup(prof, warmup_steps: int):
    """A Trainer callback starting the profiler after the warm-up steps and stopping it at the end of training."""
    from transformers import TrainerCallback

    class ProfileAfterWarmup(TrainerCallback):
        def on_step_begin(self, args_, state, control, **kwargs):
            if state.global_step == warmup_steps:
                prof.start()

        def on_train_end(self, args_, state, control, **kwargs):
            prof.stop()

    return ProfileAfterWarmup()


def top_ops_by_shape(prof, rows: int) -> list[str]:
    """Markdown rows like top_ops, one per operator and input shapes."""
    events = [e for e in prof.key_averages(group_by_input_shape=True) if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    lines = ["| operator | input shapes | calls | self CPU ms | share |", "|---|---|---:|---:|---:|"]
    for e in events[:rows]:
        shapes = ", ".join(str(shape) for shape in e.input_shapes if shape)
        lines.append(
            f"| `{e.key}` | {shapes} | {e.count} | {e.self_cpu_time_total / 1e3:.1f} | "
            f"{100 * e.self_cpu_time_total / total:.1f}% |"
        )
    lines.append(f"| total (all operators) | | | {total / 1e3:.1f} | 100% |")
    return lines


def profile_pretraining(args):
    """Pretraining steps of the scratch small-3l-4h pre-LN model, as scripts/benchmark.py --pretraining runs them."""
    batch_size = 64
    prof = profile(activities=[ProfilerActivity.CPU], record_shapes=True)
    with tempfile.TemporaryDirectory() as output_dir:
        trainer, _ = benchmark_pretraining.pretraining_trainer(
            benchmark_pretraining.scratch_model_arguments("small-3l-4h"),
            args.pretraining,
            args.pretraining_dropout,
            f"{args.data_dir}/corpus/enwiki_sample.txt",
            output_dir,
            args.warmup_steps + args.steps,
            batch_size,
            [profile_after_warmup(prof, args.warmup_steps)],
        )
        trainer.train()
    precision, model = benchmark.machine_precision(), trainer.model
    dropout = "the model's own" if args.pretraining_dropout is None else args.pretraining_dropout
    print(
        f"Machine: {benchmark.machine_text()}; precision {precision}; attention {model.config._attn_implementation}\n"
    )
    print(
        f"Pretraining ({args.pretraining}, dropout {dropout}): {args.steps} steps of {batch_size} blocks of 128 "
        f"tokens after {args.warmup_steps} warm-up steps\n"
    )
    print("\n".join(top_ops_by_shape(prof, args.rows)))


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
        return profile_pretraining(args)

    from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding

    precision = benchmark.machine_precision()
    model_args = ModelArguments(model_name_or_path=args.model)
    data_args = mnli.MnliDataArguments(
        data_dir=f"{args.data_dir}/mnli",
        max_seq_length=128,
        max_train_samples=(args.warmup_steps + args.steps) * args.batch_size,
        max_eval_samples=args.eval_samples,
        sort_eval_by_length=True,
    )
    prof = profile(activities=[ProfilerActivity.CPU])
    with tempfile.TemporaryDirectory() as output_dir:
        training_args = benchmark.timing_arguments(
            output_dir,
            precision,
            args.batch_size,
            args.warmup_steps + args.steps,
            per_device_eval_batch_size=args.eval_batch_size,
            train_sampling_strategy="group_by_length",
        )
        tokenizer = model_loading.load_tokenizer(model_args)
        model = model_loading.load_model(
            model_args, AutoModelForSequenceClassification, tokenizer, max_seq_length=128, num_labels=3
        )
        features = mnli.preprocess(mnli.load_raw_datasets(data_args), tokenizer, data_args, training_args)
        trainer = training.PipelineTrainer(
            model=model,
            args=training_args,
            train_dataset=features["train"],
            eval_dataset=features["validation_matched"],
            processing_class=tokenizer,
            data_collator=DataCollatorWithPadding(tokenizer),
            callbacks=[profile_after_warmup(prof, args.warmup_steps)],
        )
        trainer.train()
        train_table = top_ops(prof, args.rows)
        trainer.evaluate()  # warm-up: oneDNN builds its kernels for each new shape once
        with profile(activities=[ProfilerActivity.CPU]) as eval_prof:
            trainer.evaluate()
        eval_table = top_ops(eval_prof, args.rows)

    print(
        f"Machine: {benchmark.machine_text()}; precision {precision}; attention {model.config._attn_implementation}\n"
    )
    print(f"Training: {args.steps} steps of {args.batch_size} pairs after {args.warmup_steps} warm-up steps\n")
    print("\n".join(train_table))
    print(
        f"\nEvaluation: {args.eval_samples} length-sorted dev-matched pairs in batches of {args.eval_batch_size} "
        "(second pass)\n"
    )
    print("\n".join(eval_table))


if __name__ == "__main__":
    cli.run(main)
