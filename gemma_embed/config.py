"""Typed phase configs: a YAML file from train/configs/ plus command-line overrides, validated up front.

    accelerate launch train/phase1.py --config train/configs/phase1.yaml --lr 5e-5 --max_steps 200

Every field below can be set in the YAML file or overridden as `--field value` (YAML syntax for the value, so
`--model '{lora_r: 4}'` works, and merges into the file's `model`; a field the model's config class does not take is
refused). The resolved config is written beside the output as
`train_config.yaml`; the next phase reads it from its `init_from` folder.

LoRA across phases: each phase starts from merged weights (a backbone, or the previous phase's published folder,
whose adapters were merged when it was written), attaches fresh adapters from the model config, trains them and the
head, and merges them again before writing its own published folder. So every phase boundary is a plain model.
"""

from __future__ import annotations

import argparse
import os
import re
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import yaml


class ConfigError(ValueError):
    """A config that cannot run: the message names the file and the field."""


@dataclass
class TrainConfig:
    """What every training script shares: where the model comes from and goes, the data, the optimisation, the
    hardware and the bookkeeping. The three phases (PhaseConfig) and the query decoder (DecoderConfig) add theirs."""

    # where the model comes from and where the result goes
    output_dir: str = ""  # the published folder (plus checkpoints/ and logs/ inside it)
    init_from: str = ""  # the previous phase's output folder; if empty, `backbone` is used
    backbone: str = "gemma3-270m"  # gemma3-270m | tiny | a Gemma 3 folder or Hub id (see gemma_embed/backbones.py)
    model: dict = field(default_factory=dict)  # the model's config fields, used when starting from a backbone
    # data
    data: str = ""  # the input file
    max_length: int = 64  # tokens per text, <bos> included; longer texts are truncated
    max_rows: int = 0  # use only the first N rows (0: all)
    # optimisation
    seed: int = 42
    batch_size: int = 32  # global batch
    grad_accum_steps: int = 1
    lr: float = 1e-4
    head_lr: float = 0.0  # the encoder's head or the decoder's prefix MLP (0: same as lr)
    weight_decay: float = 0.0
    warmup_steps: int = 0
    schedule: str = "linear"  # linear | constant: after warm-up the rate decays linearly to 0, or stays
    # the adapters start after N steps (then warm up again): the head (encoder) or prefix (decoder) learns alone first
    adapter_delay: int = 0
    max_steps: int = 0  # 0: run `epochs` passes over the data
    epochs: float = 1.0
    # a time limit for the steps (0: none): every 10 steps of a run (or of a resumed one), the steps are set to what
    # fits in this many seconds at the rate so far, never more than planned, and the rate schedule ends at the new
    # last step
    max_train_seconds: float = 0.0
    max_grad_norm: float = 1.0
    # auto: bf16 autocast where the hardware runs bf16 natively, float32 elsewhere (gemma_embed/precision.py);
    # bf16 | no (float32) are obeyed; fp16 is refused: Gemma 3 overflows in it
    mixed_precision: str = "auto"
    gradient_checkpointing: bool = False
    # where and how: auto (CUDA if torch sees it; several processes without CUDA are refused unless device is cpu)
    device: str = "auto"
    dist_timeout_minutes: float = 120.0  # the process group's timeout for collectives
    # bookkeeping
    log_every: int = 10
    save_every: int = 0  # checkpoint every N optimizer steps (0: only at the end of training)
    keep_checkpoints: int = 2
    eval_every: int = 0  # evaluate every N steps (0: only before and after training)
    nonfinite_loss: str = "stop"  # stop | skip: what a NaN or infinite loss does
    push_to_hub: str = ""  # a repo id: upload the published folder when training ends

    def label(self) -> str:
        """What a user calls this run: "phase 2", "decoder"."""
        return re.sub(r"(\d+)$", r" \1", type(self).__name__.removesuffix("Config")).lower()

    def validate(self, source: str = "config") -> None:
        def bad(name: str, why: str):
            raise ConfigError(f"{source}: field '{name}' {why}")

        if not self.output_dir:
            bad("output_dir", "is required")
        if not self.data:
            bad("data", "is required (the input file)")
        for name in ("max_length", "batch_size", "grad_accum_steps", "log_every", "keep_checkpoints"):
            if getattr(self, name) <= 0:
                bad(name, f"must be a positive integer, got {getattr(self, name)}")
        for name in ("max_rows", "warmup_steps", "adapter_delay", "max_steps", "save_every", "eval_every"):
            if getattr(self, name) < 0:
                bad(name, f"must be >= 0, got {getattr(self, name)}")
        for name in ("lr", "epochs", "max_grad_norm"):
            if not getattr(self, name) > 0:
                bad(name, f"must be > 0, got {getattr(self, name)}")
        for name in ("head_lr", "weight_decay", "max_train_seconds"):
            if getattr(self, name) < 0:
                bad(name, f"must be >= 0, got {getattr(self, name)}")
        if self.mixed_precision == "fp16":
            bad("mixed_precision", "is fp16, which Gemma 3 overflows in: use auto, bf16 or no")
        if self.mixed_precision not in ("auto", "bf16", "no"):
            bad("mixed_precision", f"must be auto, bf16 or no, got {self.mixed_precision!r}")
        if self.device not in ("auto", "cuda", "cpu"):
            bad("device", f"must be auto, cuda or cpu, got {self.device!r}")
        if not self.dist_timeout_minutes > 0:
            bad("dist_timeout_minutes", f"must be > 0, got {self.dist_timeout_minutes}")
        if self.schedule not in ("linear", "constant"):
            bad("schedule", f"must be linear or constant, got {self.schedule!r}")
        if self.nonfinite_loss not in ("stop", "skip"):
            bad("nonfinite_loss", f"must be stop or skip, got {self.nonfinite_loss!r}")
        if self.init_from and self.model:
            bad("model", "cannot be combined with init_from: the model config comes from the previous phase")
        if self.batch_size % max(1, int(os.environ.get("WORLD_SIZE", "1"))):
            bad("batch_size", f"({self.batch_size}) must be divisible by the number of processes")

    def check_fields(self, source: str, non_negative: tuple[str, ...], model_class) -> None:
        """A subclass's own checks: its fields that must be >= 0, and `model` as keyword arguments of
        `model_class` (the model's config class)."""
        for name in non_negative:
            if getattr(self, name) < 0:
                raise ConfigError(f"{source}: field '{name}' must be >= 0, got {getattr(self, name)}")
        if self.model:
            import inspect

            accepted = {name for cls in model_class.__mro__ if "__init__" in vars(cls) and cls.__module__.startswith(
                "configuration_gemma_embed") for name in inspect.signature(cls.__init__).parameters} - {"self", "kwargs"}
            unknown = sorted(set(self.model) - accepted)
            if unknown:  # the config class takes **kwargs, so a typo would be stored beside the field it meant
                raise ConfigError(f"{source}: field 'model' has unknown field(s) {unknown}; {model_class.__name__}'s "
                                  f"fields are: {sorted(accepted)}")
            try:
                model_class(**self.model)
            except (ValueError, TypeError) as e:
                raise ConfigError(f"{source}: field 'model' is not a valid {model_class.__name__}: {e}") from None


@dataclass
class PhaseConfig(TrainConfig):
    """The contrastive phases' settings: the loss, GradCache and the STS evaluation; `model` holds
    GemmaEmbedConfig fields."""

    grad_cache_chunk: int = 0  # >0: GradCache, encode the batch in chunks of this many rows per process
    temperature: float = 0.05
    symmetric: bool = False  # also score each positive against all anchors (the loss's reverse direction)
    # Matryoshka: "256,128,64" trains every listed prefix of the vector as an embedding (the loss's weighted mean over
    # them, `matryoshka_weights` "1,1,1" by default); empty: the whole vector only
    matryoshka_dims: str = ""
    matryoshka_weights: str = ""
    # > 0: add this times the word loss (gemma_embed/losses.py: the text's words read back from its vector by a
    # training-only word head), so that the vector keeps what a decoder needs
    word_loss_weight: float = 0.0
    eval_sts: str = ""  # an STS file (STS Benchmark layout) for Spearman during training
    eval_max_pairs: int = 0  # evaluate on N pairs spread evenly over eval_sts (0: all)

    def validate(self, source: str = "config") -> None:
        from configuration_gemma_embed import GemmaEmbedConfig

        super().validate(source)
        self.check_fields(source, ("grad_cache_chunk", "eval_max_pairs"), GemmaEmbedConfig)
        if self.word_loss_weight < 0:
            raise ConfigError(f"{source}: field 'word_loss_weight' must be >= 0, got {self.word_loss_weight}")
        if not self.temperature > 0:
            raise ConfigError(f"{source}: field 'temperature' must be > 0, got {self.temperature}")
        self.matryoshka(source)

    def matryoshka(self, source: str = "config") -> tuple[tuple[int, float], ...]:
        """The (dimension, weight) pairs of the Matryoshka loss; () without."""
        if not self.matryoshka_dims:
            if self.matryoshka_weights:
                raise ConfigError(f"{source}: field 'matryoshka_weights' is set without 'matryoshka_dims'")
            return ()
        try:
            dims = [int(d) for d in str(self.matryoshka_dims).split(",")]
            weights = [float(w) for w in str(self.matryoshka_weights).split(",")] if self.matryoshka_weights else (
                [1.0] * len(dims))
        except ValueError:
            raise ConfigError(f"{source}: fields 'matryoshka_dims' and 'matryoshka_weights' are comma-separated "
                              f"numbers, got {self.matryoshka_dims!r} and {self.matryoshka_weights!r}") from None
        if len(set(dims)) != len(dims) or min(dims) <= 0:
            raise ConfigError(f"{source}: field 'matryoshka_dims' must list distinct positive sizes, got {dims}")
        if len(weights) != len(dims) or min(weights) <= 0:
            raise ConfigError(f"{source}: field 'matryoshka_weights' needs one positive weight per dimension "
                              f"({len(dims)}), got {weights}")
        return tuple(zip(dims, weights))


@dataclass
class Phase1Config(PhaseConfig):
    """Unsupervised SimCSE on text.txt: each sentence twice, dropout the only difference."""


@dataclass
class Phase2Config(PhaseConfig):
    """Supervised contrastive on triplets.csv (text columns or the original's pre-tokenised columns)."""

    temperature: float = 0.05
    sources: str = ""  # comma-separated values of the `source` column to train on (empty: every row)
    batch_by_source: bool = False  # every batch from one value of the `source` column (harder in-batch negatives)
    batch_by_length: bool = False  # batches of rows of about one length (little padding; within a source)

    def source_names(self) -> set[str] | None:
        """The sources to train on, or None for every row."""
        return {s.strip() for s in self.sources.split(",") if s.strip()} or None


@dataclass
class Phase3Config(PhaseConfig):
    """In-domain self-contrast on search queries from queries.db (SQLite) or pretokenized_queries.pt."""

    table: str = "queries"
    column: str = "query"
    # a folder: tokenise `data` once into a compact memory-mapped token store there (reused while `data` and the
    # tokenizer are unchanged) and batch rows of one length together (data/store.py, data/batches.py), for the
    # original's 7.1M queries; empty: read every row into memory and shuffle batches without regard to length
    store: str = ""


@dataclass
class DecoderConfig(TrainConfig):
    """The query decoder (train/decoder.py): a Gemma 3 LM, `backbone`, learns to write the queries of `data`
    (queries.db or pretokenized_queries.pt, as phase 3 reads them) back from a frozen encoder's vectors; `model`
    holds GemmaEmbedDecoderConfig fields (prefix_length, noise_std, lora_*, ...)."""

    # fields measured not to help and removed (docs/decoder_recipes.md): a saved train_config.yaml may still hold
    # them at the value every run used, and is read; any other value is refused
    retired: typing.ClassVar[dict] = {"keep_last_layers": 0, "restrict_vocab": True, "batch_by_length": False}
    encoder: str = ""  # the encoder to invert: a published folder, minilm, or raw:BACKBONE
    table: str = "queries"
    column: str = "query"
    store: str = ""  # a token-store folder, as phase 3's (the vectors are cached beside the store's files)
    vectors: str = ""  # where the vectors are cached without a store (default: <output_dir>/../vector_cache)
    num_layers: int = 0  # keep only N of the LM's layers (0: all), its first ones
    heldout: str = ""  # a query file (query<TAB>source lines) scored during training; training rows in it are dropped
    eval_queries: int = 64  # held-out queries decoded greedily for the score during training (token F1)
    encode_batch_size: int = 128  # texts per batch when the vectors are computed

    def validate(self, source: str = "config") -> None:
        from configuration_gemma_embed_decoder import GemmaEmbedDecoderConfig

        super().validate(source)
        if not self.encoder:
            raise ConfigError(f"{source}: field 'encoder' is required (a published folder, minilm or raw:BACKBONE)")
        if self.encode_batch_size <= 0:
            raise ConfigError(f"{source}: field 'encode_batch_size' must be a positive integer")
        self.check_fields(source, ("num_layers", "eval_queries"), GemmaEmbedDecoderConfig)


@dataclass
class CorrectorConfig(DecoderConfig):
    """The trained corrector (train/corrector.py, vec2text's second model): a copy of the trained `decoder` that
    also reads a hypothesis (its text and vector) learns to write the query, on the decoder's own hypotheses for
    its training queries (`data`, read as the decoder read them); `model` holds GemmaEmbedCorrectorConfig fields
    (hypothesis_prefix_length, lora_*, ...)."""

    decoder: str = ""  # the trained decoder's folder: the corrector's weights and its hypotheses come from it
    samples: int = 2  # sampled hypotheses per query beside the greedy one
    hypotheses: str = ""  # where the hypotheses are kept (default: beside the vectors)

    def validate(self, source: str = "config") -> None:
        from configuration_gemma_embed_decoder import GemmaEmbedCorrectorConfig

        TrainConfig.validate(self, source)
        if not self.decoder:
            raise ConfigError(f"{source}: field 'decoder' is required (a trained decoder's folder)")
        if not self.encoder:
            raise ConfigError(f"{source}: field 'encoder' is required (the decoder's encoder)")
        if self.encode_batch_size <= 0:
            raise ConfigError(f"{source}: field 'encode_batch_size' must be a positive integer")
        self.check_fields(source, ("eval_queries", "samples"), GemmaEmbedCorrectorConfig)


def _coerce(name: str, value, annotation: str, source: str):
    """Check a value against the field's annotation (the dataclass stores annotations as strings)."""
    kinds = {"int": int, "float": float, "bool": bool, "str": str, "dict": dict}
    kind = kinds[annotation]
    if value is None and kind is str:  # `--init_from ""` or an empty YAML value: unset
        return ""
    if name == "mixed_precision" and value is False:  # YAML reads an unquoted `no` as false
        return "no"
    if kind is str and isinstance(value, (int, float)) and not isinstance(value, bool):  # `matryoshka_dims: 128`
        return str(value)
    if kind is float and not isinstance(value, bool):
        try:  # YAML reads 3e-5 (no dot) as a string; 3 as an int
            return float(value) if isinstance(value, (int, str)) else value
        except ValueError:
            pass
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        hint = " (YAML reads unquoted yes/no/on/off as booleans: quote the value)" if (
            kind is str and isinstance(value, bool)) else ""
        raise ConfigError(f"{source}: field '{name}' must be {annotation}, got {value!r}{hint}")
    return value


def _override(raw: str, annotation) -> object:
    """A command-line value in YAML syntax; a text field keeps the text where YAML would read something else
    (`--mixed_precision no` is "no", not false)."""
    value = yaml.safe_load(raw)
    return raw if annotation is str and value is not None and not isinstance(value, str) else value


# GEMMA_EMBED_TRY=1: every training command (and train/evaluate.py, benchmarks/decoder_compare.py) runs as a try at
# a small size, to check a set-up, a config or a command line in minutes before the real run
TRY_ENV = "GEMMA_EMBED_TRY"
TRY_SIZE = {"max_steps": 2, "max_rows": 64, "eval_max_pairs": 50,  # 0 (all) becomes the try's size
            "batch_size": 8, "grad_cache_chunk": 4, "warmup_steps": 1, "adapter_delay": 1, "eval_queries": 8,
            "samples": 1, "max_train_seconds": 0}
TRY_EXAMPLES = 8  # held-out queries a set, in an evaluation


def trying() -> bool:
    return os.environ.get(TRY_ENV, "") not in ("", "0")


def at_try_size(values: dict, defaults: dict) -> dict:
    """`values` (a config's fields by name) with each of TRY_SIZE's fields at most its try size; a 0 that means all
    (max_steps, max_rows, eval_max_pairs) becomes it, one that means none (grad_cache_chunk, warm-up) stays."""
    out = dict(values)
    for name, small in TRY_SIZE.items():
        if name in defaults:
            current = out.get(name, defaults[name])
            zero_is_all = name in ("max_steps", "max_rows", "eval_max_pairs")
            out[name] = small if (zero_is_all and not current) or name == "max_train_seconds" else min(current, small)
    return out


def load_config(cls: type[TrainConfig], argv: list[str] | None = None) -> tuple[TrainConfig, argparse.Namespace]:
    """Parse `--config FILE`, `--resume` and `--field value` overrides into a validated `cls`."""
    parser = argparse.ArgumentParser(description=cls.__doc__)
    parser.add_argument("--config", help="YAML file with the phase's settings")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint in output_dir")
    known = {f.name: f for f in fields(cls)}
    for name in known:
        parser.add_argument(f"--{name}", dest=f"override_{name}", default=None, metavar="VALUE")
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        raise ConfigError(f"command line: unknown option(s) {unknown}; fields are: {sorted(known)}")

    values: dict = {}
    source = args.config or "command line"
    if args.config:
        path = Path(args.config)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from e
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping of field: value, got {type(loaded).__name__}")
        phase = loaded.pop("phase", cls.__name__)  # present in a saved train_config.yaml
        if phase != cls.__name__:
            raise ConfigError(f"{path}: written for {phase}, but this script runs {cls.__name__}")
        values.update(loaded)
        for name, kept in getattr(cls, "retired", {}).items():
            if name in values and values.pop(name) != kept:
                raise ConfigError(f"{path}: field {name!r} was removed (measured not to help; docs/decoder_recipes.md)"
                                  "; delete it")
    hints = typing.get_type_hints(cls)
    overrides = {name: getattr(args, f"override_{name}") for name in known}
    overrides = {name: _override(raw, hints[name]) for name, raw in overrides.items() if raw is not None}
    if overrides:
        for name, value in overrides.items():  # a mapping (`--model '{lora_r: 4}'`) merges into the file's
            values[name] = {**values[name], **value} if isinstance(value, dict) and isinstance(
                values.get(name), dict) else value
        source = f"{source} (with command-line overrides)"
    unknown_keys = sorted(set(values) - set(known))
    if unknown_keys:
        raise ConfigError(f"{source}: unknown field(s) {unknown_keys}; fields are: {sorted(known)}")
    if trying():
        values = at_try_size(values, {f.name: f.default for f in fields(cls)})
        print(f"{TRY_ENV} is set: a try at a small size ({', '.join(f'{k} {values[k]}' for k in TRY_SIZE if k in values)}"
              ")", flush=True)
    kwargs = {}
    for name, value in values.items():
        annotation = hints[name].__name__ if isinstance(hints[name], type) else str(hints[name])
        kwargs[name] = _coerce(name, value, annotation, source)
    config = cls(**kwargs)
    config.validate(source)
    return config, args


def save_config(config: TrainConfig, path: str | Path) -> None:
    data = {"phase": type(config).__name__, **asdict(config)}
    Path(path).write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def read_previous_config(folder: str | Path) -> dict:
    path = Path(folder) / "train_config.yaml"
    return yaml.safe_load(path.read_text(encoding="utf-8")) if path.exists() else {}

