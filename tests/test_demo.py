"""The demo's orchestration: the commands it runs, in order, and reuse of finished steps.

(The demo itself runs for minutes; `make demo` is exercised by hand and its timing is in the README.
Each command it calls is covered end to end by the other tests.)
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from nnunet_robustness.conditions.parsing import resolve_conditions
from nnunet_robustness.demo import CONDITION_SETS, CONDITIONS, CONFIGURATION, MODELS, Demo, DemoSettings
from nnunet_robustness.records.run_manifest import RunManifest


class FakeTools:
    """Records commands and creates the outputs a real run would leave, so re-runs see them."""

    def __init__(self, settings: DemoSettings, fail_training: str | None = None) -> None:
        self.settings, self.fail_training, self.calls = settings, fail_training, []

    def __call__(self, command, env, log=None) -> None:
        tool = Path(command[0]).name
        self.calls.append([tool, *command[1:]])
        assert env["nnUNet_raw"].startswith(str(self.settings.output)), "never the user's nnU-Net folders"
        s = self.settings
        if tool == "nnunet-robust" and command[1] == "make-dataset":
            s.raw.mkdir(parents=True, exist_ok=True)
            (s.raw / "dataset.json").write_text(json.dumps({"numTraining": 2}))
        elif tool == "nnUNetv2_plan_and_preprocess":
            data = s.preprocessed / "nnUNetPlans_2d"
            data.mkdir(parents=True)
            (s.preprocessed / "nnUNetPlans.json").write_text(json.dumps(
                {"configurations": {CONFIGURATION: {"data_identifier": "nnUNetPlans_2d"}}}))
            for case in ("a", "b"):
                (data / f"{case}.pkl").touch()
        elif tool == "nnUNetv2_train":
            fold = s.model_folder(command[command.index("-tr") + 1]) / "fold_0"
            fold.mkdir(parents=True, exist_ok=True)
            (fold / "checkpoint_latest.pth").touch()
            if command[command.index("-tr") + 1] != self.fail_training:
                (fold / "checkpoint_final.pth").touch()
        elif tool == "nnunet-robust" and command[1] == "run":
            out = Path(command[command.index("-o") + 1])
            conditions = resolve_conditions(CONDITIONS, CONDITION_SETS)
            for condition in conditions:
                (out / condition.name).mkdir(parents=True, exist_ok=True)
                (out / condition.name / "case_1.nii.gz").touch()
            RunManifest(model={"model_folder": command[command.index("-m") + 1]}, seed=0, save_probabilities=False,
                        file_ending=".nii.gz", conditions=tuple(conditions), cases=("case_1",)).write(out)
        elif tool == "nnunet-robust" and command[1] == "eval":
            s.evaluation.mkdir(parents=True, exist_ok=True)
            (s.evaluation / "report.html").touch()
            (s.evaluation / "summary.json").touch()


def test_demo_runs_the_real_tools_in_order(tmp_path, capsys):
    settings = DemoSettings(output=tmp_path / "demo")
    tools = FakeTools(settings)
    report = Demo(settings, runner=tools).run()
    assert report == settings.evaluation / "report.html"
    # it ends with the report and then the way to one's own data, a README section that exists
    last = capsys.readouterr().out.strip().splitlines()[-2:]
    assert str(report) in last[0] and "Your own data" in last[1] and "README.md" in last[1]
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "\n## Your own data" in readme
    sequence = [c[0] if c[0] != "nnunet-robust" else c[1] for c in tools.calls]
    assert sequence == ["make-dataset", "nnUNetv2_plan_and_preprocess", "nnUNetv2_train", "nnUNetv2_train",
                        "nnUNetv2_train", "run", "run", "run", "eval"]
    trained = [c[c.index("-tr") + 1] for c in tools.calls if c[0] == "nnUNetv2_train"]
    assert trained == list(MODELS.values())
    assert all("-device" in c and "cpu" in c for c in tools.calls if c[0] == "nnUNetv2_train")
    run_call = next(c for c in tools.calls if c[1:2] == ["run"])
    assert "seed-study" in run_call and "--reference" in run_call
    eval_call = tools.calls[-1]
    assert [a for a in eval_call if "=" in a] == [f"{m}={settings.predictions(m)}" for m in MODELS]


def test_rerun_reuses_finished_steps_and_continues_an_interrupted_training(tmp_path):
    settings = DemoSettings(output=tmp_path / "demo")
    first = FakeTools(settings, fail_training=MODELS["NoSkip"])  # NoSkip stops before its final checkpoint
    Demo(settings, runner=first).run()
    second = FakeTools(settings)
    demo = Demo(settings, runner=second)
    demo.run()
    tools = [c[0] if c[0] != "nnunet-robust" else c[1] for c in second.calls]
    assert "nnUNetv2_plan_and_preprocess" not in tools
    trainings = [c for c in second.calls if c[0] == "nnUNetv2_train"]
    assert len(trainings) == 1 and MODELS["NoSkip"] in trainings[0] and "--c" in trainings[0]
    assert any("(reused)" in line and "UNet" in line for line in demo.log)


def test_a_finished_demo_reruns_nothing_and_says_reused(tmp_path):
    settings = DemoSettings(output=tmp_path / "demo")
    Demo(settings, runner=FakeTools(settings)).run()
    again = FakeTools(settings)
    demo = Demo(settings, runner=again)
    demo.run()
    assert again.calls == []
    steps = [line for line in demo.log if line.startswith("[")]
    assert len(steps) == 4 + len(MODELS) and all(line.endswith("(reused)") for line in steps)
    # a new run.json (more conditions were added by hand) makes the evaluation stale again
    manifest = RunManifest.path(settings.predictions("UNet"))
    os.utime(manifest, (manifest.stat().st_atime, manifest.stat().st_mtime + 10))
    third = FakeTools(settings)
    Demo(settings, runner=third).run()
    assert [c[1] for c in third.calls] == ["eval"]
