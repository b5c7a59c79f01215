"""The precision decision is a pure function of (device, what the CPU reports, the micro-benchmark's ratio); the
configs, the loop, evaluation and the benchmarks take their precision from it."""

import pytest
import torch

from gemma_embed import precision
from gemma_embed.precision import Decision, decide

AVX2 = {"architecture": "x86_64", "cpu_name": "AMD EPYC", "avx2": True, "avx512_f": False, "avx512_bf16": False,
        "amx_bf16": False}
AVX512 = {**AVX2, "cpu_name": "Intel Xeon (Skylake)", "avx512_f": True}
SAPPHIRE = {**AVX512, "cpu_name": "Intel Xeon Platinum 8480", "avx512_bf16": True, "amx_bf16": True}
COOPER = {**AVX512, "avx512_bf16": True}
ARM = {"architecture": "aarch64", "cpu_name": "Neoverse-V2"}


@pytest.mark.parametrize("cpu,ratio,expected,why", [
    (AVX2, None, "no", "CPU AVX2 has no native bf16"),
    (AVX2, 6.0, "no", "CPU AVX2 has no native bf16: bf16 measured 6.0x slower"),
    (AVX2, 0.5, "no", "AVX2 has no native bf16"),  # the report decides; a ratio is only information here
    (AVX512, None, "no", "CPU AVX512 has no native bf16"),
    (SAPPHIRE, None, "bf16", "native bf16 (AMX-BF16, AVX512-BF16)"),
    (SAPPHIRE, 0.4, "bf16", "bf16 measured 2.5x faster"),
    (COOPER, None, "bf16", "native bf16 (AVX512-BF16)"),
    (ARM, 0.5, "bf16", "not conclusive from its report: bf16 measured 2.0x faster"),
    (ARM, 3.0, "no", "bf16 measured 3.0x slower"),
    (None, 1.2, "no", "not conclusive"),
])
def test_auto_on_cpu(cpu, ratio, expected, why):
    d = decide("auto", "cpu", cpu, measured_ratio=ratio)
    assert d.precision == expected and why in d.reason


def test_inconclusive_report_needs_the_measurement():
    assert decide("auto", "cpu", ARM) is None
    assert decide("auto", "cpu", None) is None


def test_cuda_explicit_choices_and_fp16():
    assert decide("auto", "cuda", cuda_bf16=True).precision == "bf16"
    assert decide("auto", "cuda", cuda_bf16=False).precision == "no"
    assert decide("bf16", "cpu", AVX2).precision == "bf16"  # explicit choices are obeyed, even where slow
    assert decide("no", "cpu", SAPPHIRE).precision == "no"
    with pytest.raises(ValueError, match="overflows in float16"):
        decide("fp16", "cuda", cuda_bf16=True)
    with pytest.raises(ValueError, match="must be one of"):
        decide("fp32", "cpu", AVX2)


def test_decision_carries_its_dtype_autocast_and_printed_line():
    d = Decision("no", "CPU AVX2 has no native bf16: bf16 measured 6.0x slower", "cpu", "AMD EPYC")
    assert d.dtype == torch.float32 and d.line() == (
        "precision: float32 (CPU AVX2 has no native bf16: bf16 measured 6.0x slower)")
    with d.autocast():
        assert not torch.is_autocast_enabled("cpu")
    with Decision("bf16", "x").autocast("cpu"):
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16 and torch.is_autocast_enabled("cpu")
    assert d.to_dict()["name"] == "float32"


def test_resolve_measures_once_per_machine_and_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("GEMMA_EMBED_CACHE", str(tmp_path))
    monkeypatch.delenv("GEMMA_EMBED_PRECISION", raising=False)  # the hardware decides, even in a forced suite run
    monkeypatch.setattr(precision, "cpu_report", lambda: ARM)
    calls = []
    monkeypatch.setattr(precision, "measure_bf16_ratio", lambda: calls.append(1) or 0.4)
    first = precision.resolve("auto", "cpu")
    second = precision.resolve("auto", "cpu")
    assert first == second and first.precision == "bf16" and calls == [1]
    assert (tmp_path / "precision.json").is_file()
    assert precision.resolve("no", "cpu").precision == "no" and calls == [1]  # explicit: nothing measured


def test_the_micro_benchmark_returns_a_ratio():
    ratio = precision.measure_bf16_ratio(repeats=1)
    assert 0.01 < ratio < 100


@pytest.mark.parametrize("value,expected", [("bf16", "bf16"), ("no", "no"), ("", None)])
def test_the_environment_forces_what_auto_resolves_to(monkeypatch, value, expected):
    monkeypatch.setattr(precision, "cpu_report", lambda: SAPPHIRE if expected == "no" else AVX2)
    monkeypatch.setattr(precision, "cached_ratio", lambda cpu: 1.0)
    monkeypatch.setenv("GEMMA_EMBED_PRECISION", value)
    d = precision.resolve("auto", "cpu")
    if expected is None:  # unset or empty: the hardware decides (AVX2 here: float32)
        assert d.precision == "no" and "AVX2 has no native bf16" in d.reason
    else:  # forced against what the hardware would choose
        assert d.precision == expected and d.reason.endswith(f"by GEMMA_EMBED_PRECISION={value}")
        assert d.cpu == (SAPPHIRE if expected == "no" else AVX2)["cpu_name"]
    assert precision.resolve("no", "cpu").precision == "no" and precision.resolve("bf16", "cpu").precision == "bf16"


@pytest.mark.parametrize("value,message", [("fp16", "overflows in float16"), ("fp32", "must be bf16 or no")])
def test_a_bad_forced_precision_is_refused_naming_the_variable(monkeypatch, value, message):
    monkeypatch.setenv("GEMMA_EMBED_PRECISION", value)
    with pytest.raises(ValueError, match=f"GEMMA_EMBED_PRECISION.*{message}|{message}.*"):
        precision.resolve("auto", "cpu")
