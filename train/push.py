"""Publish a published folder to the Hugging Face Hub: an encoder (a phase's output) or a query decoder, with its
merged safetensors weights, code, tokenizer and model card. Training state (checkpoints/, logs/) stays local.

    python train/push.py runs/demo/model org/gemma-embed [--dry_run] [--private]
    python train/push.py runs/demo/decoder org/gemma-embed-query-decoder
    python train/push.py runs/demo/corrector org/gemma-embed-corrector
"""

import argparse
import sys

from gemma_embed.publish.push import push_folder


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder")
    ap.add_argument("repo_id")
    ap.add_argument("--private", action="store_true")
    ap.add_argument("--dry_run", action="store_true", help="list the files that would be uploaded, upload nothing")
    args = ap.parse_args(argv)
    try:
        push_folder(args.folder, args.repo_id, args.private, args.dry_run)
    except (RuntimeError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
