"""The demo's section estimates scale each stage by the padded tokens its step processes, counted on its rows."""

from dataclasses import replace
from pathlib import Path

import pytest

from conftest import REPO
from demo_lib.clock import Clock, padded_tokens_per_step
from launch import load_script
from gemma_embed.config import DecoderConfig, Phase1Config, Phase2Config, Phase3Config


def test_padded_tokens_per_step():
    tokens = padded_tokens_per_step
    short_long = [[3], [10], [3], [10]]
    # sorted by length: batches (3, 3) and (10, 10), two views each
    assert tokens(short_long, 2, by_length=True, views=2) == (2 * 3 * 2 + 2 * 10 * 2) / 2
    # shuffled: a batch that mixes lengths pads to the longer one, so never less than sorted
    assert tokens(short_long, 2, by_length=False, views=2) >= 26
    assert tokens([[3], [3]], 2, by_length=False) == 6
    # every column (anchor, positive, negative) padded on its own; a row without a negative adds nothing there
    assert tokens([[4, 6, 5], [2, 3]], 2, by_length=True) == 4 * 2 + 6 * 2 + 5
    # fewer rows than a batch: one batch of all of them
    assert tokens([[7], [2]], 8, by_length=False) == 14


def test_clock_counts_each_stage_on_its_own_rows(tokenizer, tmp_path):
    """Text rows are tokenised, pre-tokenised rows are counted as they are; self-contrast encodes two views; the
    decoder adds <bos> and its prefix and runs only its first layers."""
    from conftest import sqlite_queries

    (tmp_path / "text.txt").write_text("one two three\nfour five six seven\n", encoding="utf-8")
    (tmp_path / "tok.csv").write_text("a_ids,a_mask,p_ids,p_mask\n2 5 6,1 1 1,2 7,1 1\n", encoding="utf-8")
    db = sqlite_queries(tmp_path / "q.db", ["alpha beta", "gamma"])
    common = {"max_length": 32, "batch_size": 2, "output_dir": "o"}
    configs = {1: Phase1Config(data="text.txt", **common),
               2: Phase2Config(data="tok.csv", **{**common, "batch_size": 1}),
               3: Phase3Config(data="q.db", **common),
               "decoder": DecoderConfig(data="q.db", encoder="e", model={"prefix_length": 4}, num_layers=1, **common)}
    clock = Clock(configs, root=tmp_path)
    clock.count_tokens(tokenizer, backbone_layers=2, queries_db=db)

    def n(text):
        return len(tokenizer(text)["input_ids"])

    assert clock.tokens[1] == 2 * 2 * max(n("one two three"), n("four five six seven"))
    assert clock.tokens[2] == 3 + 2  # the ids as written: anchor and positive, one row a step
    assert clock.tokens[3] == 2 * 2 * max(n("alpha beta"), n("gamma"))
    assert clock.tokens["decoder"] == 2 * (1 + 4 + max(n("alpha beta"), n("gamma"))) * 1 / 2


def test_the_float32_decoder_stage_trains_and_corrects_a_share_of_the_native_one():

    from gemma_embed.config import load_config
    from gemma_embed.precision import Decision

    demo = load_script("demo")
    cfg = load_config(DecoderConfig, ["--config", "train/configs/demo/decoder.yaml"])[0]
    native, float32 = demo.BUDGETS["bf16"], demo.BUDGETS["no"]
    assert native.apply(cfg) == cfg  # the config is the native-bf16 stage
    small = float32.apply(cfg)
    assert (small.max_steps, small.max_rows) == (round(cfg.max_steps * float32.share), round(cfg.max_rows * float32.share))
    assert 0 < float32.share < 1 and float32.heldout < native.heldout
    assert float32.apply(replace(cfg, max_rows=0)).max_rows == 0  # every row stays every row
    assert float32.apply(replace(cfg, max_steps=1)).max_steps == 1
    assert native.seconds is None and small.max_train_seconds == float32.seconds > cfg.max_train_seconds > 0
    line = float32.line(small, Decision("no", "test"))
    assert f"{small.max_steps} steps on {small.max_rows:,} training queries" in line and "float32" in line


def test_the_long_recipe_runs_on_the_bundled_sample_where_its_data_cannot_be_built(tmp_path, capsys):
    """train/configs/long reads data that build_bundle.py --full writes from ../shared/data: without that folder the
    demo trains on the bundled sample's file of the same name and says what --full adds; with it, it asks for the
    build."""
    demo = load_script("demo")
    sample = "examples/data/text.txt"
    assert demo.phase_data(Path("demo.yaml"), sample, tmp_path / "absent") == REPO / sample
    missing = str(tmp_path / "long/data/text.txt")
    assert demo.phase_data(Path("long.yaml"), missing, tmp_path / "absent") == REPO / sample
    assert "build_bundle.py --full" in capsys.readouterr().out
    (tmp_path / "shared").mkdir()
    with pytest.raises(SystemExit, match="is missing: write it with python examples/data/build_bundle.py --full"):
        demo.phase_data(Path("long.yaml"), missing, tmp_path / "shared")
