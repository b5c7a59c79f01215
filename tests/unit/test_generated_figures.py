"""One run, one set of numbers: the README's figures, docs/results.md, docs/inversion.md and docs/reformulations.md
are what `python benchmarks/report.py` generates from the committed records (docs/records/), and the README states
no measured figure outside its generated blocks."""

import json
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import report  # noqa: E402

FIGURE = re.compile(r"\d+\.\d+|\d+(\.\d+)?\s?%|\b\d+\s?(minutes|min|seconds|s a query|hours)\b")


def test_the_readme_blocks_are_generated_from_the_records():
    text = (REPO / "README.md").read_text()
    blocks = report.readme_blocks(report.RECORDS)
    assert set(blocks) == set(m.group(2) for m in report.BLOCK.finditer(text))  # every block has a generator
    assert report.fill_readme(text, blocks) == text, "README.md differs from the records: python benchmarks/report.py"
    final = json.loads((report.RECORDS / "demo/metrics.json").read_text())["stages"]["final"]
    sts = final.get("stsb_test_spearman_cosine", final.get("stsb_test_spearman"))
    assert f"**{sts:.2f}**" in blocks["encoder"]  # the figure comes from the record


def test_a_changed_figure_is_caught():
    text = (REPO / "README.md").read_text()
    block = next(report.BLOCK.finditer(text))
    changed = text.replace(block.group(3), block.group(3).replace("|", "| 1.23", 1))
    assert report.fill_readme(changed, report.readme_blocks(report.RECORDS)) != changed


@pytest.mark.parametrize("page, make", [("docs/results.md", "render"), ("docs/inversion.md", "inversion_runs"),
                                        ("docs/reformulations.md", "reformulation_runs")])
def test_the_pages_are_generated_from_the_records(page, make):
    generated = getattr(report, make)(report.RECORDS).rstrip("\n") + "\n"
    assert (REPO / page).read_text() == generated, f"{page} differs from the records: python benchmarks/report.py"


def outside_blocks(text: str) -> str:
    """The README less its generated blocks, code blocks, inline code and link targets."""
    text = report.BLOCK.sub("", text)
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    text = re.sub(r"`[^`]*`", "", text)
    return re.sub(r"\]\([^)]*\)", "]", text)


def test_the_readme_states_no_figure_outside_its_generated_blocks():
    found = [m.group(0) for m in FIGURE.finditer(outside_blocks((REPO / "README.md").read_text()))]
    assert found == [], f"measured figures outside the generated blocks of README.md: {found}"
    assert FIGURE.search(outside_blocks("took 12 minutes, F1 55.6 and 3% exact"))  # the check can fail


def test_the_model_card_is_the_recorded_runs():
    metrics = json.loads((report.RECORDS / "demo/metrics.json").read_text())
    final = metrics["stages"]["final"]
    sts = final.get("stsb_test_spearman_cosine", final.get("stsb_test_spearman"))
    assert f"value: {round(sts, 2)}" in (REPO / "model_card.md").read_text()


def test_collect_copies_the_records_without_local_paths_and_keeps_their_dates(tmp_path):
    import records

    runs = tmp_path / "runs"
    (runs / "demo").mkdir(parents=True)
    (runs / "demo/metrics.json").write_text(json.dumps({"model": "/home/someone/runs/demo/model", "x": 1.5}))
    (runs / "inversion").mkdir()
    (runs / "inversion/a.json").write_text(json.dumps({"sets": {}, "command": "python train/evaluate.py"}))
    (runs / "inversion/b.tmp.json").write_text("{}")  # an evaluation still being written
    (runs / "demo/ignored.txt").write_text("not a record")
    copied = records.collect(runs, tmp_path / "records")
    assert sorted(p.relative_to(tmp_path / "records").as_posix() for p in copied) == ["demo/metrics.json",
                                                                                     "inversion/a.json"]
    assert json.loads((tmp_path / "records/demo/metrics.json").read_text()) == {"model": "model", "x": 1.5}
    dates = json.loads((tmp_path / "records/dates.json").read_text())
    assert set(dates) == {"demo/metrics.json", "inversion/a.json"}
    assert records.date_of(tmp_path / "records/demo/metrics.json") == dates["demo/metrics.json"]
    (runs / "demo/metrics.json").unlink()  # a run no longer on this machine: its record stays
    records.collect(runs, tmp_path / "records")
    assert (tmp_path / "records/demo/metrics.json").is_file()
