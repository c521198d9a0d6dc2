"""Where a step spends its time (scripts/profile_steps.py): torch.profiler's top operators of training and evaluation
steps, as markdown rows. The steps are the project's own: the real Trainer with the benchmark's settings
(pipelines/benchmark.py), or the pretraining steps of pipelines/benchmark_pretraining.py."""

from __future__ import annotations

import tempfile

from torch.profiler import ProfilerActivity, profile

from pipelines import benchmark, benchmark_pretraining, model_loading, training
from pipelines.arguments import ModelArguments
from pipelines.tasks import mnli


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


def profile_pretraining(
    objective: str, dropout: float | None, data_dir: str, warmup_steps: int, steps: int, rows: int
) -> str:
    """Pretraining steps of the scratch small-3l-4h pre-LN model, as scripts/benchmark.py --pretraining runs them."""
    batch_size = 64
    prof = profile(activities=[ProfilerActivity.CPU], record_shapes=True)
    with tempfile.TemporaryDirectory() as output_dir:
        trainer, _ = benchmark_pretraining.pretraining_trainer(
            benchmark_pretraining.scratch_model_arguments("small-3l-4h"),
            objective,
            dropout,
            f"{data_dir}/corpus/enwiki_sample.txt",
            output_dir,
            warmup_steps + steps,
            batch_size,
            [profile_after_warmup(prof, warmup_steps)],
        )
        trainer.train()
    precision, model = benchmark.machine_precision(), trainer.model
    dropout_text = "the model's own" if dropout is None else dropout
    return "\n".join(
        [
            f"Machine: {benchmark.machine_text()}; precision {precision}; attention "
            f"{model.config._attn_implementation}\n",
            f"Pretraining ({objective}, dropout {dropout_text}): {steps} steps of {batch_size} blocks of 128 "
            f"tokens after {warmup_steps} warm-up steps\n",
            *top_ops_by_shape(prof, rows),
        ]
    )


def profile_finetuning(
    model_name: str,
    data_dir: str,
    warmup_steps: int,
    steps: int,
    batch_size: int,
    eval_samples: int,
    eval_batch_size: int,
    rows: int,
) -> str:
    """Training steps on MNLI pairs, then an evaluation pass (profiled on its second run), as markdown."""
    from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding

    precision = benchmark.machine_precision()
    model_args = ModelArguments(model_name_or_path=model_name)
    data_args = mnli.MnliDataArguments(
        data_dir=f"{data_dir}/mnli",
        max_seq_length=128,
        max_train_samples=(warmup_steps + steps) * batch_size,
        max_eval_samples=eval_samples,
        sort_eval_by_length=True,
    )
    prof = profile(activities=[ProfilerActivity.CPU])
    with tempfile.TemporaryDirectory() as output_dir:
        training_args = benchmark.timing_arguments(
            output_dir,
            precision,
            batch_size,
            warmup_steps + steps,
            per_device_eval_batch_size=eval_batch_size,
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
            callbacks=[profile_after_warmup(prof, warmup_steps)],
        )
        trainer.train()
        train_table = top_ops(prof, rows)
        trainer.evaluate()  # warm-up: oneDNN builds its kernels for each new shape once
        with profile(activities=[ProfilerActivity.CPU]) as eval_prof:
            trainer.evaluate()
        eval_table = top_ops(eval_prof, rows)

    return "\n".join(
        [
            f"Machine: {benchmark.machine_text()}; precision {precision}; attention "
            f"{model.config._attn_implementation}\n",
            f"Training: {steps} steps of {batch_size} pairs after {warmup_steps} warm-up steps\n",
            *train_table,
            f"\nEvaluation: {eval_samples} length-sorted dev-matched pairs in batches of {eval_batch_size} "
            "(second pass)\n",
            *eval_table,
        ]
    )
