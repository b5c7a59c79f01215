"""The runs' records that every generated figure is read from, copied from runs/ (ignored by git, one machine's) into
docs/records/ (committed), so that `python benchmarks/report.py` regenerates the README's figures, docs/results.md,
docs/inversion.md and docs/reformulations.md from a clean clone, and a test can check them.

    python benchmarks/report.py --collect runs    # copy the records runs/ holds, then write every page

A record keeps its path under runs/, loses the absolute paths of the machine that wrote it, and keeps the date it
was written in docs/records/dates.json (git does not keep file times). Records of runs no longer on this machine stay.
"""

from __future__ import annotations

import datetime
import json
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RECORDS = REPO / "docs/records"
# train/demo.py's runs compared side by side (their metrics.json): folder under runs/ -> what it is
DEMO_RUNS = {
    "demo_w0": "the embedded default without the two terms (no matryoshka_dims, word_loss_weight 0)",
    "demo": "the embedded default (`bash scripts/demo.sh`)",
    "long": "the long CPU recipe (`python train/demo.py --configs train/configs/long --out runs/long`)",
}


def date_of(path: Path) -> str:
    """The day `path` was written: from the dates.json of the records folder holding it, else its file time."""
    for parent in path.parents:
        index = parent / "dates.json"
        if index.is_file():
            date = json.loads(index.read_text()).get(path.relative_to(parent).as_posix())
            if date:
                return date
            break
    return datetime.datetime.fromtimestamp(path.stat().st_mtime, datetime.timezone.utc).strftime("%Y-%m-%d")


def decoder_folder(root: Path, recorded: str) -> Path:
    """A decoder folder a compare.json names (`runs/x/decoder-model`, relative to the checkout or absolute), under
    `root` (runs/ or the records)."""
    parts = Path(recorded).parts
    return root.joinpath(*parts[parts.index("runs") + 1:]) if "runs" in parts else root / recorded


def record_files(runs: Path) -> list[Path]:
    """Every file under `runs` that report.py reads."""
    files = [runs / name / "metrics.json" for name in DEMO_RUNS]
    for compare in runs.rglob("compare.json"):
        files.append(compare)
        for report in json.loads(compare.read_text()).values():
            folder = decoder_folder(runs, report.get("decoder", ""))
            files += [folder / "train_config.yaml", folder / "train_summary.json"]
    files += [p for p in runs.rglob("results.json") if "word_weight" in p.parent.name]
    for summary in runs.rglob("summary.json"):
        if "rank_by_step" in summary.read_text():  # a bulk fan-out run's, not a training summary
            run = summary.parent if (summary.parent / "run.json").is_file() else summary.parent.parent
            files += [summary, run / "run.json"]
    files += [p for p in (runs / "inversion").rglob("*.json") if not p.name.endswith(".tmp.json")]
    return sorted({f for f in files if f.is_file()})


def collect(runs: Path, records: Path = RECORDS) -> list[Path]:
    """Copy the records of `runs` into `records`, absolute paths cut; returns what was copied."""
    import yaml

    from gemma_embed.publish.push import without_local_paths

    index = records / "dates.json"
    dates = json.loads(index.read_text()) if index.is_file() else {}
    copied = []
    for source in record_files(runs):
        name = source.relative_to(runs).as_posix()
        target = records / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.suffix == ".json":
            target.write_text(json.dumps(without_local_paths(json.loads(source.read_text())), indent=1) + "\n")
        elif source.suffix == ".yaml":
            target.write_text(yaml.safe_dump(without_local_paths(yaml.safe_load(source.read_text())), sort_keys=False))
        else:
            shutil.copyfile(source, target)
        dates[name] = date_of(source)
        copied.append(target)
    records.mkdir(parents=True, exist_ok=True)
    index.write_text(json.dumps(dict(sorted(dates.items())), indent=1) + "\n")
    return copied
