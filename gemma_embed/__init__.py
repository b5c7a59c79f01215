"""Gemma-Embed's library: everything the training scripts, examples and benchmarks import.

    config      typed phase configs from YAML plus command-line overrides
    loop        the one Accelerate training loop behind every phase
    losses      InfoNCE with in-batch and hard negatives, cross-process gather, GradCache
    checkpoint  atomic checkpoints and exact resume
    backbones   where a phase's starting Gemma 3 comes from (the embedded 270M, a tiny random one, any folder)
    precision   the precision a run uses, decided from the hardware
    faults      fault injection for the crash tests
    fanout      query fan-out: walk from a query's embedding toward a document's, decode each step
    data/       readers, the bundled sample's formats, token store, batch orders, collator
    eval/       STS, retrieval, WikiQA, geometry, the invertibility probe; the evaluation command
    publish/    model card, plots, push to the Hub

The model itself is defined by the top-level modules `modeling_gemma_embed` and `configuration_gemma_embed`, which
ship with the weights as Hub custom code and import nothing from here.
"""

__version__ = "0.1.0"
