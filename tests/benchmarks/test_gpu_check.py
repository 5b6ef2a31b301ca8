"""The GPU check script must work before a GPU machine runs it: its dry mode (``--device cpu``) runs
every step on tiny inputs, writes its table and judges no goal."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.e2e
def test_gpu_check_dry_mode_runs_every_step(tmp_path, nnunet_env):
    output = tmp_path / "results" / "gpu.md"
    # nnUNetv2_predict (3 calls) in its sequential mode: by default each call spawned a preprocessing and
    # three export processes, each importing torch, for one 32^3 case; the predictions are the same
    env = {**nnunet_env, "nnUNet_npp": "0", "nnUNet_nps": "0"}
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--device", "cpu",
                             "--workdir", str(tmp_path / "work"), "--output", str(output)],
                            env=env, capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    text = output.read_text()
    assert text.startswith("# GPU check (dry mode on the CPU: goals not judged)")
    figures = {f["figure"]: f for f in json.loads(output.with_suffix(".json").read_text())["figures"]}
    assert all(f["met"] is None for f in figures.values()), "the dry mode must not judge a goal"
    shared = [f for name, f in figures.items() if "vs TorchIO" in name]
    assert len(shared) == 7 and all(f["ours"] > 0 and f["reference"] > 0 for f in shared)
    busy = next(f for name, f in figures.items() if "busy share" in name)
    assert 0 < busy["ours"] <= 100
    agreement = next(f for name, f in figures.items() if "voxels agreeing" in name)
    assert agreement["ours"] == agreement["reference"] == 100.0  # on the CPU run = nnUNetv2_predict, bit for bit
    surface = next(f for name, f in figures.items() if name.startswith("surface metrics (HD95"))
    assert surface["ours"] > 0 and surface["reference"] > 0
    difference = next(f for name, f in figures.items() if "largest |difference|" in name)
    assert difference["ours"] <= 1e-6  # the torch code on CPU tensors gives the CPU code's values
    # the peer a GPU user would pick: MONAI with the masks on the device, where it is installed (bench extra)
    peer = [f for name, f in figures.items() if "ours vs MONAI" in name]
    if importlib.util.find_spec("monai") is None:
        assert peer == [] and "MONAI is not installed" in text
    else:
        assert len(peer) == 1 and peer[0]["ours"] > 0 and peer[0]["reference"] > 0 and peer[0]["rounds"] >= 1
    with pytest.raises(subprocess.CalledProcessError):  # the dry mode never overwrites results/gpu.md
        subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--device", "cpu"],
                       env=nnunet_env, capture_output=True, check=True, cwd=REPO)
