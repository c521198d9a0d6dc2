"""Which precision a run computes in, chosen from what the hardware really computes natively.

`precision: auto` (the default of every recipe) picks:
- bf16 where the hardware computes it natively: a GPU that supports it, or a CPU with AVX-512 BF16 or AMX that
  torch and oneDNN are allowed to use;
- fp16 with loss scaling on a GPU without bf16 (compute capability below 8.0);
- fp32 on every other CPU. There bf16 is emulated: a bf16 matmul measured ~50x slower than fp32 on an AVX2-only
  AMD EPYC, and the CPU recipe took 4 hours instead of minutes.

An explicit choice (`precision: bf16|fp16|fp32`, or the Trainer's `bf16: true` / `fp16: true` / `bf16: false`) is
honoured; on hardware that only emulates it the run warns once, naming the CPU capability and the measured
slowdown of a small matmul.

`accelerate launch` passes its precision (`--mixed_precision X` or the launch config's `mixed_precision`) as the
environment variable ACCELERATE_MIXED_PRECISION. The rule when launcher and recipe disagree:
- the recipe's explicit choice (recipe file or command-line override) wins over the launcher, and the run says so;
- the launcher's bf16/fp16/fp8 wins over the recipe's `auto`;
- the launcher's `no` counts as "not set" (accelerate writes `no` both for `--mixed_precision no` and for a launch
  config without mixed precision, so the two cannot be told apart): `auto` decides, and the run says so. To force
  fp32, say it in the recipe: `--precision fp32`.

The choice, its reason and the CPU capability are printed at the start of the run and recorded in run_info.json
(`precision`), which also goes into the W&B config and the model card.
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import asdict, dataclass, field

import torch

from pipelines.arguments import RecipeError

CHOICES = ("auto", "bf16", "fp16", "fp32")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
# A low precision whose small matmul runs more than this many times slower than fp32 is treated as emulated.
EMULATED_SLOWDOWN = 2.0
MATMUL_SIZE = 256  # a few ms in fp32; ~40 ms per product where bf16 is emulated at ~1 GFLOP/s


@dataclass
class Hardware:
    """What the run computes on, as torch reports it (on CPU, capped by ATEN_CPU_CAPABILITY / ONEDNN_MAX_CPU_ISA)."""

    device: str  # "cpu" or the GPU's name
    cpu_capability: str  # torch.backends.cpu.get_cpu_capability(): DEFAULT, AVX2, AVX512, ...
    native_bf16: bool
    native_bf16_reason: str
    gpu_compute_capability: str | None = None
    matmul_gflops: dict[str, float] = field(default_factory=dict)  # CPU only: measured small-matmul speeds

    @property
    def is_gpu(self) -> bool:
        return self.gpu_compute_capability is not None


@dataclass
class PrecisionChoice:
    precision: str  # bf16, fp16, fp32 (or fp8, only when the launcher asks for it)
    source: str  # auto, recipe or launcher
    reason: str
    requested: str  # what the recipe asked for: auto, bf16, fp16, fp32
    launcher: str | None  # ACCELERATE_MIXED_PRECISION as accelerate launch set it (None outside accelerate launch)
    hardware: Hardware
    warning: str | None = None

    @property
    def mixed_precision(self) -> str:
        """The value accelerate and TrainingArguments.mixed_precision use."""
        return "no" if self.precision == "fp32" else self.precision

    def line(self) -> str:
        """The one line printed at the start of a run."""
        return (
            f"Precision: {self.precision} ({self.source}: {self.reason}). "
            f"CPU capability: {self.hardware.cpu_capability}."
        )

    def record(self) -> dict:
        """For run_info.json, the W&B config and the model card."""
        record = asdict(self)
        record["hardware"] = asdict(self.hardware)
        return record


@functools.cache
def matmul_gflops(precision: str, size: int = MATMUL_SIZE) -> float:
    """Best of 5 GFLOP/s of a small square matmul on one CPU thread, measured once per process (~0.1 s at most).

    One thread: with two, a product this small waits on whichever thread the OS parks (other jobs on a shared
    machine), and fp32 read anywhere from 4 to 300 GFLOP/s here; one thread read the same to a few percent."""
    dtype = DTYPES[precision]
    a = torch.randn(size, size).to(dtype)
    b = torch.randn(size, size).to(dtype)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(3):  # warm-up: oneDNN builds its kernel on the first call
            torch.matmul(a, b)
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            torch.matmul(a, b)
            best = min(best, time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    return 2 * size**3 / max(best, 1e-9) / 1e9


def slowdown(hardware: Hardware, precision: str) -> float | None:
    """How many times slower than fp32 a small matmul ran in this precision (CPU only; None where not measured)."""
    speeds = hardware.matmul_gflops
    if precision not in speeds or "fp32" not in speeds:
        return None
    return speeds["fp32"] / speeds[precision]


def detect_hardware(use_cpu: bool) -> Hardware:
    """torch's own capability queries; on CPU also a small bf16 vs fp32 matmul, the honest tie-breaker."""
    capability = torch.backends.cpu.get_cpu_capability()
    if torch.cuda.is_available() and not use_cpu:
        major, minor = torch.cuda.get_device_capability()
        # including_emulation=False: torch otherwise also says yes for GPUs that only emulate bf16
        native = torch.cuda.is_bf16_supported(including_emulation=False)
        reason = (
            f"compute capability {major}.{minor} {'has' if native else 'lacks'} native bf16 (8.0 and newer have it)"
        )
        return Hardware(
            torch.cuda.get_device_name(), capability, native, reason, gpu_compute_capability=f"{major}.{minor}"
        )

    # The CPU flags come from cpuinfo and ignore the caps; get_cpu_capability honours ATEN_CPU_CAPABILITY and
    # oneDNN's bf16 query honours ONEDNN_MAX_CPU_ISA, so a capped run is judged by what it may really use.
    avx512_bf16 = _ask(lambda: torch.cpu._is_avx512_bf16_supported())
    amx = _ask(lambda: torch.cpu._is_amx_tile_supported())
    onednn_bf16 = _ask(lambda: torch.ops.mkldnn._is_mkldnn_bf16_supported())
    flags = (
        ", ".join(name for name, has in (("AVX-512 BF16", avx512_bf16), ("AMX", amx)) if has)
        or "neither AVX-512 BF16 nor AMX"
    )
    native = capability.startswith("AVX512") and (avx512_bf16 or amx) and onednn_bf16
    if native:
        reason = f"the CPU has {flags} and torch runs {capability} kernels"
    elif not (avx512_bf16 or amx):
        reason = f"the CPU has {flags}"
    else:
        reason = f"the CPU has {flags}, but torch runs {capability} kernels" + (
            "" if onednn_bf16 else " and oneDNN's bf16 is capped off"
        )
    speeds = {"fp32": matmul_gflops("fp32"), "bf16": matmul_gflops("bf16")}
    hardware = Hardware("cpu", capability, native, reason, matmul_gflops=speeds)
    measured = slowdown(hardware, "bf16")
    if native and measured > EMULATED_SLOWDOWN:
        hardware.native_bf16 = False
        hardware.native_bf16_reason = (
            f"{reason}, but a {MATMUL_SIZE}² bf16 matmul measured {measured:.1f}x slower than "
            "fp32 here, so bf16 is not native in practice"
        )
    return hardware


def _ask(query) -> bool:
    """torch's private CPU queries (the only ones there are); a build without them (no oneDNN, not x86) says no."""
    try:
        return bool(query())
    except (AttributeError, RuntimeError):
        return False


def requested_precision(recipe: dict, precision_field: str = "auto") -> str:
    """What the recipe (file + command line) asks for: its `precision`, or the Trainer's bf16/fp16 keys.

    `bf16: false` (and no `fp16: true`) is an explicit fp32, as in the reference recipe. `precision` and a bf16/fp16
    key that say different things are an error rather than a guess."""
    if precision_field not in CHOICES:
        raise RecipeError(f"precision: '{precision_field}' is not one of {', '.join(CHOICES)}")
    from_flags = None
    if recipe.get("fp16") is True and recipe.get("bf16") is True:
        raise RecipeError("bf16: true and fp16: true are both set; choose one (or precision: auto)")
    if recipe.get("bf16") is True:
        from_flags = "bf16"
    elif recipe.get("fp16") is True:
        from_flags = "fp16"
    elif recipe.get("bf16") is False or recipe.get("fp16") is False:
        from_flags = "fp32"
    if from_flags and precision_field != "auto" and from_flags != precision_field:
        keys = ", ".join(f"{k}: {str(recipe[k]).lower()}" for k in ("bf16", "fp16") if k in recipe)
        raise RecipeError(f"precision: {precision_field} disagrees with {keys}; set only one of them")
    return precision_field if precision_field != "auto" else (from_flags or "auto")


def choose(requested: str, launcher: str | None, hardware: Hardware) -> PrecisionChoice:
    """The precision to run in, the reason, and a warning where an explicit choice is emulated or overridden."""
    launcher_asks = launcher if launcher in ("bf16", "fp16", "fp8") else None
    if requested == "auto" and launcher_asks:
        precision, source, reason = (
            launcher_asks,
            "launcher",
            f"accelerate launch asked for {launcher_asks}; the recipe says auto",
        )
    elif requested != "auto":
        precision, source, reason = requested, "recipe", "set in the recipe"
        if launcher_asks and launcher_asks != requested:
            reason += f"; it wins over accelerate launch's {launcher_asks}"
        elif launcher == "no" and requested != "fp32":
            reason += "; accelerate launch said no mixed precision, the recipe wins"
    else:
        precision, source, reason = auto_precision(hardware)
        if launcher == "no" and precision != "fp32":
            # accelerate writes 'no' also when nothing was asked for, so 'no' cannot count as asking for fp32
            reason += "; accelerate launch's mixed_precision 'no' counts as not set (--precision fp32 forces fp32)"
    choice = PrecisionChoice(precision, source, reason, requested, launcher, hardware)
    choice.warning = emulation_warning(choice)
    return choice


def auto_precision(hardware: Hardware) -> tuple[str, str, str]:
    if hardware.native_bf16:
        where = hardware.device if hardware.is_gpu else "native bf16 on this CPU"
        return "bf16", "auto", f"{where}: {hardware.native_bf16_reason}"
    if hardware.is_gpu:
        return "fp16", "auto", f"{hardware.device}: {hardware.native_bf16_reason}; fp16 with loss scaling instead"
    return "fp32", "auto", f"no native bf16 on this CPU: {hardware.native_bf16_reason}"


def emulation_warning(choice: PrecisionChoice) -> str | None:
    """Explicit low precision on hardware that only emulates it: say how much slower it measured."""
    hardware, precision = choice.hardware, choice.precision
    if choice.source == "auto" or precision in ("fp32", "fp8"):
        return None
    if hardware.is_gpu:
        if precision == "bf16" and not hardware.native_bf16:
            return (
                f"bf16 on {hardware.device} ({hardware.native_bf16_reason}) is emulated and slow; "
                "precision: auto would use fp16"
            )
        return None
    if precision not in hardware.matmul_gflops:
        hardware.matmul_gflops[precision] = matmul_gflops(precision)
    measured = slowdown(hardware, precision)
    if precision == "bf16" and hardware.native_bf16 or measured <= EMULATED_SLOWDOWN:
        return None
    return (
        f"{precision} is not native on this CPU (capability {hardware.cpu_capability}; {hardware.native_bf16_reason}): "
        f"a {MATMUL_SIZE}² {precision} matmul ran {measured:.0f}x slower than fp32 here "
        f"({hardware.matmul_gflops[precision]:.1f} vs {hardware.matmul_gflops['fp32']:.1f} GFLOP/s). "
        "precision: auto would use fp32."
    )


def apply(precision_field: str, recipe: dict, training_args) -> PrecisionChoice:
    """Choose the precision and set it on the TrainingArguments (bf16, fp16 and mixed_precision, which the Trainer
    hands to accelerate). Prints the choice, and any warning, once, on the main process."""
    requested = requested_precision(recipe, precision_field)
    launcher = os.environ.get("ACCELERATE_MIXED_PRECISION")
    choice = choose(requested, launcher, detect_hardware(bool(training_args.use_cpu)))
    if getattr(training_args, "deepspeed_plugin", None) is not None and choice.mixed_precision != (launcher or "no"):
        # TrainingArguments has already written the launcher's precision into the DeepSpeed config
        raise RecipeError(
            f"Under DeepSpeed the launch config's mixed_precision ({launcher}) is final, but the recipe asks "
            f"for {choice.precision}: make them agree (--mixed_precision or the recipe's precision)."
        )
    training_args.bf16 = choice.precision == "bf16"
    training_args.fp16 = choice.precision == "fp16"
    training_args.mixed_precision = choice.mixed_precision
    training_args.precision_choice = choice  # read by training.run_info
    if training_args.process_index == 0:
        print(choice.line(), flush=True)
        if choice.warning:
            print(f"WARNING: {choice.warning}", flush=True)
    return choice


if __name__ == "__main__":  # python -m pipelines.precision: what auto picks on this machine, and why
    print(
        choose(
            "auto", os.environ.get("ACCELERATE_MIXED_PRECISION"), detect_hardware(not torch.cuda.is_available())
        ).line()
    )
