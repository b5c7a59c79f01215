"""Rebuild the bundled sample data from the project's copy of the public sources (maintainers only).

    python examples/data/build_bundle.py --shared ../shared/data
    python examples/data/build_bundle.py --full --out runs/long/data   # every copyable row: the long recipe's data

Takes only the sources marked copyable in ../shared/data/README.md; see SOURCES.md beside this file. --full keeps
every Wikipedia sentence (76k), every WikiSplit pair (15,000) and pairs each COCO caption with the next one of its
image (25,000) instead of the bundle's samples.
"""

import argparse
import csv
import json
import random
import re
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent


def detok(text: str) -> str:
    """Undo the PTB tokenisation of WikiSplit (" , " -> ", ", "( x )" -> "(x)", quotes)."""
    text = text.replace(" '' ", ' " ').replace("`` ", '"').replace(" ''", '"')
    text = re.sub(r" ([.,;:!?%)\]'])", r"\1", text)
    text = re.sub(r"([(\[$]) ", r"\1", text)
    return re.sub(r"\s+", " ", text).strip()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=str(HERE.parents[1] / ".." / "shared" / "data"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(HERE), help="where to write the files (this folder by default)")
    ap.add_argument("--full", action="store_true", help="every copyable row, not the bundle's samples")
    args = ap.parse_args(argv)
    src, out = Path(args.shared), Path(args.out)
    if not (src / "README.md").is_file():
        raise SystemExit(f"error: {src}: the shared data folder is not here (its README.md is missing); without it, "
                         "train/demo.py trains on the bundled sample in examples/data")
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)

    # phase 1: Wikipedia sentences
    lines = [l.strip() for l in (src / "wiki_sentences/wiki_sentences_combined.txt").open(encoding="utf-8")]
    lines = [l for l in lines if 20 <= len(l) <= 300]
    rng.shuffle(lines)
    lines = lines if args.full else lines[:20000]
    (out / "text.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")

    # phase 2: SNLI triplets, WikiSplit pairs, COCO caption pairs, all as anchor,positive,negative text
    rows = []
    with (src / "snli_senteval_devtest/snli_devtest_triplets.csv").open(encoding="utf-8") as f:
        for r in csv.DictReader(f):
            rows.append((r["sent0"], r["sent1"], r["hard_neg"], "snli"))
    for part in ("tune", "validation", "test") if args.full else ("tune", "validation"):
        for line in (src / f"wikisplit/{part}.tsv").open(encoding="utf-8"):
            complex_, split = line.rstrip("\n").split("\t")
            rows.append((detok(complex_), detok(split.replace(" <::::> ", " ")), "", "wikisplit"))
    coco = json.load((src / "coco_captions_val2017/captions_val2017.json").open(encoding="utf-8"))
    groups = defaultdict(list)
    for a in coco["annotations"]:
        groups[a["image_id"]].append(a["caption"].strip())
    for caps in groups.values():
        if args.full:  # each distinct caption with the next one of its image, around the circle
            caps = list(dict.fromkeys(caps))
            if len(caps) >= 2:
                rows.extend((caps[i], caps[(i + 1) % len(caps)], "", "coco") for i in range(len(caps) if len(caps) > 2 else 1))
        elif len(caps) >= 2:
            rows.append((caps[0], caps[1], "", "coco"))
            if len(caps) >= 4:
                rows.append((caps[2], caps[3], "", "coco"))
    rng.shuffle(rows)
    with (out / "triplets.csv").open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["anchor", "positive", "negative", "source"])
        w.writerows(rows)

    # phase 3: the NQ and WebQuestions queries only (the other query sets may not be redistributed)
    keep = []
    with (src / "web_queries_anserini/all_real_queries_dedup.tsv").open(encoding="utf-8") as f:
        next(f)
        for line in f:
            query, sources = line.rstrip("\n").split("\t")
            tags = [t for t in sources.split(",") if t.startswith(("nq-", "webquestions-"))]
            if tags:
                keep.append((query.strip(), tags[0]))
    with (out / "queries.tsv").open("w", encoding="utf-8", newline="") as f:
        f.write("query\tsource\n")
        for q, s in keep:
            f.write(f"{q}\t{s}\n")

    # evaluation: STS Benchmark dev and test
    for name in ("sts-dev.csv", "sts-test.csv"):
        (out / name).write_bytes((src / "stsbenchmark" / name).read_bytes())
    print(f"text.txt {len(lines)}, triplets.csv {len(rows)}, queries.tsv {len(keep)}")


if __name__ == "__main__":
    main()
