"""benchmarks/gpu_check.py in its reduced mode (CPU, tiny model, no MFU), as CI runs it: every check runs and the
last line carries the figures."""

import re
import subprocess
import sys

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow


def test_gpu_check_reduced_mode_on_cpu(tmp_path):
    run = subprocess.run([sys.executable, str(REPO / "benchmarks/gpu_check.py"), "--reduced", "--steps", "2"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=900,
                         env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "GEMMA_EMBED_CACHE": str(tmp_path)})
    assert run.returncode == 0, run.stderr[-3000:]
    last = run.stdout.strip().splitlines()[-1]
    fields = dict(part.split("=", 1) for part in last.split())
    assert list(fields) == ["device", "precision", "gradcache_max_diff", "resume", "tokens_per_s", "mfu",
                            "decoder_queries_per_s", "corrector_pairs_per_s", "fanout_greedy_per_s",
                            "fanout_correct_per_s"]
    assert float(fields["decoder_queries_per_s"]) > 0 and float(fields["corrector_pairs_per_s"]) > 0
    assert float(fields["fanout_greedy_per_s"]) > float(fields["fanout_correct_per_s"]) > 0
    assert fields["device"].startswith("cpu:") and fields["precision"] in ("bf16", "no") and fields["mfu"] == "n/a"
    assert float(fields["gradcache_max_diff"]) < (1e-2 if fields["precision"] == "bf16" else 1e-4)
    assert fields["resume"] == "bit-identical"
    assert re.fullmatch(r"8:\d+,16:\d+", fields["tokens_per_s"])
    cosine = float(re.search(r"smallest cosine ([\d.]+)", run.stdout).group(1))
    assert cosine > 0.999
