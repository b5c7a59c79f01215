"""The precision a run computes in, decided from the hardware: bf16 autocast where the hardware runs bf16 natively
(CUDA devices with bf16; CPUs with AMX-BF16 or AVX512-BF16), float32 elsewhere.

    decision = resolve("auto", "cpu")    # Decision(precision="no", reason="CPU AVX2 has no native bf16 ...")
    decision.autocast("cpu")             # the context manager to compute under

On a CPU without native bf16 (AVX2 only), bf16 autocast is emulated and several times slower than float32
(docs/embedded_default.md has the measurements). Where the CPU's report is not conclusive
(another architecture, or torch reports nothing), a one-off micro-benchmark decides, and its answer is cached for the
machine. `decide` is the pure rule; `resolve` gathers the facts. Explicit "bf16" and "no" are obeyed; "fp16" is
refused, since Gemma 3 overflows in it.

The environment variable GEMMA_EMBED_PRECISION (bf16 or no) forces what "auto" resolves to, on any machine: the test
suite and CI use it to run the precision-sensitive tests in the precision the hardware would not choose (bf16 on an
AVX2-only CPU, float32 where bf16 is native). Explicit choices are still obeyed as given.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import time
from dataclasses import asdict, dataclass

import torch

CHOICES = ("auto", "bf16", "no")
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # torch.cpu.get_capabilities() keys
FORCE_ENV = "GEMMA_EMBED_PRECISION"
FP16_REFUSED = "fp16 is refused: Gemma 3 overflows in float16; use bf16, no (float32) or auto"


@dataclass(frozen=True)
class Decision:
    precision: str  # "bf16" (bf16 autocast) or "no" (float32): accelerate's mixed_precision values
    reason: str
    device: str = "cpu"
    cpu: str = ""  # the CPU's model name, as torch reports it

    @property
    def dtype(self) -> torch.dtype:
        return torch.bfloat16 if self.precision == "bf16" else torch.float32

    @property
    def name(self) -> str:
        return "bf16 autocast" if self.precision == "bf16" else "float32"

    def autocast(self, device_type: str | None = None):
        device_type = device_type or self.device
        if self.precision != "bf16":
            return contextlib.nullcontext()
        return torch.autocast(device_type, dtype=torch.bfloat16)

    def line(self) -> str:
        return f"precision: {self.name} ({self.reason})"

    def to_dict(self) -> dict:
        return {**asdict(self), "name": self.name}


def autocast_of(embed, device_type: str = "cpu"):
    """The context to compute beside an embedder in: its precision's autocast (`embed.precision`, as
    gemma_embed.encoder.load_embedder sets it), or nothing where it has none."""
    precision = getattr(embed, "precision", None)
    return precision.autocast(device_type) if precision is not None else contextlib.nullcontext()


def decide(requested: str, device: str, cpu: dict | None = None, cuda_bf16: bool = False,
           measured_ratio: float | None = None) -> Decision | None:
    """The precision for `requested` ("auto", "bf16" or "no") on `device` ("cuda" or "cpu"), given what torch reports
    about the CPU (`torch.cpu.get_capabilities()`, or None), whether the CUDA device supports bf16, and the
    micro-benchmark's ratio (bf16 seconds / float32 seconds, or None when not measured). None: the report is not
    conclusive and the ratio is needed."""
    if requested == "fp16":
        raise ValueError(FP16_REFUSED)
    if requested not in CHOICES:
        raise ValueError(f"mixed_precision must be one of {list(CHOICES)}, got {requested!r}")
    name = (cpu or {}).get("cpu_name", "") if device == "cpu" else ""
    measured = "" if measured_ratio is None else (
        f"bf16 measured {measured_ratio:.1f}x slower" if measured_ratio >= 1 else
        f"bf16 measured {1 / measured_ratio:.1f}x faster")
    if requested != "auto":
        return Decision(requested, f"asked for {'bf16' if requested == 'bf16' else 'float32'}", device, name)
    if device == "cuda":
        return (Decision("bf16", "CUDA device with bf16", device) if cuda_bf16 else
                Decision("no", "CUDA device without bf16 (float16 is refused for Gemma 3)", device))
    flags = [f for f in NATIVE_BF16_FLAGS if (cpu or {}).get(f)]
    if flags:
        why = f"CPU has native bf16 ({', '.join(f.upper().replace('_', '-') for f in flags)})"
        return Decision("bf16", f"{why}: {measured}" if measured else why, device, name)
    if cpu and cpu.get("architecture") == "x86_64" and "avx512_bf16" in cpu:
        level = "AVX512" if cpu.get("avx512_f") else "AVX2" if cpu.get("avx2") else "x86"
        why = f"CPU {level} has no native bf16"
        return Decision("no", f"{why}: {measured}" if measured else why, device, name)
    if measured_ratio is None:
        return None
    verdict = "bf16" if measured_ratio < 0.9 else "no"
    return Decision(verdict, f"{(cpu or {}).get('architecture', 'this')} CPU, not conclusive from its report: "
                             f"{measured}", device, name)


def measure_bf16_ratio(repeats: int = 3) -> float:
    """bf16 autocast seconds / float32 seconds for a small matmul-heavy block (an MLP on 2,048 x 512 rows), best of
    `repeats` after a warm-up, on this process's torch threads."""
    torch.manual_seed(0)
    block = torch.nn.Sequential(torch.nn.Linear(512, 2048), torch.nn.GELU(), torch.nn.Linear(2048, 512))
    x = torch.randn(2048, 512)

    def best(bf16: bool) -> float:
        times = []
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            for i in range(repeats + 1):
                t0 = time.perf_counter()
                block(x)
                if i:
                    times.append(time.perf_counter() - t0)
        return min(times)

    return best(True) / best(False)


def cpu_report() -> dict | None:
    get = getattr(torch.cpu, "get_capabilities", None)
    try:
        return dict(get()) if get else None
    except Exception:  # noqa: BLE001 - a report we cannot read is an inconclusive one
        return None


def _cache_path():
    from gemma_embed.backbones import cache_dir

    return cache_dir() / "precision.json"


def _machine_key(cpu: dict | None) -> str:
    flags = sorted(k for k, v in (cpu or {}).items() if v is True)
    return json.dumps([platform.machine(), (cpu or {}).get("cpu_name", platform.processor()), flags,
                       torch.__version__, torch.get_num_threads()])


def cached_ratio(cpu: dict | None) -> float:
    """The micro-benchmark's ratio for this machine, measured once and kept in the cache folder."""
    path, key = _cache_path(), _machine_key(cpu)
    try:
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        cache = {}
    if key not in cache:
        cache[key] = round(measure_bf16_ratio(), 3)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.name}.{os.getpid()}")
            tmp.write_text(json.dumps(cache, indent=1))
            os.replace(tmp, path)
        except OSError:
            pass  # an unwritable cache only means measuring again next time
    return cache[key]


def forced() -> str | None:
    """What GEMMA_EMBED_PRECISION forces "auto" to (bf16 or no), or None when it is unset or empty."""
    value = os.environ.get(FORCE_ENV, "").strip()
    if not value:
        return None
    if value == "fp16":
        raise ValueError(f"{FORCE_ENV}=fp16: {FP16_REFUSED}")
    if value not in ("bf16", "no"):
        raise ValueError(f"{FORCE_ENV} must be bf16 or no (float32), or unset; got {value!r}")
    return value


def resolve(requested: str = "auto", device: str = "cpu") -> Decision:
    """The decision for this machine: the CPU's report (or the CUDA device's bf16 support), and the cached
    micro-benchmark where the report says nothing conclusive (and, on CPU, as information beside the reason).
    GEMMA_EMBED_PRECISION, when set, replaces what "auto" would decide."""
    if requested == "auto" and (force := forced()):
        cpu = (cpu_report() or {}).get("cpu_name", "") if device == "cpu" else ""
        name = "bf16" if force == "bf16" else "float32"
        return Decision(force, f"auto forced to {name} by {FORCE_ENV}={force}", device, cpu)
    if device == "cuda":
        return decide(requested, "cuda", cuda_bf16=torch.cuda.is_bf16_supported())
    cpu = cpu_report()
    ratio = cached_ratio(cpu) if requested == "auto" else None
    return decide(requested, "cpu", cpu, measured_ratio=ratio)


def describe_machine() -> str:
    """One line: the CPU's model, its bf16 flags, the cores, and what "auto" resolves to here (and why)."""
    cpu = cpu_report() or {}
    flags = [f.upper().replace("_", "-") for f in NATIVE_BF16_FLAGS if cpu.get(f)]
    native = f"native bf16: {', '.join(flags)}" if flags else "no native bf16 flags"
    return (f"CPU: {cpu.get('cpu_name') or platform.processor() or 'unknown'} ({platform.machine()}, {native}), "
            f"{os.cpu_count()} cores; auto -> {resolve('auto', 'cpu').line()}")


if __name__ == "__main__":
    print(describe_machine())
