"""Publish a published folder to the Hugging Face Hub: an encoder (a phase's output), a query decoder or a trained
corrector, with its merged safetensors weights, code, tokenizer and model card. Training state (checkpoints/, logs/)
stays local, and the training records (train_config.yaml, train_summary.json) go up with every absolute path cut to its last part: the
trainer's folders are nobody's business. The command is train/push.py.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import tempfile
from pathlib import Path

NOT_RECORDS = ("tokenizer.json", "tokenizer_config.json")  # every other .json and .yaml goes up without local paths


def is_record(name: str) -> bool:
    """A file whose absolute paths are cut to their last part on the way up: the configs (config.json's
    `_name_or_path`, the decoder's encoder), the training records and the evaluations, wherever they sit."""
    return name.endswith((".json", ".yaml")) and Path(name).name not in NOT_RECORDS

IGNORE = ["checkpoints/*", "logs/*", ".publish-tmp/*", "*.part", ".tmp-*"]


def files_to_upload(folder: str | Path) -> list[str]:
    folder = Path(folder)
    names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    return [n for n in names if not any(fnmatch.fnmatch(n, pattern) for pattern in IGNORE)]


def without_local_paths(value):
    """`value` (parsed JSON or YAML) with every absolute path, alone or after `=` in an argument, cut to its last
    part."""
    if isinstance(value, dict):
        return {k: without_local_paths(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_local_paths(v) for v in value]
    if isinstance(value, str):
        key, sep, rest = value.rpartition("=") if value.startswith("--") else ("", "", value)
        return key + sep + Path(rest).name if os.path.isabs(rest) else value
    return value


def staged(folder: Path, files: list[str]) -> Path:
    """A copy of what is uploaded (hard links where the file system allows), the records (`is_record`) without
    local paths."""
    import yaml

    stage = Path(tempfile.mkdtemp(prefix=".push-", dir=folder.parent))
    for name in files:
        target = stage / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if is_record(name):
            text = (folder / name).read_text(encoding="utf-8")
            data = without_local_paths(json.loads(text) if name.endswith(".json") else yaml.safe_load(text))
            target.write_text(json.dumps(data, indent=1) + "\n" if name.endswith(".json") else
                              yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
            continue
        try:
            os.link(folder / name, target)
        except OSError:
            shutil.copy2(folder / name, target)
    return stage


def folder_kind(folder: Path) -> str:
    """"encoder", "decoder" or "corrector": what a published folder holds (its config's model_type and the files it
    needs)."""
    config = folder / "config.json"
    model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type") if config.is_file() else None
    if model_type in ("gemma_embed_decoder", "gemma_embed_corrector") and (folder / "model.safetensors").is_file():
        return model_type.removeprefix("gemma_embed_")
    if model_type == "gemma_embed" and (folder / "modules.json").is_file():
        return "encoder"
    raise FileNotFoundError(f"{folder} is not a published Gemma-Embed folder: an encoder (config.json with model_type "
                            "gemma_embed, and modules.json), a query decoder or a trained corrector (config.json with "
                            "model_type gemma_embed_decoder or gemma_embed_corrector, and model.safetensors)")


def ensure_card(folder: Path, repo_id: str, kind: str) -> None:
    """Never upload a repository without a model card: a folder that has none gets one from its training record
    (train_summary.json and train_config.yaml); a folder without those is refused."""
    if (folder / "README.md").is_file():
        return
    if not ((folder / "train_summary.json").is_file() and (folder / "train_config.yaml").is_file()):
        raise FileNotFoundError(f"{folder} has no model card (README.md) and no train_summary.json to write one from; "
                                "add a card before pushing")
    from gemma_embed.publish.card import write_corrector_card, write_decoder_card, write_phase_card

    write = {"decoder": write_decoder_card, "corrector": write_corrector_card}.get(kind, write_phase_card)
    print(f"wrote the model card {write(folder, repo_id)}", flush=True)


def push_folder(folder: str | Path, repo_id: str, private: bool = False, dry_run: bool = False, api=None) -> list[str]:
    """Upload `folder` (an encoder or a query decoder) to `repo_id`; `dry_run` lists the files and uploads nothing."""
    folder = Path(folder)
    kind = folder_kind(folder)
    ensure_card(folder, repo_id, kind)
    files = files_to_upload(folder)
    if dry_run:
        for name in files:
            print(name)
        return files
    from huggingface_hub import HfApi

    api = api or HfApi()
    stage = staged(folder, files)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        api.upload_folder(folder_path=str(stage), repo_id=repo_id, ignore_patterns=IGNORE,
                          commit_message="Upload Gemma-Embed" + {"decoder": " query decoder",
                                                                 "corrector": " corrector"}.get(kind, ""))
    except Exception as e:  # noqa: BLE001 - any upload failure gets the same advice
        raise RuntimeError(
            f"upload of {folder} to {repo_id} failed ({type(e).__name__}: {e}). The local folder is unchanged; "
            f"retry with: python train/push.py {folder} {repo_id}"
        ) from e
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    print(f"uploaded {len(files)} files to https://huggingface.co/{repo_id}")
    return files
