"""The bundled sample data is what examples/data/build_bundle.py writes from the public sources, and --full (the
long recipe's data) holds every bundled row and more. Reads ../shared/data: skipped where it is absent."""

import csv
import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data"
pytestmark = pytest.mark.skipif(not (SHARED / "coco_captions_val2017").is_dir(),
                                reason=f"the public sources ({SHARED}) are not on this machine")


def build(*argv: str) -> None:
    spec = importlib.util.spec_from_file_location("build_bundle", REPO / "examples/data/build_bundle.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(["--shared", str(SHARED), *argv])


def rows(path: Path) -> list[tuple[str, ...]]:
    with path.open(encoding="utf-8", newline="") as f:
        return [tuple(r) for r in csv.reader(f)][1:]


def test_the_bundle_is_rebuilt_byte_for_byte(tmp_path):
    build("--out", str(tmp_path))
    for name in ("text.txt", "triplets.csv", "queries.tsv", "sts-dev.csv", "sts-test.csv"):
        assert (tmp_path / name).read_bytes() == (REPO / "examples/data" / name).read_bytes(), name


def test_full_holds_every_bundled_row_and_every_caption(tmp_path):
    build("--full", "--out", str(tmp_path))
    bundled_text = set((REPO / "examples/data/text.txt").read_text(encoding="utf-8").splitlines())
    full_text = set((tmp_path / "text.txt").read_text(encoding="utf-8").splitlines())
    assert bundled_text < full_text
    bundled, full = rows(REPO / "examples/data/triplets.csv"), rows(tmp_path / "triplets.csv")
    by_source = {s: [r for r in full if r[3] == s] for s in ("snli", "wikisplit", "coco")}
    assert {r for r in bundled if r[3] == "snli"} == set(by_source["snli"])
    assert {r for r in bundled if r[3] == "wikisplit"} < set(by_source["wikisplit"])
    anchors = [r[0] for r in by_source["coco"]]
    assert len(anchors) > 24_500 and len(set(anchors)) > 24_500  # nearly every one of the 25,014 captions, once
    assert all(a != p for a, p, *_ in by_source["coco"])
