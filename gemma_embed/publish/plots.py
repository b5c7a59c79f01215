"""The run's plots, drawn from its phases' logs/metrics.jsonl: the loss of each phase, and the evaluation score
across the whole run with the phase boundaries marked."""

from __future__ import annotations

import json
from pathlib import Path

from gemma_embed.eval.metrics import label


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_run(out: Path, phases: list[Path], metric: str = "stsb_dev_spearman_cosine") -> list[Path]:
    """Write out/loss_per_phase.png and out/stsb_dev_across_run.png (the score against minutes of training, the
    phases in sequence: the trade-off between time and quality); `metric` names what the phases' `eval_sts`
    measured (its label goes on the axis)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(phases), figsize=(4 * len(phases), 3.5))
    sts_x, sts_y, offset, bounds = [], [], 0, []
    for n, (ax, folder) in enumerate(zip(axes, phases), 1):
        rows = [json.loads(l) for l in (folder / "logs/metrics.jsonl").read_text().splitlines()]
        losses = [(r["step"], r["loss"]) for r in rows if "loss" in r]
        ax.plot([s for s, _ in losses], [v for _, v in losses], "-o", ms=3)
        ax.set_title(f"phase {n} loss")
        ax.set_xlabel("step")
        ax.set_yscale("log")
        seconds = {r["step"]: r["seconds"] for r in rows if "seconds" in r}  # since the phase's first step
        for r in rows:
            if "sts_spearman" in r and not (n > 1 and r["step"] == 0):
                logged = max((s for s in seconds if s <= r["step"]), default=None)
                sts_x.append((offset + (seconds[logged] if logged else 0.0)) / 60)
                sts_y.append(r["sts_spearman"])
        offset += json.loads((folder / "train_summary.json").read_text())["train_seconds"]
        bounds.append(offset / 60)
    fig.tight_layout()
    loss_png = out / "loss_per_phase.png"
    fig.savefig(loss_png, dpi=110)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(sts_x, sts_y, "-o")
    for bound in bounds[:-1]:
        ax.axvline(bound, color="grey", ls=":")
    ax.set_xlabel("minutes of training (phases 1, 2, 3 in sequence; evaluations included)")
    ax.set_ylabel(label(metric))
    ax.set_title(f"{label(metric)} across the run")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    sts_png = out / "stsb_dev_across_run.png"
    fig.savefig(sts_png, dpi=110)
    plt.close(fig)
    return [loss_png, sts_png]
