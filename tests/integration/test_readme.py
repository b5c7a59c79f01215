"""The README's code, run exactly as written, as a script or notebook runs it: no terminal to answer a prompt.
The Python blocks run against tiny published folders at the paths they name (runs/demo/model, runs/demo/decoder,
runs/demo/corrector);
the smoke decoder's block runs from a fresh working folder, its preparation line included."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow

README = (REPO / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"```(python|bash)\n(.*?)```", README, re.S)
NOT_OURS_TO_PRINT = ("Do you wish to run the custom code", "You are using a model of type")


def run(code: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(code, cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=600)


def environment(tmp_path: Path) -> dict:
    bin_dir = str(Path(sys.executable).parent)  # python and accelerate, as the README's .venv provides them
    return {"PATH": f"{bin_dir}:/usr/bin:/bin", "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1",
            "GEMMA_EMBED_CACHE": str(tmp_path / "cache"), "HOME": str(tmp_path)}


def test_the_python_blocks_run_as_written_and_print_nothing_of_ours(tmp_path, make_model, tiny_backbone, tokenizer):
    from modeling_gemma_embed_decoder import GemmaEmbedCorrector, GemmaEmbedDecoder, fingerprint

    encoder = tmp_path / "runs/demo/model"
    model = make_model(projection_dim=16)
    model.save_pretrained(encoder)
    tokenizer.save_pretrained(encoder)
    ids = {t for row in tokenizer(["cheap flights to rome", "best running shoes for flat feet"])["input_ids"] for t in row}
    decoder = GemmaEmbedDecoder.from_gemma(tiny_backbone, sorted(ids | {0, 1, 2, 3}), tokenizer=tokenizer,
                                           embedding_dim=16, prefix_length=2,
                                           encoder={"name_or_path": str(encoder), "dim": 16,
                                                    "fingerprint": fingerprint(encoder)})
    decoder.save_pretrained(tmp_path / "runs/demo/decoder")
    tokenizer.save_pretrained(tmp_path / "runs/demo/decoder")
    GemmaEmbedCorrector.from_decoder(decoder).save_pretrained(tmp_path / "runs/demo/corrector")

    blocks = [code for kind, code in BLOCKS if kind == "python"]
    assert len(blocks) >= 3 and all("runs/demo/" in code for code in blocks)
    for code in blocks:
        done = run([sys.executable, "-c", code], tmp_path, environment(tmp_path))
        assert done.returncode == 0, f"{code}\n{done.stderr[-3000:]}"
        printed = done.stdout + done.stderr
        assert not [line for line in NOT_OURS_TO_PRINT if line in printed], f"{code}\n{printed[-3000:]}"


def test_the_smoke_decoder_block_runs_as_written(tmp_path):
    block = next(code for kind, code in BLOCKS if kind == "bash" and "configs/smoke/decoder.yaml" in code)
    for name in ("examples", "train"):
        os.symlink(REPO / name, tmp_path / name)
    for line in filter(None, (line.split("#")[0].strip() for line in block.splitlines())):
        done = run(["bash", "-c", line], tmp_path, environment(tmp_path))
        assert done.returncode == 0, f"{line}\n{done.stderr[-3000:]}"
    assert (tmp_path / "runs/smoke/decoder/model.safetensors").is_file()
    assert (tmp_path / "runs/smoke/heldout.tsv").read_text().count("\n") > 1
