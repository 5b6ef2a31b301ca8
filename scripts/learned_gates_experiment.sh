#!/usr/bin/env bash
# The committed learned-gates experiment (docs/learned_gates.md): texture datasets at two complexity
# levels (alpha 0.2: easy, 0.8: hard; same seed, so the blobs and texture patches are identical and
# only the blend differs), nnUNetTrainerLearnedSkip on each, gate logs copied to docs/learned_gates/.
# Usage: scripts/learned_gates_experiment.sh WORKDIR [TRAINER]   (CPU, 2 cores: see the doc for times)
set -euo pipefail
WORK=${1:?usage: $0 WORKDIR [TRAINER]}
TRAINER=${2:-nnUNetTrainerLearnedSkip_1epoch}
DOCS=$(cd "$(dirname "$0")/.." && pwd)/docs/learned_gates
export nnUNet_raw=$WORK/raw nnUNet_preprocessed=$WORK/preprocessed nnUNet_results=$WORK/results
export nnUNet_n_proc_DA=2 nnUNet_def_n_proc=2 nnUNet_compile=false OMP_NUM_THREADS=2
mkdir -p "$nnUNet_raw" "$nnUNet_preprocessed" "$nnUNet_results" "$DOCS"
for spec in 611:0.2 612:0.8; do
  id=${spec%%:*}; alpha=${spec##*:}; name=GatesA${alpha/./}
  start=$(date +%s)
  nnunet-robust make-dataset textures -d "$id" --name "$name" --shape 64 64 --train-alpha "$alpha" \
    --test-alpha --num-train 24 --seed 0
  nnUNetv2_plan_and_preprocess -d "$id" -c 2d -np 2 -npfp 2 > "$WORK/plan_$id.log"
  nnUNetv2_train "$id" 2d 0 -tr "$TRAINER" -device cpu > "$WORK/train_$id.log"
  end=$(date +%s)
  fold=$nnUNet_results/Dataset${id}_${name}/${TRAINER}__nnUNetPlans__2d/fold_0
  cp "$fold/learned_gates.json" "$DOCS/alpha${alpha/./}_learned_gates.json"
  cp "$fold/learned_gates.png" "$DOCS/alpha${alpha/./}_learned_gates.png"
  grep -E "Pseudo dice|EMA pseudo Dice" "$fold"/training_log_*.txt | tail -2 > "$DOCS/alpha${alpha/./}_dice.txt" || true
  echo "dataset $id alpha $alpha: $((end - start)) s (make-dataset + plan + train)" | tee -a "$DOCS/wall_times.txt"
done
