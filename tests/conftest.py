"""Shared fixtures: a tiny random Gemma 3 (2 layers, one sliding and one full attention, head_dim set) and its
word-level tokenizer, built once per session from the bundled sample text."""

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
SHARED_DATA = REPO.parent / "shared" / "data"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory) -> str:
    from train.backbones import build_tiny_backbone

    return str(build_tiny_backbone(tmp_path_factory.mktemp("tiny") / "backbone"))


@pytest.fixture(scope="session")
def tokenizer(tiny_backbone):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_backbone)


@pytest.fixture
def make_model(tiny_backbone):
    """Build a GemmaEmbedModel on the tiny backbone with config overrides, in fp32 eval mode."""
    import torch

    from modeling_gemma_embed import GemmaEmbedModel

    def make(seed: int = 0, **config):
        torch.manual_seed(seed)
        return GemmaEmbedModel.from_gemma(tiny_backbone, **config).eval()

    return make


def shared_data(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent: the shared real-data folder is not beside this checkout")
    return path
