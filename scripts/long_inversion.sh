#!/usr/bin/env bash
# The inversion's longer CPU run, after the demo (it reads runs/demo/model): the query decoder (2,400 steps on the
# bundled queries and, where ../shared/data is present, its web queries, less both held-out sets), then the trained
# corrector on that decoder's hypotheses, then both judged on 200 held-out queries a set. Hours on 2 cores. Every
# stage checkpoints; run the same command again after a stop and it goes on from where it was (a finished stage is
# skipped):
#   nohup bash scripts/long_inversion.sh > runs/long_inversion.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f .venv/bin/activate ] && . .venv/bin/activate
export HF_HUB_OFFLINE=1
OUT=runs/decoder_long
WEB=../shared/data/web_queries_anserini/all_real_queries_dedup.tsv
[ -f runs/demo/model/config.json ] || { echo "error: runs/demo/model is missing: run the demo first (bash scripts/demo.sh)" >&2; exit 2; }
MORE=(); HELDOUT=(--heldout $OUT/heldout_queries.tsv)
if [ -f "$WEB" ]; then
    MORE=(--more_queries "$WEB"); HELDOUT+=(--heldout "$WEB@trec-mq-2007,trec-mq-2008,trec-mq-2009")
else
    echo "note: $WEB is absent: the bundled queries alone, and no keyword-query set"
fi

echo "== decoder ($(date -u +%FT%TZ))"
python benchmarks/decoder_compare.py --encoder runs/demo/model --config train/configs/demo/decoder_long.yaml \
    "${MORE[@]}" --n 200 --out $OUT

echo "== corrector ($(date -u +%FT%TZ))"
if [ ! -f $OUT/corrector/train_summary.json ]; then
    resume=(); [ -d $OUT/corrector/checkpoints ] && resume=(--resume)
    accelerate launch --quiet train/corrector.py --config train/configs/demo/corrector_long.yaml "${resume[@]}"
fi

echo "== evaluation ($(date -u +%FT%TZ))"
mkdir -p runs/inversion/long
judge() {  # NAME ARGS...: one evaluation, skipped when its record exists
    local name=$1; shift
    [ -f runs/inversion/long/$name.json ] && return 0
    python train/evaluate.py --decoder $OUT/decoder-model "${HELDOUT[@]}" --n 200 --fluency gemma3-270m \
        --json runs/inversion/long/$name.tmp.json "$@"
    mv runs/inversion/long/$name.tmp.json runs/inversion/long/$name.json
}
judge training_free --rounds 10
judge trained_beam --corrector_model $OUT/corrector
python benchmarks/report.py --collect runs   # records into docs/records; every page and the README regenerated
echo "== done ($(date -u +%FT%TZ))"
