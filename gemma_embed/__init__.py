"""Gemma-Embed's library: everything the training scripts, examples and benchmarks import.

    config      typed phase configs from YAML plus command-line overrides
    loop        the one Accelerate training loop behind every phase
    losses      InfoNCE with in-batch and hard negatives, cross-process gather, GradCache
    checkpoint  atomic checkpoints and exact resume
    backbones   where a phase's starting Gemma 3 comes from (the embedded 270M, a tiny random one, any folder)
    precision   the precision a run uses, decided from the hardware
    faults      fault injection for the crash tests
    recipes     the measured recipes (correction, bulk fan-out), each defined once
    scores      what training logs as it goes: STS Spearman, the query decoder's conditioning gap
    inverter    a trained decoder loaded once with its encoder and bank: invert vectors, fan out a pair
    fanout      query fan-out: walk from a query's embedding toward a document's, decode each step
    reformulate judged reformulations in bulk (fluency, closeness, progress, repeats, the keep rule)
    bulk        the bulk fan-out run: sharded, append-only, resumable, merged (train/fan_out.py)
    text_metrics  token F1, distinct-n, self-BLEU: metrics of texts that depend on nothing of ours
    data/       readers, the bundled sample's formats, token store, batch orders, collator
    eval/       STS, retrieval, WikiQA, geometry, the invertibility probe; the evaluation command
    publish/    model card, plots, push to the Hub

The model itself is defined by the top-level modules `modeling_gemma_embed` and `configuration_gemma_embed`, which
ship with the weights as Hub custom code and import nothing from here.
"""

__version__ = "0.1.0"


def __getattr__(name):  # `from gemma_embed import Inverter` without importing torch for every `import gemma_embed`
    if name == "Inverter":
        from gemma_embed.inverter import Inverter

        return Inverter
    raise AttributeError(f"module 'gemma_embed' has no attribute {name!r}")
