"""Publish a phase's output folder to the Hugging Face Hub: the merged safetensors model, its code, tokenizer and
model card. Training state (checkpoints/, logs/) stays local. The command is train/push.py.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path

IGNORE = ["checkpoints/*", "logs/*", ".publish-tmp/*", "*.part", ".tmp-*"]


def files_to_upload(folder: str | Path) -> list[str]:
    folder = Path(folder)
    names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    return [n for n in names if not any(fnmatch.fnmatch(n, pattern) for pattern in IGNORE)]


def ensure_card(folder: Path, repo_id: str) -> None:
    """Never upload a repository without a model card: a phase folder that has none (written before phases wrote
    their own) gets one from its lineage and train_summary.json; a folder without those is refused."""
    if (folder / "README.md").is_file():
        return
    if not ((folder / "train_summary.json").is_file() and (folder / "train_config.yaml").is_file()):
        raise FileNotFoundError(f"{folder} has no model card (README.md) and no train_summary.json to write one from; "
                                "add a card before pushing")
    from gemma_embed.publish.card import write_phase_card

    print(f"wrote the model card {write_phase_card(folder, repo_id)}", flush=True)


def push_folder(folder: str | Path, repo_id: str, private: bool = False, dry_run: bool = False, api=None) -> list[str]:
    folder = Path(folder)
    if not (folder / "config.json").is_file() or not (folder / "modules.json").is_file():
        raise FileNotFoundError(f"{folder} is not a published Gemma-Embed folder (config.json and modules.json)")
    ensure_card(folder, repo_id)
    files = files_to_upload(folder)
    if dry_run:
        for name in files:
            print(name)
        return files
    from huggingface_hub import HfApi

    api = api or HfApi()
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        api.upload_folder(folder_path=str(folder), repo_id=repo_id, ignore_patterns=IGNORE,
                          commit_message="Upload Gemma-Embed")
    except Exception as e:  # noqa: BLE001 - any upload failure gets the same advice
        raise RuntimeError(
            f"upload of {folder} to {repo_id} failed ({type(e).__name__}: {e}). The local folder is unchanged; "
            f"retry with: python train/push.py {folder} {repo_id}"
        ) from e
    print(f"uploaded {len(files)} files to https://huggingface.co/{repo_id}")
    return files
