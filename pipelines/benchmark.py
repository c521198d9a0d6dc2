"""Speed benchmark: the reference setup of the HF examples against this project's defaults, in one process.

Everything is measured in the same run, on real MNLI batches, so the ratios compare like with like:
- the matmul ceiling of this machine in fp32 and in the low precision the project would use here (GFLOP/s);
  a precision the hardware only emulates is not timed (bf16 on an AVX2-only CPU: ~50x slower than fp32);
- training samples/s, real tokens/s, MFU (model FLOPs per second over the measured ceiling of the precision in
  use, counting only real tokens: padding is waste) and peak RSS, with the real Trainer, for each setup;
- evaluation samples/s;
- tokenization time the first time and from the datasets cache.

Setups:
- reference: pad every pair to 128, fp32, random batches, eval batch 8 (run_glue.py's defaults);
- project:   dynamic padding, `precision: auto` (bf16 autocast where native, else fp32 on CPU / fp16 on GPU),
             length-grouped batches, length-sorted eval in batches of 128.
Both use the Trainer's default optimizer, fused AdamW (transformers' default since torch 2.8), and the project's
Trainer (which evaluates in dataset order: the project's sorted eval sets stay sorted).

With `--levers`, the project setup is also measured with one lever changed at a time (one removed, or one
candidate added: torch.compile, AdamW without the fused kernel, dataloader workers with pinned memory, one thread,
eager attention, bf16 evaluation without autocast; and, for our scratch models, bf16 training's kernels as they
were before 2026-12-03), so that what wins stays in the defaults and what loses is on record.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import gc
import os
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import psutil
import torch
import torch.nn.functional as F

from pipelines import model_loading, precision, training
from pipelines.arguments import ModelArguments
from pipelines.tasks import mnli


@dataclass
class Setup:
    name: str
    pad_to_max_length: bool
    precision: str  # fp32, bf16, or auto (what `precision: auto` picks on this machine; pipelines/precision.py)
    train_sampling_strategy: str
    sort_eval_by_length: bool
    eval_batch_size: int
    optim: str = "adamw_torch_fused"  # TrainingArguments' default with torch >= 2.8, so also run_glue.py's
    adamw_foreach: bool = False  # torch's AdamW takes the per-tensor loop on CPU unless foreach is asked for
    torch_compile: bool = False
    dataloader_num_workers: int = 0
    dataloader_pin_memory: bool = False
    threads: int | None = None  # None: torch's default (one per core)
    attn_implementation: str | None = None  # None: the model's default (sdpa)
    bf16_full_eval: bool = False  # the Trainer casts the model to bf16 for evaluation (no autocast casts)
    scratch_kernels_before: bool = False  # our scratch models only: bf16 training's kernels before 2026-12-03


REFERENCE = Setup(
    "reference",
    pad_to_max_length=True,
    precision="fp32",
    train_sampling_strategy="random",
    sort_eval_by_length=False,
    eval_batch_size=8,
)
PROJECT = Setup(
    "project",
    pad_to_max_length=False,
    precision="auto",
    train_sampling_strategy="group_by_length",
    sort_eval_by_length=True,
    eval_batch_size=128,
)

# One lever at a time, against PROJECT. The names say what changed.
LEVERS = [
    replace(PROJECT, name="project - length grouping", train_sampling_strategy="random"),
    replace(PROJECT, name="project - sorted eval", sort_eval_by_length=False),
    replace(PROJECT, name="project - bf16", precision="fp32"),  # skipped where auto picks fp32 (bf16 not native)
    replace(PROJECT, name="project - dynamic padding", pad_to_max_length=True),
    replace(PROJECT, name="project + torch.compile", torch_compile=True),
    replace(PROJECT, name="project - fused AdamW (per-tensor loop)", optim="adamw_torch"),
    replace(PROJECT, name="project - fused AdamW (foreach)", optim="adamw_torch", adamw_foreach=True),
    replace(PROJECT, name="project + 2 workers, pinned", dataloader_num_workers=2, dataloader_pin_memory=True),
    replace(PROJECT, name="project + 1 thread", threads=1),
    replace(PROJECT, name="project + eager attention", attn_implementation="eager"),
    replace(PROJECT, name="project + bf16 full eval", bf16_full_eval=True),
    replace(PROJECT, name="project - bf16 kernels of 2026-12-03 (scratch models)", scratch_kernels_before=True),
]


@contextlib.contextmanager
def scratch_kernels_before(enabled: bool = True):
    """Our scratch models' bf16 training as it ran before 2026-12-03, for the length of a measurement: torch's fused
    attention kernel in training too, and the masked-LM loss on logits upcast to fp32.

    Since then `sdpa_attention` trains in bf16 on a CPU with the explicit ops and `masked_lm_loss` takes the
    log-softmax of the bf16 logits (both faster there); putting the old code back lets before and after be timed
    side by side in one run.
    """
    from pipelines.models.scratch_transformer import modeling_scratch_transformer as modeling

    def fused_attention(query, key, value, keep_mask, dropout_p):
        return F.scaled_dot_product_attention(query, key, value, attn_mask=keep_mask, dropout_p=dropout_p)

    def fp32_loss(logits, targets, reduction="mean"):
        return F.cross_entropy(logits.float(), targets, reduction=reduction)

    originals = modeling.ATTENTION_FUNCTIONS["sdpa"], modeling.masked_lm_loss
    if enabled:
        modeling.ATTENTION_FUNCTIONS["sdpa"], modeling.masked_lm_loss = fused_attention, fp32_loss
    try:
        yield
    finally:
        modeling.ATTENTION_FUNCTIONS["sdpa"], modeling.masked_lm_loss = originals


def machine_precision() -> str:
    """What `precision: auto` picks on this machine (bf16, fp16 or fp32)."""
    return precision.auto_precision(precision.detect_hardware(use_cpu=not torch.cuda.is_available()))[0]


def resolve_precision(setup: Setup) -> str:
    return machine_precision() if setup.precision == "auto" else setup.precision


def not_native_lever(setup: Setup) -> str | None:
    """Why a lever is not timed: a bf16 lever where the machine only emulates bf16 (it would be timed as a 50x loss)."""
    bf16_lever = setup.name == "project - bf16" or setup.bf16_full_eval
    if not bf16_lever or machine_precision() != "fp32" or torch.cuda.is_available():
        return None
    hardware = precision.detect_hardware(use_cpu=True)
    measured = precision.slowdown(hardware, "bf16")
    return (
        f"bf16 not native here (CPU capability {hardware.cpu_capability}; a {precision.MATMUL_SIZE}² bf16 matmul "
        f"ran {measured:.0f}x slower than fp32): the project runs fp32 here, so this lever is not timed"
    )


def ceiling_matrix_size() -> int:
    """8192² on a GPU (a 2048² product is too short to fill a large GPU), 2048² on the CPU."""
    return 8192 if torch.cuda.is_available() else 2048


def matmul_ceiling(dtype: torch.dtype, size: int | None = None, repeats: int = 5) -> float:
    """Best-of-N GFLOP/s of a square matmul: the machine's practical peak for this precision."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    size = size or ceiling_matrix_size()
    a = torch.randn(size, size, dtype=dtype, device=device)
    b = torch.randn(size, size, dtype=dtype, device=device)
    torch.matmul(a, b)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        synchronize()
        start = time.perf_counter()
        torch.matmul(a, b)
        synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def training_flops_per_token(model, seq_len: float) -> float:
    """6 x non-embedding parameters (forward + backward) + attention scores and values, per real token."""
    params = model_loading.count_parameters(model)["non_embedding"]
    config = model.config
    layers = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layers")
    hidden = getattr(config, "hidden_size", None) or getattr(config, "dim")
    return 6 * params + 12 * layers * hidden * seq_len


def foreach_adamw(args) -> tuple:
    return torch.optim.AdamW, {"lr": args.learning_rate, "weight_decay": args.weight_decay, "foreach": True}


def release_freed_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc keeps them otherwise)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:  # not glibc (macOS, musl): peak RSS may include what earlier setups freed
        pass


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
                    synchronize()  # a GPU may still be running the warm-up steps
                    timer.start = time.perf_counter()

            def on_train_end(self, args, state, control, **kwargs):
                synchronize()
                timer.end = time.perf_counter()

        self.callback = Callback()
        self.start = self.end = None


def timing_arguments(output_dir: str, precision: str, batch_size: int, max_steps: int, **settings):
    """TrainingArguments of a timed run: the precision given, nothing saved, logged or reported, no progress bar,
    seed 0; `settings` add or override the rest (eval batch size, sampling, optimizer, ...)."""
    from transformers import TrainingArguments

    return TrainingArguments(
        **{
            "output_dir": output_dir,
            "use_cpu": not torch.cuda.is_available(),
            "bf16": precision == "bf16",
            "fp16": precision == "fp16",
            "report_to": [],
            "per_device_train_batch_size": batch_size,
            "max_steps": max_steps,
            "save_strategy": "no",
            "logging_strategy": "no",
            "disable_tqdm": True,
            "seed": 0,
            "average_tokens_across_devices": False,
            **settings,
        }
    )


def measure(
    model_args: ModelArguments,
    setup: Setup,
    data_dir: str,
    train_samples: int,
    eval_samples: int,
    steps: int,
    warmup_steps: int,
    batch_size: int,
    ceilings: dict,
) -> dict:
    from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding

    setup_precision = resolve_precision(setup)
    release_freed_memory()  # so that peak RSS is this setup's, not what earlier setups left behind
    torch.manual_seed(0)
    default_threads = torch.get_num_threads()
    if setup.threads:
        torch.set_num_threads(setup.threads)
    data_args = mnli.MnliDataArguments(
        data_dir=f"{data_dir}/mnli",
        max_seq_length=128,
        max_train_samples=train_samples,
        max_eval_samples=eval_samples,
        pad_to_max_length=setup.pad_to_max_length,
        sort_eval_by_length=setup.sort_eval_by_length,
    )
    with tempfile.TemporaryDirectory() as output_dir:
        args = timing_arguments(
            output_dir,
            setup_precision,
            batch_size,
            warmup_steps + steps,
            per_device_eval_batch_size=setup.eval_batch_size,
            train_sampling_strategy=setup.train_sampling_strategy,
            optim=setup.optim,
            torch_compile=setup.torch_compile,
            dataloader_num_workers=setup.dataloader_num_workers,
            dataloader_pin_memory=setup.dataloader_pin_memory,
            bf16_full_eval=setup.bf16_full_eval,
        )
        raw = mnli.load_raw_datasets(data_args)
        tokenizer = model_loading.load_tokenizer(model_args)
        model = model_loading.load_model(
            replace(model_args, attn_implementation=setup.attn_implementation),
            AutoModelForSequenceClassification,
            tokenizer,
            max_seq_length=128,
            num_labels=3,
        )
        features = mnli.preprocess(raw, tokenizer, data_args, args)
        timer = StepTimer(warmup_steps)
        trainer = training.PipelineTrainer(
            model=model,
            args=args,
            train_dataset=features["train"],
            eval_dataset=features["validation_matched"],
            processing_class=tokenizer,
            data_collator=DataCollatorWithPadding(tokenizer),
            callbacks=[timer.callback],
            optimizer_cls_and_kwargs=foreach_adamw(args) if setup.adamw_foreach else None,
        )
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        with PeakRss() as memory, scratch_kernels_before(setup.scratch_kernels_before):
            trainer.train()
        seconds = timer.end - timer.start
        samples = steps * batch_size
        mean_real_tokens = float(np.mean(features["train"]["length"]))
        tokens = samples * mean_real_tokens  # sampler-independent estimate: every sample is seen at most once here
        flops = training_flops_per_token(model, mean_real_tokens) * tokens
        ceiling = ceilings[setup_precision]
        start = time.perf_counter()
        trainer.evaluate()
        eval_seconds = time.perf_counter() - start
    torch.set_num_threads(default_threads)
    return {
        "model": model_args.model_name_or_path or f"scratch:{model_args.scratch_preset}",
        "setup": setup.name,
        "precision": setup_precision,
        "train_samples_per_second": samples / seconds,
        "train_real_tokens_per_second": tokens / seconds,
        "mfu": flops / seconds / (ceiling * 1e9),
        "peak_rss_gb": memory.peak / 1e9,
        # on a GPU, the memory that matters is the GPU's
        **({"peak_gpu_memory_gb": torch.cuda.max_memory_allocated() / 1e9} if torch.cuda.is_available() else {}),
        "eval_samples_per_second": len(features["validation_matched"]) / eval_seconds,
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def tokenization_times(model_args: ModelArguments, data_dir: str) -> dict:
    """Tokenizing the MNLI train file into an empty datasets cache, then again from that cache."""
    from transformers import TrainingArguments

    tokenizer = model_loading.load_tokenizer(model_args)
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
    """One row per measurement; ratios against the reference and against the project defaults of the same model."""
    rows = [
        "| model | setup | train samples/s | × ref | × project | real tokens/s | MFU | peak memory GB | "
        "eval samples/s | × ref | × project | precision | parameters (M) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    by_setup = {(r["model"], r["setup"]): r for r in results}

    def ratio(r, setup, key):
        base = by_setup.get((r["model"], setup))
        return f"{r[key] / base[key]:.2f}" if base else "-"

    for r in results:
        if "not_timed" in r:  # a lever this machine cannot run natively: why, instead of a misleading loss
            rows.append(f"| {r['model']} | {r['setup']} | {r['not_timed']} | | | | | | | | | | |")
            continue
        rows.append(
            f"| {r['model']} | {r['setup']} | {r['train_samples_per_second']:.1f} | "
            f"{ratio(r, 'reference', 'train_samples_per_second')} | "
            f"{ratio(r, 'project', 'train_samples_per_second')} | "
            f"{r['train_real_tokens_per_second']:.0f} | {r['mfu']:.3f} | "
            f"{r.get('peak_gpu_memory_gb', r['peak_rss_gb']):.2f} | "
            f"{r['eval_samples_per_second']:.1f} | {ratio(r, 'reference', 'eval_samples_per_second')} | "
            f"{ratio(r, 'project', 'eval_samples_per_second')} | {r.get('precision', '-')} | "
            f"{parameters_text(r)} |"
        )
    return rows


def parameters_text(result: dict) -> str:
    """Millions of parameters, so a student and its teacher can be compared with their speeds (distillation)."""
    return f"{result['parameters'] / 1e6:.2f}" if "parameters" in result else "-"


def ceilings_text(ceilings: dict) -> str:
    return ", ".join(f"{name} {gflops:.0f} GFLOP/s" for name, gflops in ceilings.items())


def machine_text() -> str:
    """Cores, threads, GPU and torch's CPU capability (AVX2, AVX512, ...): which CPU a timing was measured on."""
    return (
        f"{os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()}, CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()}, "
        f"{torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU'}"
    )


def append_to_benchmarks(
    path: Path, command: str, ceilings: dict, results: list[dict], tokenize: dict, note: str
) -> None:
    lines = [
        f"\n## {datetime.date.today().isoformat()}: reference setup vs project defaults (scripts/benchmark.py)\n",
        f"Command: `{command}`\n",
        f"Machine: {machine_text()}. {note}\n",
        f"Matmul ceiling ({ceiling_matrix_size()}³, best of 5): {ceilings_text(ceilings)} (only the precisions in use "
        "here). MFU counts real (non-pad) tokens against the ceiling of the precision in use. Peak memory: "
        + (
            "GPU memory allocated by torch (training)"
            if torch.cuda.is_available()
            else "resident set size of the process (training)"
        )
        + ".\n",
        *markdown_rows(results, ceilings),
        "",
        f"Tokenization of the MNLI train file: first time {tokenize['tokenize_first_seconds']:.2f} s, "
        f"from the datasets cache {tokenize['tokenize_cached_seconds']:.2f} s.\n",
    ]
    with path.open("a", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
