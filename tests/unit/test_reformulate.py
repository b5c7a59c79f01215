import json

import pytest
import torch

from gemma_embed.data.readers import DataError
from gemma_embed.recipes import FanOutRecipe
from gemma_embed.reformulate import Fluency, Pair, annotate_path, batches, pick, read_pairs, summarise
from gemma_embed.text_metrics import distinct_n, self_bleu


def test_pairs_are_read_from_jsonl_tsv_and_the_bundle_and_bad_lines_are_named(tmp_path):
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text(json.dumps({"id": 7, "query": " cheap  flights ", "document": "fares"}) + "\n\n")
    assert read_pairs(jsonl) == ([Pair("7", "cheap flights", "fares")], 0)
    tsv = tmp_path / "p.tsv"
    tsv.write_text("ID\tquery\tdocument\na\tq\td\n")
    assert read_pairs(tsv)[0] == [Pair("a", "q", "d")]
    assert len(read_pairs("bundled")[0]) == 12
    cases = {
        '{"id": 1, "query": "q"}': "line 1: missing field 'document'",
        '[1, 2]': "line 1: not a JSON object",
        '{"id": 1, "query": "q", "document": " "}': "line 1: field 'document' is empty",
        '{"id": 1, "query": "q", "document": "d"}\n{"id": "1", "query": "r", "document": "e"}': "line 2: id '1' repeats",
        '{"id": 1,': "line 1: not a JSON object",
    }
    for text, message in cases.items():
        jsonl.write_text(text + "\n")
        with pytest.raises(DataError, match=f"{jsonl}, {message}"):
            read_pairs(jsonl)
    jsonl.write_text('{"id": 1, "query": "q"}\n')
    with pytest.raises(DataError, match="no pairs \\(1 bad lines skipped\\)"):
        read_pairs(jsonl, skip_bad=True)
    with pytest.raises(DataError, match="pairs file not found"):
        read_pairs(tmp_path / "missing.jsonl")


def test_batches_depend_on_the_input_order_and_size_alone():
    pairs = [Pair(str(i), "q", "d") for i in range(10)]
    assert [[p.id for p in b] for b in batches(pairs, 4)] == [["0", "1", "2", "3"], ["4", "5", "6", "7"], ["8", "9"]]


def test_the_pick_weighs_the_cosine_against_fluency():
    group = [{"text": "salad word", "cos_point": 0.95, "nll": 9.0}, {"text": "a query", "cos_point": 0.93, "nll": 5.0},
             {"text": "", "cos_point": 0.99, "nll": None}]
    assert pick(group, 0)["text"] == ""
    assert pick(group, 0.001)["text"] == "salad word"  # 0.95 - 0.009 > 0.93 - 0.005
    assert pick(group, 0.01)["text"] == "a query"  # with a weight, the empty text is never the pick
    assert pick(group[2:], 0.01)["text"] == ""  # unless there is nothing else
    # the weight: the mode's measured one unless given
    from gemma_embed.recipes import FLUENCY_WEIGHTS

    assert FanOutRecipe(mode="correct").weight() == FLUENCY_WEIGHTS["correct"] > 0 == FanOutRecipe(mode="rerank").weight()
    assert FanOutRecipe(mode="correct", fluency_weight=0.0).weight() == 0.0


def test_a_step_repeating_the_seed_or_an_earlier_step_is_a_duplicate():
    steps = [{"text": "Cheap  flights"}, {"text": "flights to rome"}, {"text": "flights to Rome"}, {"text": "new"}]
    annotate_path(steps, "cheap flights", training={"new"})
    assert [s["duplicate"] for s in steps] == [True, False, True, False]
    assert [s["in_training"] for s in steps] == [False, False, False, True]


def _record(pid, step, text, cos_point, cos_doc, rank, nll, duplicate=False, seed_nll=5.0, seed_rank=3):
    return {"id": pid, "step": step, "text": text, "cos_point": cos_point, "cos_seed": 0.5, "cos_document": cos_doc,
            "rank": rank, "nll": nll, "duplicate": duplicate, "in_training": False, "seed_cos_document": 0.5,
            "seed_rank": seed_rank, "seed_nll": seed_nll}


def test_the_keep_rule_and_the_summary_count_what_they_say():
    recipe = FanOutRecipe(nll_quantile=1.0, min_cosine=0.8, top_k=2)
    records = [_record("a", 1, "x y", 0.9, 0.6, 2, 4.0), _record("a", 2, "x y", 0.9, 0.7, 1, 4.0, duplicate=True),
               _record("b", 1, "z w", 0.7, 0.4, 3, 6.0, seed_nll=4.0), _record("b", 2, "v u", 0.85, 0.6, 1, 4.5, seed_nll=4.0)]
    s = summarise(records, recipe)
    assert s["nll_limit"] == 5.0  # the largest seed NLL: quantile 1
    assert [r["kept"] for r in records] == [True, False, False, True]
    assert s["dropped"] == {"duplicate": 1, "far from its point": 1, "document not in the top 2": 1, "not fluent": 1}
    assert s["kept"] == 2 and s["kept_share"][0] == pytest.approx(0.5)
    assert s["distinct"][0] == pytest.approx(0.75)  # pairs a: 1/2, b: 2/2
    assert s["closer"][0] == pytest.approx(0.75)  # a: its one distinct step is closer (0.6 > 0.5); b: one of two
    assert s["rank_by_step"] == [2.5, 1.0] and s["rank_improved"][0] == pytest.approx(1.0)
    assert s["cos_point"][0] == pytest.approx((0.9 + 0.775) / 2)


def test_diversity_metrics():
    assert distinct_n(["a b c", "a b d"], 2) == pytest.approx(3 / 4)
    assert distinct_n(["a"], 2) == 0.0
    assert self_bleu(["cheap flights to rome", "cheap flights to rome"]) == pytest.approx(100.0)
    assert self_bleu(["cheap flights to rome", "how tall is everest"]) < 20 and self_bleu(["one"]) is None


def test_fluency_is_the_mean_nll_per_token_and_padding_does_not_change_it(tiny_backbone):
    lm = Fluency(tiny_backbone)
    alone = lm.nll(["cheap flights to rome"])
    together = lm.nll(["cheap flights to rome", "how tall is the highest mountain in the world", ""])
    assert together[0] == pytest.approx(alone[0], abs=1e-4) and together[2] is None
    # by hand: -log p of each token after <bos>, averaged
    ids = lm.tokenizer(["cheap flights to rome"], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logp = lm.model(input_ids=ids).logits.float().log_softmax(-1)[0, :-1].gather(-1, ids[0, 1:, None])
    assert alone[0] == pytest.approx(float(-logp.mean()), abs=1e-4)
