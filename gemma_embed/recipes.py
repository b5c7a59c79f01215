"""The measured recipes, each defined once: what the demo, the evaluation and the bulk fan-out use by default. How
each was chosen is in docs/ (docs/corrector.md, docs/reformulations.md); this file holds no run's numbers.

    from gemma_embed.recipes import CORRECTION, FAN_OUT, TRAINED_CORRECTION
"""

from __future__ import annotations

from dataclasses import dataclass

from gemma_embed.corrector import CorrectorSettings

# inversion by correction: one hypothesis kept per query, no beam-search candidates or next-word proposals, one
# steered greedy query a round and 8 gradient-ranked edits, 10 rounds (docs/corrector.md)
CORRECTION = CorrectorSettings(rounds=10, beam=1, beams=0, proposals=0, steer=1, guided=8)

# inversion with a trained corrector (train/corrector.py): vec2text's sequence-level beam, every candidate written by
# a language model (no word edits, no bank): 4 hypotheses kept, each rewritten into 4 by beam search, 3 rounds
# (docs/trained_corrector.md)
TRAINED_CORRECTION = CorrectorSettings(rounds=3, beam=4, neighbours=0, beams=0, samples=0, proposals=0, guided=0,
                                       word_edits=0, generated=4)


@dataclass(frozen=True)
class FanOutRecipe:
    """The bulk fan-out's defaults (train/fan_out.py; docs/reformulations.md)."""

    steps: int = 6  # points strictly between the seed query and the document
    mode: str = "rerank"  # greedy | rerank | correct
    samples: int = 8  # sampled candidates beside the greedy one (rerank)
    rounds: int | None = None  # correction rounds (correct; None: the correction recipe's)
    # the final pick among a point's candidates: cosine to the point - fluency_weight x the language model's mean NLL
    # per token (0: the closest; None: the mode's measured weight, FLUENCY_WEIGHTS)
    fluency_weight: float | None = None
    # the keep rule: NLL within the real queries' quantile, cosine to the point, the document in the top k
    nll_quantile: float = 0.9
    min_cosine: float = 0.8
    top_k: int = 10
    batch_pairs: int = 16  # pairs decoded together (and flushed together)
    lm: str = "gemma3-270m"  # the language model that scores fluency (gemma_embed/backbones.py; "none": skip)

    def weight(self) -> float:
        return FLUENCY_WEIGHTS[self.mode] if self.fluency_weight is None else self.fluency_weight


# the measured weight of fluency in the final pick, by mode (docs/fan_out.md): greedy has one candidate; rerank's
# are already as fluent as real queries; the corrector's closest are not
FLUENCY_WEIGHTS = {"greedy": 0.0, "rerank": 0.0, "correct": 0.03}
FAN_OUT = FanOutRecipe()


def correction_recipe(trained: bool = False, rounds: int | None = None, overrides: str = "") -> CorrectorSettings:
    """The correction every script runs unless told otherwise: TRAINED_CORRECTION with a trained corrector, else
    CORRECTION; `rounds` (None: the recipe's) and `overrides` (`--corrector FIELD=VALUE,...`) over it; under
    GEMMA_EMBED_TRY at most 2 rounds. A ValueError names a bad field."""
    from dataclasses import replace

    from gemma_embed.config import trying

    base = TRAINED_CORRECTION if trained else CORRECTION
    settings = replace(base, rounds=base.rounds if rounds is None else rounds).update(overrides)
    return replace(settings, rounds=min(settings.rounds, 2)) if trying() else settings
