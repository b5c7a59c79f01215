"""Shared fixtures: a tiny random Gemma 3 (2 layers, one sliding and one full attention, head_dim set) and its
word-level tokenizer, built once per session; the smoke chain of the three phases. Test helpers (launching the
scripts of train/) live in tests/helpers/."""

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "examples" / "data"
sys.path.insert(0, str(REPO / "tests" / "helpers"))  # the tests' own helpers: launch, dist_equivalence, audit_writes
sys.path.append(str(REPO / "train"))  # demo_lib/, the demo's own modules beside train/demo.py (last: no shadowing)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from launch import accelerate_launch, run_smoke_phase  # noqa: E402


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory) -> str:
    from gemma_embed.backbones import build_tiny_backbone

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


def sqlite_queries(path, rows, table="queries", column="query"):
    """A small queries.db with the given cells (None for NULL)."""
    import sqlite3

    con = sqlite3.connect(path)
    con.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, {column} TEXT)")
    con.executemany(f"INSERT INTO {table} ({column}) VALUES (?)", [(r,) for r in rows])
    con.commit()
    con.close()
    return path


@pytest.fixture(scope="session")
def chain(tmp_path_factory):
    from gemma_embed.data.query_files import make_queries_db

    root = tmp_path_factory.mktemp("smoke")
    env = {"GEMMA_EMBED_CACHE": str(root / "cache")}
    db = make_queries_db(SAMPLE / "queries.tsv", root / "queries.db")
    outs = {}
    for n in (1, 2, 3):
        outs[n] = root / f"phase{n}"
        run = run_smoke_phase(n, outs[n], env, init_from=outs.get(n - 1), data=db if n == 3 else None)
        assert run.returncode == 0, f"phase {n}\n{run.stdout[-2000:]}\n{run.stderr[-4000:]}"
    return root, env, outs


# the smoke query decoder (tiny LM, raw tiny encoder), trained once: its training tests and the fan-out's read it
@pytest.fixture(scope="session")
def queries(tmp_path_factory):
    from gemma_embed.data.query_files import make_queries_db, read_queries_tsv, split_heldout, write_queries_tsv

    root = tmp_path_factory.mktemp("decoder")
    train, heldout = split_heldout(read_queries_tsv(SAMPLE / "queries.tsv"), permille=30)
    return root, make_queries_db(train, root / "queries.db"), write_queries_tsv(heldout, root / "heldout.tsv")


def train_smoke_decoder(root, db, heldout, out, *extra, env=None):
    args = ["--config", "train/configs/smoke/decoder.yaml", "--data", str(db), "--heldout", str(heldout),
            "--output_dir", str(out), *extra]
    return accelerate_launch("train/decoder.py", *args, env={"GEMMA_EMBED_CACHE": str(root / "cache"), **(env or {})})


@pytest.fixture(scope="session")
def trained(queries):
    root, db, heldout = queries
    run = train_smoke_decoder(root, db, heldout, root / "decoder")
    assert run.returncode == 0, run.stderr[-3000:]
    return root / "decoder"


def train_smoke_corrector(root, db, heldout, decoder, out, *extra, env=None):
    args = ["--config", "train/configs/smoke/corrector.yaml", "--data", str(db), "--heldout", str(heldout),
            "--decoder", str(decoder), "--output_dir", str(out), *extra]
    return accelerate_launch("train/corrector.py", *args,
                             env={"GEMMA_EMBED_CACHE": str(root / "cache"), **(env or {})})


@pytest.fixture(scope="session")
def trained_corrector(queries, trained):
    root, db, heldout = queries
    run = train_smoke_corrector(root, db, heldout, trained, root / "corrector")
    assert run.returncode == 0, run.stderr[-3000:]
    return root / "corrector"
