#!/bin/bash
# The CPU experiment of docs/robust_training.md: nnU-Net's U-Net trained with and without corruption
# augmentation on the skip-complexity study's alpha = 0.1 texture dataset, evaluated on its 20
# in-distribution test cases under seen and unseen families.
#
#   nnunet-robust study skip-complexity --scale cpu -o ROOT     # dataset 911 (the study trains _20epochs)
#   bash docs/robust_training/experiment.sh ROOT OUT             # trains both _10epochs models it compares
set -euo pipefail
ROOT=${1:?study output folder (nnunet-robust study ... -o ROOT)}
OUT=${2:?output folder}
export nnUNet_raw=$ROOT/nnUNet_raw nnUNet_preprocessed=$ROOT/nnUNet_preprocessed nnUNet_results=$ROOT/nnUNet_results
export nnUNet_n_proc_DA=${nnUNet_n_proc_DA:-2} nnUNet_def_n_proc=${nnUNet_def_n_proc:-2} nnUNet_compile=false
D=$nnUNet_raw/Dataset911_StudyTexturesA010
M=$nnUNet_results/Dataset911_StudyTexturesA010
# the baseline and the augmented model: same sampling and schedule, default options (no robust_training.json)
for trainer in nnUNetTrainer_fg033_10epochs nnUNetTrainerCorruptionAug_fg033_10epochs; do
  [ -f "$M/${trainer}__nnUNetPlans__2d/fold_0/checkpoint_final.pth" ] || nnUNetv2_train 911 2d 0 -tr "$trainer" -device cpu
done
mkdir -p "$OUT"
python - "$D" "$OUT/cases_alpha010.txt" <<'PY'
import sys
from pathlib import Path
from nnunet_robustness.datasets.textures_dataset import case_alphas
folder, listing = Path(sys.argv[1]), Path(sys.argv[2])
cases = sorted(case for case, alpha in case_alphas(folder, "test").items() if alpha == 0.1)
listing.write_text("".join(f"{folder}/imagesTs/{case}_0000.nii.gz\n" for case in cases))
PY
CONDITIONS="gaussian_noise:2,4 bias_field:2,4 gaussian_blur:2,4 motion:2,4 ghosting:2,4 spike:2,4"
for model in baseline:nnUNetTrainer_fg033_10epochs corruption_aug:nnUNetTrainerCorruptionAug_fg033_10epochs; do
  name=${model%%:*}; trainer=${model#*:}
  nnunet-robust run -i "$OUT/cases_alpha010.txt" -o "$OUT/$name" -m "$M/${trainer}__nnUNetPlans__2d" -f 0 \
    -device cpu --disable_tta --reference "$D/labelsTs" --no-progress --conditions $CONDITIONS
done
nnunet-robust eval --model baseline="$OUT/baseline" --model corruption_aug="$OUT/corruption_aug" \
  -ref "$D/labelsTs" -djfile "$D/dataset.json" -o "$OUT/eval" --allow-weak-models
