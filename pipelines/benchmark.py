"""Speed benchmark: the reference setup of the HF examples against this project's defaults, in one process.

Everything is measured in the same run, on real MNLI batches, so the ratios compare like with like:
- the matmul ceiling of this machine in fp32 and bf16 (GFLOP/s);
- training samples/s, real tokens/s, MFU (model FLOPs per second over the measured ceiling of the precision in
  use, counting only real tokens: padding is waste) and peak RSS, with the real Trainer, for each setup;
- evaluation samples/s;
- tokenization time the first time and from the datasets cache.

Setups:
- reference: pad every pair to 128, fp32, random batches, eval batch 8 (run_glue.py's defaults);
- project:   dynamic padding, bf16 autocast, length-grouped batches, length-sorted eval in batches of 128.
"""

from __future__ import annotations

import datetime
import json
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
import torch

from pipelines import training
from pipelines.arguments import ModelArguments
from pipelines.tasks import mnli


@dataclass
class Setup:
    name: str
    pad_to_max_length: bool
    bf16: bool
    train_sampling_strategy: str
    sort_eval_by_length: bool
    eval_batch_size: int
    optim: str = "adamw_torch"


REFERENCE = Setup("reference", pad_to_max_length=True, bf16=False, train_sampling_strategy="random",
                  sort_eval_by_length=False, eval_batch_size=8)
PROJECT = Setup("project", pad_to_max_length=False, bf16=True, train_sampling_strategy="group_by_length",
                sort_eval_by_length=True, eval_batch_size=128)


def matmul_ceiling(dtype: torch.dtype, size: int = 2048, repeats: int = 5) -> float:
    """Best-of-N GFLOP/s of a square matmul: the machine's practical peak for this precision."""
    a = torch.randn(size, size, dtype=dtype)
    b = torch.randn(size, size, dtype=dtype)
    torch.matmul(a, b)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def training_flops_per_token(model, seq_len: float) -> float:
    """6 x non-embedding parameters (forward + backward) + attention scores and values, per real token."""
    params = training.count_parameters(model)["non_embedding"]
    config = model.config
    layers = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layers")
    hidden = getattr(config, "hidden_size", None) or getattr(config, "dim")
    return 6 * params + 12 * layers * hidden * seq_len


class PeakRss:
    """Peak resident memory of this process while the block runs (sampled every 20 ms)."""

    def __enter__(self):
        self.process = psutil.Process()
        self.peak = self.process.memory_info().rss
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while self.running:
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.02)

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()


class StepTimer:
    """Trainer callback timing the steps after the warm-up ones."""

    def __init__(self, warmup_steps: int):
        from transformers import TrainerCallback

        timer = self

        class Callback(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                if state.global_step == warmup_steps:
                    timer.start = time.perf_counter()

            def on_train_end(self, args, state, control, **kwargs):
                timer.end = time.perf_counter()

        self.callback = Callback()
        self.start = self.end = None


def count_real_tokens(features, indices) -> int:
    return int(sum(features["length"][i] for i in indices)) if "length" in features.column_names else 0


def measure(model_args: ModelArguments, setup: Setup, data_dir: str, train_samples: int, eval_samples: int,
            steps: int, warmup_steps: int, batch_size: int, ceilings: dict) -> dict:
    from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding, Trainer, TrainingArguments

    torch.manual_seed(0)
    data_args = mnli.MnliDataArguments(data_dir=f"{data_dir}/mnli", max_seq_length=128, max_train_samples=train_samples,
                                       max_eval_samples=eval_samples, pad_to_max_length=setup.pad_to_max_length,
                                       sort_eval_by_length=setup.sort_eval_by_length)
    with tempfile.TemporaryDirectory() as output_dir:
        args = TrainingArguments(
            output_dir=output_dir, use_cpu=not torch.cuda.is_available(), bf16=setup.bf16, report_to=[],
            per_device_train_batch_size=batch_size, per_device_eval_batch_size=setup.eval_batch_size,
            max_steps=warmup_steps + steps, train_sampling_strategy=setup.train_sampling_strategy, save_strategy="no",
            logging_strategy="no", disable_tqdm=True, optim=setup.optim, seed=0, average_tokens_across_devices=False,
        )
        raw = mnli.load_raw_datasets(data_args)
        tokenizer = training.load_tokenizer(model_args)
        model = training.load_model(model_args, AutoModelForSequenceClassification, tokenizer, max_seq_length=128, num_labels=3)
        features = mnli.preprocess(raw, tokenizer, data_args, args)
        timer = StepTimer(warmup_steps)
        trainer = Trainer(model=model, args=args, train_dataset=features["train"], eval_dataset=features["validation_matched"],
                          processing_class=tokenizer, data_collator=DataCollatorWithPadding(tokenizer), callbacks=[timer.callback])
        with PeakRss() as memory:
            trainer.train()
        seconds = timer.end - timer.start
        samples = steps * batch_size
        mean_real_tokens = float(np.mean(features["train"]["length"]))
        tokens = samples * mean_real_tokens  # sampler-independent estimate: every sample is seen at most once here
        flops = training_flops_per_token(model, mean_real_tokens) * tokens
        ceiling = ceilings["bf16" if setup.bf16 else "fp32"]
        start = time.perf_counter()
        trainer.evaluate()
        eval_seconds = time.perf_counter() - start
    return {
        "model": model_args.model_name_or_path or f"scratch:{model_args.scratch_preset}",
        "setup": setup.name,
        "train_samples_per_second": samples / seconds,
        "train_real_tokens_per_second": tokens / seconds,
        "mfu": flops / seconds / (ceiling * 1e9),
        "peak_rss_gb": memory.peak / 1e9,
        "eval_samples_per_second": len(features["validation_matched"]) / eval_seconds,
    }


def tokenization_times(model_args: ModelArguments, data_dir: str) -> dict:
    """Tokenizing the MNLI train file into an empty datasets cache, then again from that cache."""
    from transformers import TrainingArguments

    tokenizer = training.load_tokenizer(model_args)
    with tempfile.TemporaryDirectory() as cache:
        args = TrainingArguments(output_dir=cache, use_cpu=True, report_to=[])
        data_args = mnli.MnliDataArguments(data_dir=f"{data_dir}/mnli")
        times = []
        for _ in range(2):
            start = time.perf_counter()
            raw = mnli.load_raw_datasets(data_args, cache_dir=cache)
            mnli.preprocess(raw, tokenizer, data_args, args)
            times.append(time.perf_counter() - start)
    return {"tokenize_first_seconds": times[0], "tokenize_cached_seconds": times[1]}


def markdown_rows(results: list[dict], ceilings: dict) -> list[str]:
    rows = ["| model | setup | train samples/s | × ref | real tokens/s | MFU | peak RSS GB | eval samples/s | × ref |",
            "|---|---|---|---|---|---|---|---|---|"]
    reference = {r["model"]: r for r in results if r["setup"] == "reference"}
    for r in results:
        ref = reference.get(r["model"])
        train_ratio = r["train_samples_per_second"] / ref["train_samples_per_second"] if ref else float("nan")
        eval_ratio = r["eval_samples_per_second"] / ref["eval_samples_per_second"] if ref else float("nan")
        rows.append(f"| {r['model']} | {r['setup']} | {r['train_samples_per_second']:.1f} | {train_ratio:.2f} | "
                    f"{r['train_real_tokens_per_second']:.0f} | {r['mfu']:.3f} | {r['peak_rss_gb']:.2f} | "
                    f"{r['eval_samples_per_second']:.1f} | {eval_ratio:.2f} |")
    return rows


def append_to_benchmarks(path: Path, command: str, ceilings: dict, results: list[dict], tokenize: dict, note: str) -> None:
    lines = [
        f"\n## {datetime.date.today().isoformat()}: reference setup vs project defaults (scripts/benchmark.py)\n",
        f"Command: `{command}`\n",
        f"Machine: {os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()}, "
        f"{torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU'}. {note}\n",
        f"Matmul ceiling (2048³, best of 5): fp32 {ceilings['fp32']:.0f} GFLOP/s, bf16 {ceilings['bf16']:.0f} GFLOP/s. "
        "MFU counts real (non-pad) tokens against the ceiling of the precision in use.\n",
        *markdown_rows(results, ceilings),
        "",
        f"Tokenization of the MNLI train file: first time {tokenize['tokenize_first_seconds']:.2f} s, "
        f"from the datasets cache {tokenize['tokenize_cached_seconds']:.2f} s.\n",
    ]
    with path.open("a", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
