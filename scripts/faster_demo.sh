#!/usr/bin/env bash
# FASTER on trained clip models, end to end on a CPU, on both long-video regimes; every stage is reused on a rerun
# (delete its output to redo it):
#   1. the clip models: the main job's teacher (expensive: TAM head, 8 frames at 112 px) -- `python -m
#      edgevideo.pipeline --out $MAIN` unless already there -- and a cheap model cheap enough for 1:3 at <= 0.3x the
#      teacher's MACs: the same network on 2 frames at 56 px (0.02 GMACs/clip), trained on the main job's benchmark;
#   2. the long-video benchmarks: `small` (brief event: the action on 1-2 of 8 segments) and `persistent_small`
#      (the action on 6-8 of 8 segments, shots of changing scene / view / speed); TRAIN_PER_CLASS train videos per
#      class (16 by default, CPU scale), 16 val videos per class (256);
#   3. per benchmark, `python -m training.faster`: fixed schedules x aggregators and the adaptive schedule's curves
#      (gates: confidence, change, learned) -> faster_table.md, faster.json, faster_adaptive.png;
#   4. per benchmark, the 1:3 FAST-GRU (pooled) model exported as a FASTER bundle (.pte, parity-checked);
#   5. per benchmark, every validation video streamed through it, frame by frame, in sdk (Python) and the native core;
#   6. per benchmark, the adaptive GRU with the change gate (threshold at a training fire rate of 7/16) exported as a
#      FASTER bundle with its gate, and every validation video streamed through it in sdk (Python) and the native
#      core, the expensive model's share in the stats.
# Usage: scripts/faster_demo.sh   (env: PY=<python> MAIN=runs/demo OUT=runs/faster SEED=0 PRECISION=fp32 TRAIN_PER_CLASS=16
#                                       EXPENSIVE=$MAIN/teacher/best.pt CHEAP=$OUT/cheap56/best.pt)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-$(scripts/env.sh)/bin/python}  # PY=.venv/bin/python: an existing environment as it is
MAIN=${MAIN:-runs/demo}
OUT=${OUT:-runs/faster}
SEED=${SEED:-0}
PRECISION=${PRECISION:-fp32}
TRAIN_PER_CLASS=${TRAIN_PER_CLASS:-16}
EXPENSIVE=${EXPENSIVE:-$MAIN/teacher/best.pt}
CHEAP=${CHEAP:-$OUT/cheap56/best.pt}
start=$(date +%s)
stage() { echo "[faster_demo] $1 ($(( $(date +%s) - start )) s)"; }
stage "clip models from the main job in $MAIN"
[ -f "$EXPENSIVE" ] || "$PY" -m edgevideo.pipeline --out "$MAIN" --seed "$SEED"
stage "cheap clip model: 2 frames at 56 px"
[ -f "$CHEAP" ] || "$PY" -m training.train data="$MAIN/data-small-seed$SEED" out="$(dirname "$CHEAP")" \
  arch=tam_head_mobilenet_v2 frames=2 size=56 resize=64 freeze=7 epochs=30 lr=0.003 weight_decay=0.05 \
  label_smoothing=0.1 batch_size=16 seed="$SEED"
for PRESET in small persistent_small; do
  RUN="$OUT/$PRESET"
  stage "$PRESET: long-video benchmark"
  [ -f "$RUN/data/meta.json" ] || "$PY" -m training.data.long_video --out "$RUN/data" --preset "$PRESET" \
    --seed "$SEED" --train-per-class "$TRAIN_PER_CLASS"
  stage "$PRESET: schedules x aggregators, adaptive schedule"
  [ -f "$RUN/faster.json" ] || "$PY" -m training.faster --config faster_small data="$RUN/data" out="$RUN" \
    expensive="$EXPENSIVE" cheap="$CHEAP" gates=confidence,change,learned gate_fire_rate=0.4375 seed="$SEED"
  stage "$PRESET: export of the 1:3 FAST-GRU bundle"
  BUNDLE="$RUN/faster_1-3_$PRECISION.vbundle"
  [ -f "$BUNDLE/manifest.json" ] || "$PY" -m converters export --checkpoint "$RUN/models/1-3_fast_gru_pooled.pt" \
    --to pte --precision "$PRECISION" --out "$BUNDLE"
  stage "$PRESET: streaming the validation videos"
  "$PY" -m benchmarks.faster_stream --bundle "$BUNDLE" --data "$RUN/data" --json "$RUN/stream_$PRECISION.json"
  GATED_CKPT="$RUN/models/adaptive-change_gru.pt"
  if [ -f "$GATED_CKPT" ]; then
    stage "$PRESET: export of the adaptive GRU bundle (change gate)"
    GATED="$RUN/faster_adaptive-change_gru_$PRECISION.vbundle"
    [ -f "$GATED/manifest.json" ] || "$PY" -m converters export --checkpoint "$GATED_CKPT" --to pte \
      --precision "$PRECISION" --out "$GATED"
    stage "$PRESET: streaming the validation videos through the adaptive bundle (sdk and the native core)"
    "$PY" -m benchmarks.faster_stream --bundle "$GATED" --data "$RUN/data" \
      --json "$RUN/stream_adaptive_$PRECISION.json"
  else
    stage "$PRESET: no adaptive checkpoint ($RUN/faster.json predates them: delete it to train them)"
  fi
done
stage "done"
