#!/usr/bin/env bash
# One arm of the self-distillation A/B: run.sh {missu|ablation} SEED [RUNS_DIR]
# Trains on ../shared/data/la2018 with recipe.yaml, then scores the 16 validation cases on the original grid.
set -euo pipefail
arm=$1 seed=$2 runs=${3:-runs/distillation}
here=$(dirname "$0")
flag=(); [[ $arm == ablation ]] && flag=(--no-distillation)
out="$runs/$arm-seed$seed"
mkdir -p "$runs"
resume=(); [[ -f $out/checkpoints/last.pt ]] && resume=(--resume)
missu train --dataset ../shared/data/la2018/dataset.json --config "$here/recipe.yaml" --seed "$seed" \
  --output "$out" "${flag[@]}" "${resume[@]}" >> "$out.events.jsonl"
missu evaluate --model "$out/bundle" --dataset ../shared/data/la2018/dataset.json --validation-only --json \
  > "$out.metrics.json"
