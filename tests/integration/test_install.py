"""A non-editable install, as a user gets from `pip install .`: the wheel holds the library and the two model modules
(no package called `train`), installs into a fresh virtual environment, imports and runs a tiny forward from
outside the checkout, and the scripts of train/ run against it."""

import json
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow

FORWARD = """
import json, sys
import torch
import gemma_embed, modeling_gemma_embed
from gemma_embed.backbones import build_tiny_backbone
from gemma_embed.publish.card import TEMPLATE
from modeling_gemma_embed import GemmaEmbedModel
from transformers import AutoTokenizer

folder = build_tiny_backbone(sys.argv[1])  # its tokenizer reads the shipped vocabulary (package data)
model = GemmaEmbedModel.from_gemma(str(folder)).eval()
vecs = model.encode(["best running shoes", "a cat"], AutoTokenizer.from_pretrained(folder))
print(json.dumps({"library": gemma_embed.__file__, "model": modeling_gemma_embed.__file__,
                  "shape": list(vecs.shape), "norm": float(vecs.norm(dim=-1).mean()), "template": TEMPLATE.is_file()}))
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    root = tmp_path_factory.mktemp("install")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(root / "dist"), str(REPO)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-3000:]
    wheel = next((root / "dist").glob("gemma_embed-*.whl"))
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    site = Path(subprocess.check_output([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                        text=True).strip())
    # the dependencies (torch, transformers, ...) come from this environment; the project itself only from the wheel
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q",
                              str(wheel)], capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr[-3000:]
    return root, wheel, python, site


def test_the_wheel_holds_the_library_and_no_train_package(installed):
    _, wheel, _, _ = installed
    names = zipfile.ZipFile(wheel).namelist()
    assert "modeling_gemma_embed.py" in names and "configuration_gemma_embed.py" in names
    templates = {p.relative_to(REPO).as_posix() for p in (REPO / "gemma_embed/publish").glob("*.md")}
    assert len(templates) >= 3 and templates <= set(names), templates - set(names)  # every card's template
    assert "gemma_embed/data/tiny_vocab.txt" in names
    assert not [n for n in names if n.startswith(("train/", "tests/", "examples/"))]


def test_import_and_a_tiny_forward_from_another_folder(installed):
    root, _, python, site = installed
    run = subprocess.run([str(python), "-c", FORWARD, str(root / "tiny")], cwd=root, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["library"].startswith(str(site)) and out["model"].startswith(str(site))
    assert out["shape"] == [2, 256] and abs(out["norm"] - 1) < 1e-5 and out["template"]


def test_a_phase_script_runs_against_the_installed_library(installed, tiny_backbone):
    root, _, python, site = installed
    out = root / "phase1"
    args = ["--config", str(REPO / "train/configs/smoke/phase1.yaml"), "--backbone", tiny_backbone,
            "--data", str(REPO / "examples/data/text.txt"), "--output_dir", str(out), "--max_steps", "2",
            "--save_every", "0", "--eval_sts", ""]
    run = subprocess.run([str(python), str(REPO / "train/phase1.py"), *args], cwd=root, capture_output=True,
                         text=True, timeout=600, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads((out / "train_summary.json").read_text())["steps"] == 2
