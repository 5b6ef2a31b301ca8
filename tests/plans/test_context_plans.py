"""``plan-context``: patch sizes, the memory-matched batch rule, idempotency, backups, and nnU-Net's view."""

from __future__ import annotations

import inspect
import json
import math
import re
from pathlib import Path

import pytest
from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner
from nnunetv2.experiment_planning.experiment_planners.network_topology import get_pool_and_conv_props
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

from nnunet_robustness.cli import main
from nnunet_robustness.errors import UserInputError
from nnunet_robustness.plans import context_configurations, memory_matched_batch_size, write_context_plans
from nnunet_robustness.plans.context_plans import NNUNET_MIN_BATCH_SIZE, divisibility, dump_plans
from tests.helpers.plans import PLANS_FILE, default_plans

SCALES = [0.5, 0.75, 1.0, 1.25]


def test_min_batch_size_is_nnunets():
    source = inspect.getsource(ExperimentPlanner.__init__)
    assert re.search(rf"self\.UNet_min_batch_size\s*=\s*{NNUNET_MIN_BATCH_SIZE}\b", source)


@pytest.mark.parametrize("configuration", ["2d", "3d_fullres"])
def test_divisibility_is_nnunets_shape_must_be_divisible_by(configuration):
    cfg = default_plans()["configurations"][configuration]
    # what nnU-Net's planner derived this topology from: same spacing and patch -> same divisibility
    *_, must_be_divisible_by = get_pool_and_conv_props(cfg["spacing"], cfg["patch_size"], 4, 999999)
    assert divisibility(cfg) == list(must_be_divisible_by)


@pytest.mark.parametrize("configuration", ["2d", "3d_fullres"])
@pytest.mark.parametrize("memory_matched", [False, True])
def test_patch_sizes_divisible_and_batch_rule(configuration, memory_matched):
    plans = default_plans()
    source = plans["configurations"][configuration]
    result = context_configurations(plans, configuration, [0.3, *SCALES, 1.6], memory_matched)
    divisible_by = divisibility(source)
    for c in result:
        assert len(c.patch_size) == len(source["patch_size"])
        assert all(p % d == 0 and p >= d for p, d in zip(c.patch_size, divisible_by))
        # nearest multiple of the divisibility to the scaled size (ties up)
        for p, s, d in zip(c.patch_size, source["patch_size"], divisible_by):
            assert abs(p - c.scale * s) <= d / 2 or p == d
        if memory_matched:
            budget = source["batch_size"] * math.prod(source["patch_size"])
            expected = max(2, budget // math.prod(c.patch_size))
            assert c.batch_size == expected
            assert c.memory_ratio <= 1 or c.batch_size == NNUNET_MIN_BATCH_SIZE
            # the largest batch within the budget: one more sample would exceed it
            if c.batch_size > NNUNET_MIN_BATCH_SIZE:
                assert (c.batch_size + 1) * math.prod(c.patch_size) > budget
        else:
            assert c.batch_size == source["batch_size"]
    by_scale = {c.scale: c for c in result}
    assert by_scale[1.0].patch_size == source["patch_size"]
    assert by_scale[0.5].patch_size == [s // 2 for s in source["patch_size"]]


def test_memory_matched_rule_examples():
    assert memory_matched_batch_size(2, (32, 32, 32), (16, 16, 16)) == 16
    assert memory_matched_batch_size(10, (32, 32), (24, 24)) == 17  # floor(10 * 1024 / 576)
    assert memory_matched_batch_size(2, (32, 32, 32), (40, 40, 40)) == 2  # nnU-Net's minimum


def test_names_and_errors():
    plans = default_plans()
    names = [c.name for c in context_configurations(plans, "3d_fullres", SCALES, True)]
    assert names == ["3d_fullres_ctx0.50_mem", "3d_fullres_ctx0.75_mem", "3d_fullres_ctx1.00_mem",
                     "3d_fullres_ctx1.25_mem"]
    with pytest.raises(UserInputError, match="no configuration 3d_lowres"):
        context_configurations(plans, "3d_lowres", SCALES)
    with pytest.raises(UserInputError, match="--scales: -1 is not a positive number"):
        context_configurations(plans, "2d", [-1])
    with pytest.raises(UserInputError, match="0.5 and 0.501 both give configuration 2d_ctx0.50"):
        context_configurations(plans, "2d", [0.5, 0.501])


def _preprocessed(tmp_path: Path) -> Path:
    folder = tmp_path / "Dataset903_Blobs3D"
    folder.mkdir()
    # the file exactly as nnUNetv2_plan_and_preprocess writes it
    (folder / "nnUNetPlans.json").write_text(dump_plans(json.loads(PLANS_FILE.read_text())))
    return folder


def test_write_is_idempotent_backs_up_and_keeps_existing_configurations_byte_equal(tmp_path):
    folder = _preprocessed(tmp_path)
    plans_file = folder / "nnUNetPlans.json"
    original = plans_file.read_bytes()

    result = write_context_plans(folder, "nnUNetPlans", ["3d_fullres", "2d"], SCALES, memory_matched=True)
    assert result.added == [c.name for c in result.configurations] and len(result.added) == 8
    assert result.backup is not None and result.backup.read_bytes() == original
    new = json.loads(plans_file.read_text())
    old = json.loads(original)
    added = set(new["configurations"]) - set(old["configurations"])
    assert added == set(result.added)
    # removing what we added gives back the original file, byte for byte
    for name in added:
        del new["configurations"][name]
    assert dump_plans(new).encode() == original

    after_first = plans_file.read_bytes()
    again = write_context_plans(folder, "nnUNetPlans", ["3d_fullres", "2d"], SCALES, memory_matched=True)
    assert not again.written and again.backup is None and len(again.unchanged) == 8
    assert plans_file.read_bytes() == after_first
    assert len(list(folder.glob("*.bak"))) == 1

    # a second study (fixed batch) adds configurations next to the first
    write_context_plans(folder, "nnUNetPlans", ["3d_fullres"], [0.5])
    assert "3d_fullres_ctx0.50" in json.loads(plans_file.read_text())["configurations"]

    # a user's own configuration of the same name is never replaced silently
    plans = json.loads(plans_file.read_text())
    plans["configurations"]["3d_fullres_ctx0.75"] = {"inherits_from": "3d_fullres", "patch_size": [8, 8, 8]}
    plans_file.write_text(dump_plans(plans))
    with pytest.raises(UserInputError, match="3d_fullres_ctx0.75 exists with different content; pass --overwrite"):
        write_context_plans(folder, "nnUNetPlans", ["3d_fullres"], [0.75])
    replaced = write_context_plans(folder, "nnUNetPlans", ["3d_fullres"], [0.75], overwrite=True)
    assert replaced.replaced == ["3d_fullres_ctx0.75"]


def test_nnunet_resolves_the_new_configurations(tmp_path):
    folder = _preprocessed(tmp_path)
    write_context_plans(folder, "nnUNetPlans", ["3d_fullres"], [0.5], memory_matched=True)
    manager = PlansManager(str(folder / "nnUNetPlans.json"))
    source, ctx = manager.get_configuration("3d_fullres"), manager.get_configuration("3d_fullres_ctx0.50_mem")
    assert ctx.patch_size == [16, 16, 16] and ctx.batch_size == 16
    assert ctx.data_identifier == source.data_identifier  # preprocessed data reused
    assert ctx.network_arch_init_kwargs == source.network_arch_init_kwargs  # topology fixed


def test_cli(tmp_path, nnunet_env, capsys):
    folder = _preprocessed(Path(nnunet_env["nnUNet_preprocessed"]))
    assert main(["plan-context", "-d", "Dataset903_Blobs3D", "-c", "3d_fullres", "--scales", "0.5", "1.25"]) == 0
    out = capsys.readouterr().out
    assert "3d_fullres_ctx0.50" in out and "16x16x16" in out and "exceeds the median image size" in out
    assert main(["plan-context", "-d", "Dataset903_Blobs3D", "-c", "3d_fullres", "--scales", "0.5", "1.25"]) == 0
    assert "already up to date" in capsys.readouterr().out
    assert main(["plan-context", "-d", "Dataset903_Blobs3D", "-c", "3d_lowres", "--scales", "0.5"]) == 2
    assert "no configuration 3d_lowres" in capsys.readouterr().err
    assert len(list(folder.glob("*.bak"))) == 1
