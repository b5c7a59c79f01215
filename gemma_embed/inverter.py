"""A trained query decoder loaded once, with everything that inverts vectors through it: its tokenizer, its encoder
(checked against the fingerprint the decoder recorded), the queries it was trained on, and the corrector's bank of
real queries with their cached vectors.

    inverter = Inverter.from_pretrained("runs/demo/decoder")     # the encoder is the decoder's own
    inverter.invert(inverter.embed(["cheap flights to rome"]))    # corrected at the measured recipe
    inverter.fan_out("cheap flights to rome", "Budget airlines fly to Rome.", steps=6)
    inverter.candidates(points, "rerank")                         # [(text, cosine)] per point, best first

With `corrector=FOLDER` (a trained corrector, train/corrector.py), `invert` rewrites the hypotheses with it
(gemma_embed.recipes.TRAINED_CORRECTION) instead of editing words.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from gemma_embed.corrector import Correction, Corrector, CorrectorSettings
from gemma_embed.precision import Decision, autocast_of, resolve

MODES = ("greedy", "rerank", "correct")


class Inverter:
    def __init__(self, decoder, tokenizer, embed, encoder: str, training: list[str], bank: list[str] | None = None,
                 cache: str | Path | None = None, trained=None):
        self.decoder, self.tokenizer, self.embed, self.encoder = decoder, tokenizer, embed, encoder
        self.trained = trained  # a GemmaEmbedCorrector, or None
        self.training = list(training)
        self.bank = self.training if bank is None else list(bank)  # [] for none
        self.cache = Path(cache) if cache else None
        self._bank_vectors = None

    @classmethod
    def from_pretrained(cls, decoder_folder: str | Path, encoder: str | None = None, bank: Sequence[str] | None = None,
                        precision: Decision | str = "auto", cache: str | Path | None = None,
                        device: str = "cpu", corrector: str | Path | None = None) -> "Inverter":
        """Load a published decoder folder and its encoder (`encoder`: another path to the same weights, checked).
        `bank`: real queries for the corrector to start from (default: the decoder's training queries; [] for
        none); their vectors are cached in `cache` (default: where the decoder's training kept its own). `corrector`: a trained
        corrector's folder (of the same encoder, checked)."""
        from gemma_embed.backbones import load_tokenizer
        from gemma_embed.data.decoder_queries import training_queries, training_vectors
        from gemma_embed.encoder import decoders_encoder, load_embedder
        from modeling_gemma_embed_decoder import GemmaEmbedDecoder

        decoder = GemmaEmbedDecoder.from_pretrained(str(decoder_folder)).eval().to(device)
        encoder = decoders_encoder(decoder_folder, decoder, encoder)
        precision = resolve(precision, device) if isinstance(precision, str) else precision
        embed = load_embedder(encoder, precision=precision, quiet=True, device=device)
        model = load_corrector(corrector, decoder, device) if corrector else None
        trained = (Path(decoder_folder) / "train_config.yaml").is_file()  # not for a folder saved by hand
        return cls(decoder, load_tokenizer(decoder_folder), embed, encoder,
                   training_queries(decoder_folder) if trained else [], bank,
                   cache or (training_vectors(decoder_folder) if trained else None), model)

    @property
    def bank_vectors(self):
        """The bank's vectors as a float32 tensor, computed once (and cached on disk where a cache folder is known);
        None without a bank."""
        if self._bank_vectors is None and self.bank:
            import numpy as np

            from gemma_embed.encoder import cached_vectors

            self._bank_vectors = (torch.from_numpy(np.array(cached_vectors(self.encoder, self.bank, self.cache,
                                                                           embed=self.embed), dtype=np.float32))
                                  if self.cache else self.embed(self.bank))
        return self._bank_vectors

    @property
    def recipe(self) -> CorrectorSettings:
        """The measured correction recipe for what this inverter holds (with or without a trained corrector)."""
        from gemma_embed.recipes import CORRECTION, TRAINED_CORRECTION

        return TRAINED_CORRECTION if self.trained is not None else CORRECTION

    def corrector(self, settings: CorrectorSettings, progress: bool = True) -> Corrector:
        needs_bank = settings.neighbours or settings.word_edits or self.trained is None
        bank, vectors = (self.bank, self.bank_vectors) if needs_bank else ((), None)
        return Corrector(self.embed, bank, vectors, self.decoder, self.tokenizer, settings, progress, self.trained)

    def check(self, vectors: torch.Tensor, fingerprint: str | None = None) -> None:
        """Refuse vectors this inverter cannot write back: of another width, or (given `fingerprint`, the sha256 of
        the weights of the encoder that made them, gemma_embed.encoder.fingerprint) of another encoder. Vectors carry
        nothing else to check: the safe way is `inverter.embed`, this inverter's own encoder."""
        dim = self.decoder.config.embedding_dim
        if vectors.dim() != 2 or vectors.shape[-1] != dim:
            raise ValueError(f"this inverter writes queries from {dim}-dimensional vectors of {self.encoder}; got a "
                             f"tensor of shape {tuple(vectors.shape)}")
        mine = (self.decoder.config.encoder or {}).get("fingerprint")
        if fingerprint is not None and mine is not None and fingerprint != mine:
            raise ValueError(f"these vectors come from another encoder (weights sha256 {fingerprint[:12]}) than the "
                             f"one this decoder inverts ({self.encoder}, {mine[:12]})")

    def invert(self, vectors: torch.Tensor, rounds: int | None = None, settings: CorrectorSettings | None = None,
               fingerprint: str | None = None) -> list[Correction]:
        """Queries written back from `vectors` (of this inverter's encoder: `check`ed, with `fingerprint` where
        given), corrected by `settings` (default: `recipe`) for `rounds` rounds (default: the settings'; 0: the
        decoder's query alone): one Correction per vector, `.text` and `.cosine` its result."""
        from dataclasses import replace

        self.check(vectors, fingerprint)
        settings = settings or self.recipe
        settings = settings if rounds is None else replace(settings, rounds=rounds)
        return self.corrector(settings, progress=False).correct(vectors)

    def fan_out(self, query: str, document: str, steps: int = 6, mode: str = "rerank",
                settings: CorrectorSettings | None = None) -> list[tuple[str, float]]:
        """The walk from `query` toward `document`: each of `steps` points strictly between their vectors decoded
        into a query by `mode` (greedy, rerank or correct), with its cosine to its point."""
        from gemma_embed.fanout import interpolate

        seed, target = self.embed([query, document])
        return [group[0] for group in self.candidates(interpolate(seed, target, steps), mode, settings=settings)]

    def decode(self, vectors: torch.Tensor, chunk: int = 64, **kwargs) -> list[list[str]]:
        """The decoder's queries for `vectors`, `chunk` at a time, in the encoder's precision."""
        out = []
        with autocast_of(self.embed, self.decoder.device.type):
            for i in range(0, len(vectors), chunk):
                out += self.decoder.decode(vectors[i : i + chunk], self.tokenizer, **kwargs)
        return out

    def candidates(self, points: torch.Tensor, mode: str, samples: int = 8, settings: CorrectorSettings | None = None,
                   shortlist: int = 8) -> list[list[tuple[str, float]]]:
        """Per point, up to `shortlist` candidate queries with their cosine to it, closest first. greedy: the
        decoder's greedy query; rerank: it and `samples` sampled ones; correct: the closest the corrector found
        (`settings`)."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        points = F.normalize(points.float(), dim=-1)
        if mode == "correct":
            from dataclasses import replace

            settings = replace(settings or self.recipe, shortlist=shortlist)
            return [c.shortlist for c in self.corrector(settings, progress=False).correct(points)]
        groups = [[g] for [g] in self.decode(points)]
        if mode == "rerank" and samples:
            groups = [g + s for g, s in zip(groups, self.decode(points, mode="sample", num_candidates=samples))]
        groups = [list(dict.fromkeys(c for c in g if c.strip())) or g[:1] for g in groups]
        flat = [c for g in groups for c in g]
        vectors = self.embed(flat).float()
        out, at = [], 0
        for g, p in zip(groups, points):
            cos = (vectors[at : at + len(g)] @ p.to(vectors.device)).tolist()
            at += len(g)
            out.append(sorted(zip(g, cos), key=lambda x: -x[1])[:shortlist])
        return out


def load_corrector(folder: str | Path, decoder, device: str = "cpu"):
    """A trained corrector's folder, refused unless it inverts the same encoder as `decoder`."""
    from modeling_gemma_embed_decoder import GemmaEmbedCorrector

    model = GemmaEmbedCorrector.from_pretrained(str(folder)).eval().to(device)
    mine, theirs = (decoder.config.encoder or {}).get("fingerprint"), (model.config.encoder or {}).get("fingerprint")
    if mine != theirs:
        raise ValueError(f"the corrector {folder} was trained for another encoder (weights sha256 "
                         f"{str(theirs)[:12]}) than the decoder's ({str(mine)[:12]})")
    return model
