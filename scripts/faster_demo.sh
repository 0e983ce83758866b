#!/usr/bin/env bash
# FASTER on trained clip models, end to end on a CPU; every stage is reused on a rerun (delete its output to redo it):
#   1. the clip models: the main job's teacher (expensive: TAM head, 8 frames) and its see-very-little student (cheap:
#      the same network on 2 of those frames) -- `python -m edgevideo.pipeline --out $MAIN` unless already there;
#   2. the long-video benchmark (`small`: 640 train / 256 val videos of 8 segments x 32 frames);
#   3. `python -m training.faster`: schedules x aggregators on cached clip features -> faster_table.md, faster.json;
#   4. the 1:3 FAST-GRU (pooled) model exported as a FASTER bundle (.pte, parity-checked);
#   5. every validation video streamed through it, frame by frame, in sdk (Python) and in the native core.
# Usage: scripts/faster_demo.sh   (env: MAIN=runs/demo OUT=runs/faster SEED=0 PRECISION=fp32)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=$(scripts/env.sh)
PY="$VENV/bin/python"
MAIN=${MAIN:-runs/demo}
OUT=${OUT:-runs/faster}
SEED=${SEED:-0}
PRECISION=${PRECISION:-fp32}
start=$(date +%s)
stage() { echo "[faster_demo] $1 ($(( $(date +%s) - start )) s)"; }
stage "clip models from the main job in $MAIN"
[ -f "$MAIN/student/best.pt" ] || "$PY" -m edgevideo.pipeline --out "$MAIN" --seed "$SEED"
stage "long-video benchmark"
[ -f "$OUT/long_small/meta.json" ] || "$PY" -m training.data.long_video --out "$OUT/long_small" --preset small --seed "$SEED"
stage "schedules x aggregators"
[ -f "$OUT/faster.json" ] || "$PY" -m training.faster --config faster_small data="$OUT/long_small" out="$OUT" \
  expensive="$MAIN/teacher/best.pt" cheap="$MAIN/student/best.pt" seed="$SEED"
stage "export of the 1:3 FAST-GRU bundle"
BUNDLE="$OUT/faster_1-3_$PRECISION.vbundle"
[ -f "$BUNDLE/manifest.json" ] || "$PY" -m converters export --checkpoint "$OUT/models/1-3_fast_gru_pooled.pt" \
  --to pte --precision "$PRECISION" --out "$BUNDLE"
stage "streaming the validation videos"
"$PY" -m benchmarks.faster_stream --bundle "$BUNDLE" --data "$OUT/long_small" --json "$OUT/stream_$PRECISION.json"
stage "done"
