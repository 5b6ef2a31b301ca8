#!/usr/bin/env bash
# The wheel path on another Python: build our wheel, install it non-editable into a fresh venv of that
# interpreter that already has torch (pinned by a constraints file, as the README says), then check that
# torch is unchanged, that `nnunet-robust doctor` passes and that nnU-Net's own trainer lookup finds our
# trainers through the shim (nnU-Net's nnUNet_extTrainer route is broken on 3.12, upstream issue 3025).
#
#   scripts/check_wheel_python.sh 3.12            # TORCH="torch==2.13.0" by default; pass another spec
#
# Downloads torch for that interpreter (on PyPI the Linux wheels are the CUDA build: several GB).
set -euo pipefail
version="${1:-3.12}"
torch_spec="${TORCH:-torch==2.13.0}"
cd "$(dirname "$0")/.."
interpreter=""
if command -v pyenv >/dev/null; then  # pyenv's shims exist for versions that are not active: use the real one
    installed="$(pyenv versions --bare | grep -E "^${version//./\\.}(\.[0-9]+)?$" | tail -1 || true)"
    [ -n "$installed" ] && interpreter="$(pyenv root)/versions/$installed/bin/python"
fi
[ -n "$interpreter" ] || interpreter="$(command -v "python$version" || true)"
"$interpreter" --version >/dev/null 2>&1 || { echo "no working Python $version interpreter found" >&2; exit 2; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "Python: $("$interpreter" --version) ($interpreter); work folder $work"
"$interpreter" -m venv "$work/venv"
pip=("$work/venv/bin/python" -m pip --disable-pip-version-check -q)
"${pip[@]}" install "$torch_spec"
before="$("$work/venv/bin/python" -c 'import torch; print(torch.__version__)')"
"${pip[@]}" wheel --no-deps -w "$work/dist" .
"$work/venv/bin/python" -m pip freeze | grep -iE '^(torch|torchvision|torchaudio)==' > "$work/keep-torch.txt"
"${pip[@]}" install "$work"/dist/nnunet_robustness-*.whl -c "$work/keep-torch.txt"
after="$("$work/venv/bin/python" -c 'import torch; print(torch.__version__)')"
[ "$before" = "$after" ] || { echo "FAIL: torch changed from $before to $after" >&2; exit 1; }
export nnUNet_raw="$work/raw" nnUNet_preprocessed="$work/pre" nnUNet_results="$work/res" nnUNet_n_proc_DA=2 nnUNet_def_n_proc=2
mkdir -p "$nnUNet_raw" "$nnUNet_preprocessed" "$nnUNet_results"
(cd "$work" && "$work/venv/bin/nnunet-robust" doctor)
(cd "$work" && "$work/venv/bin/python" -c "
from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name as find
cls = find('nnUNetTrainerNoSkip_tiny')
assert cls.__module__ == 'nnunet_robustness.trainers.variants', cls.__module__
print('nnU-Net finds', cls.__name__, 'in', cls.__module__)")
echo "OK: wheel path on Python $version, torch $after kept"
