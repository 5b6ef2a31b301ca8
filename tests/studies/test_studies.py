"""The seed studies: steps over nnU-Net's real CLIs shared between studies, resumable pipelines,
verdicts from paired statistics, and (e2e) the smoke scale of all three studies end to end."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from nnunet_robustness.errors import UserInputError
from nnunet_robustness.studies import STUDY_HTML, STUDY_JSON, workflow
from nnunet_robustness.studies.findings import NOT_EVALUATED, NOT_LEARNED, UNCONVERGED, VERDICTS
from nnunet_robustness.studies.protocols import StudyContext, trainer_name
from nnunet_robustness.studies.registry import STUDIES
from nnunet_robustness.studies.scales import SCALES
from nnunet_robustness.studies.workflow import Pipeline, Step, run_command, tool, training_step
from tests.helpers.nnunet_cli import run_cli


def _context(tmp_path: Path, scale: str = "smoke") -> StudyContext:
    return StudyContext(tmp_path / scale, SCALES[scale])


def _commands(study_name: str, context: StudyContext) -> list[list[str]]:
    return [[Path(c[0]).name, *c[1:]] for step in STUDIES[study_name](context).steps() for c in step.commands()]


def test_skip_complexity_runs_the_whole_protocol_through_the_real_tools(tmp_path):
    context = _context(tmp_path)
    commands = _commands("skip-complexity", context)
    tools = [c[0] if c[0] != "nnunet-robust" else c[1] for c in commands]
    levels, folds = len(context.scale.train_alphas), len(context.scale.folds)
    assert tools.count("nnUNetv2_train") == 3 * levels * folds
    assert tools.count("run") == 3 * levels * folds and tools.count("eval") == levels
    assert tools.index("nnUNetv2_plan_and_preprocess") < tools.index("nnUNetv2_train") < tools.index("run") \
        < tools.index("eval") < tools.index("complexity") < tools.index("recommend")
    trained = {c[c.index("-tr") + 1] for c in commands if c[0] == "nnUNetv2_train"}
    assert trained == {trainer_name(a, "tiny") for a in ("UNet", "NoSkip", "AttentionGate")}
    assert all("-device" in c for c in commands if c[0] == "nnUNetv2_train" or c[1:2] == ["run"])
    recommend = next(c for c in commands if c[1:2] == ["recommend"])
    assert recommend.count("--evidence") == levels and "--in-distribution" in recommend


def test_noise_and_context_studies_reuse_the_datasets_and_models_of_skip_complexity(tmp_path):
    """Run into the same folder, the noise study trains nothing new and the context study only its
    smaller-context models: their dataset and training commands are skip-complexity's."""
    context = _context(tmp_path)
    f1 = _commands("skip-complexity", context)
    shared = [c for c in f1 if c[0] in ("nnUNetv2_train", "nnUNetv2_plan_and_preprocess") or c[1:2] == ["make-dataset"]]
    for name in ("noise", "context-fbr"):
        own = [c for c in _commands(name, context)
               if c[0] in ("nnUNetv2_train", "nnUNetv2_plan_and_preprocess") or c[1:2] == ["make-dataset"]]
        new = [c for c in own if c not in shared]
        if name == "noise":
            assert new == []
        else:  # the smaller-context models and the wide test images
            assert new and all((c[0] == "nnUNetv2_train" and c[2] == "2d_ctx0.50") or c[1:3] == ["make-dataset", "textures"]
                               for c in new)
            assert sum(c[1:3] == ["make-dataset", "textures"] for c in new) == 1


def test_every_arm_is_trained_on_each_fold_of_the_scale_and_evaluated_as_runs(tmp_path):
    """cpu scale: three folds per architecture, No-Skip on its longer schedule (its 5000-iteration runs were
    still rising); eval gets each model's three run folders as NAME=R1,R2,R3."""
    context = _context(tmp_path, "cpu")
    commands = _commands("skip-complexity", context)
    trained = [(c[3], c[c.index("-tr") + 1]) for c in commands if c[0] == "nnUNetv2_train"]
    schedules = {"UNet": "20epochs", "NoSkip": "50epochs", "AttentionGate": "20epochs"}
    assert sorted(trained) == sorted((str(f), trainer_name(a, schedules[a])) for f in (0, 1, 2) for a in schedules)
    assert all(context.model_folder("D", a).name.startswith(trainer_name(a, schedules[a]) + "__") for a in schedules)
    evaluate = next(c for c in commands if c[1:2] == ["eval"])
    models = [evaluate[i + 1] for i, arg in enumerate(evaluate) if arg == "--model"]
    assert len(models) == 3 and all(m.count(",") == 2 and "fold_0" in m and "fold_2" in m for m in models)


def test_a_longer_schedule_named_for_one_configuration_applies_there_only(tmp_path):
    """cpu scale, F3: the attention-gated U-Net trains 50 epochs at patch scale 0.5 (two of its three
    20-epoch runs were still rising there) and 20 at nnU-Net's own patch, where F1 and F2 share its models."""
    context = _context(tmp_path, "cpu")
    trained = {(c[2], c[3], c[c.index("-tr") + 1]) for c in _commands("context-fbr", context)
               if c[0] == "nnUNetv2_train"}
    expected = {("2d_ctx0.50", "UNet", "20epochs"), ("2d_ctx0.50", "NoSkip", "50epochs"),
                ("2d_ctx0.50", "AttentionGate", "50epochs"), ("2d", "UNet", "20epochs"),
                ("2d", "NoSkip", "50epochs"), ("2d", "AttentionGate", "20epochs")}
    assert trained == {(configuration, str(fold), trainer_name(a, schedule))
                       for configuration, a, schedule in expected for fold in (0, 1, 2)}
    assert context.model_folder("D", "AttentionGate", "2d_ctx0.50").name.startswith(
        trainer_name("AttentionGate", "50epochs") + "__")
    assert context.model_folder("D", "AttentionGate").name.startswith(trainer_name("AttentionGate", "20epochs") + "__")


def test_predictions_of_an_arm_whose_model_changed_are_redone(tmp_path):
    """A protocol change of an arm's trainer (No-Skip's longer schedule) makes its run folders stale: their
    run.json names the old model folder, so the step is not done and `run` starts over with --overwrite
    (without it, run refuses a folder that holds another model's run)."""
    from nnunet_robustness.records.run_manifest import RunManifest

    context = _context(tmp_path, "cpu")
    study = STUDIES["skip-complexity"](context)
    steps = [step for step in study.steps() if step.title.startswith("nnunet-robust run ")]
    noskip = next(step for step in steps if "NoSkip" in step.title or "noskip" in step.title.lower())
    command = noskip.commands()[0]
    folder, model = Path(command[command.index("-o") + 1]), Path(command[command.index("-m") + 1])
    assert model.name.startswith(trainer_name("NoSkip", "50epochs") + "__") and "--overwrite" not in command

    def manifest(model_folder: Path) -> RunManifest:
        return RunManifest(model={"model_folder": str(model_folder)}, seed=0, save_probabilities=False,
                           file_ending=".nii.gz", conditions=(), cases=())

    folder.mkdir(parents=True)
    manifest(model.parent / f"{trainer_name('NoSkip', '20epochs')}__nnUNetPlans__2d").write(folder)
    assert not noskip.done() and noskip.commands()[0][-1] == "--overwrite"
    manifest(model).write(folder)  # the arm's own model, nothing predicted yet: not done, no overwrite
    assert not noskip.done() and "--overwrite" not in noskip.commands()[0]

    # a complete folder is done only for the model that predicted it
    from nnunet_robustness.conditions.parsing import resolve_conditions

    complete = tmp_path / "complete"
    conditions = tuple(resolve_conditions([], []))
    for condition in conditions:
        (complete / condition.name).mkdir(parents=True)
        (complete / condition.name / "case_1.nii.gz").touch()
    RunManifest(model={"model_folder": str(model)}, seed=0, save_probabilities=False, file_ending=".nii.gz",
                conditions=conditions, cases=("case_1",)).write(complete)
    assert workflow.run_done(complete, [], [], model)
    assert not workflow.run_done(complete, [], [], model.parent / f"{trainer_name('NoSkip', '20epochs')}__nnUNetPlans__2d")


def test_pipeline_reuses_finished_steps_resumes_training_and_estimates_time(tmp_path):
    calls, lines = [], []
    model = tmp_path / "model"

    def runner(command, env, log):
        calls.append(list(command))
        if command[0] == "train":
            (model / "fold_0").mkdir(parents=True, exist_ok=True)
            (model / "fold_0" / "checkpoint_final.pth").touch()

    marker = tmp_path / "done.txt"
    steps = [Step("first", marker.is_file, lambda: [["make"]], weight=1),
             training_step("train", model, ["train"], weight=2)]
    Pipeline({}, None, runner, printer=lines.append).run(steps)
    assert calls == [["make"], ["train"]]
    assert "about" in lines[0] and "left" in lines[0]

    marker.touch()
    (model / "fold_0" / "checkpoint_final.pth").unlink()
    (model / "fold_0" / "checkpoint_latest.pth").touch()  # interrupted: continue from the latest checkpoint
    calls.clear()
    records = Pipeline({}, None, runner, printer=lines.append).run(steps)
    assert calls == [["train", "--c"]]
    assert [r.status for r in records] == ["reused", "ran"]


def test_a_failing_step_names_its_log_and_shows_its_tail(tmp_path):
    log = tmp_path / "logs" / "01_step.log"
    with pytest.raises(UserInputError) as error:
        run_command(["sh", "-c", "echo the real cause; exit 3"], {}, log)
    message = str(error.value)
    assert "the real cause" in message and str(log) in message and "exited 3" in message


def test_our_commands_share_one_interpreter_with_their_own_logs_and_status(tmp_path):
    """Consecutive nnunet-robust commands run in one kept process, each writing to its own log; a failure
    is reported as from its own process; any other command stops the kept process first."""
    env = dict(os.environ)
    first, second, failing = (tmp_path / "logs" / f"{k}.log" for k in ("first", "second", "failing"))
    run_command([tool("nnunet-robust"), "--version"], env, first)
    kept = workflow._Interpreter.current
    run_command([tool("nnunet-robust"), "--version"], env, second)
    assert workflow._Interpreter.current is kept and kept.process.poll() is None
    for log in (first, second):
        assert log.read_text().splitlines()[1].startswith("nnunet-robust ")
    with pytest.raises(UserInputError) as error:
        run_command([tool("nnunet-robust"), "no-such-verb"], env, failing)
    assert "invalid choice" in str(error.value) and "exited 2" in str(error.value)
    assert workflow._Interpreter.current is kept  # a failed command leaves the process usable
    run_command(["sh", "-c", "echo nnU-Net"], env, tmp_path / "logs" / "other.log")
    assert workflow._Interpreter.current is None and kept.process.poll() == 0


@pytest.mark.e2e
def test_smoke_scale_of_every_study_end_to_end(tmp_path, nnunet_env):
    """The three studies at the smoke scale in one folder, through nnU-Net's real CLIs; the second and
    third reuse the first's datasets and models."""
    output = tmp_path / "studies"
    run_cli(["nnunet-robust", "study", "skip-complexity", "--scale", "smoke", "-o", str(output)], nnunet_env,
            timeout=900)
    for name in ("noise", "context-fbr"):
        stdout = run_cli(["nnunet-robust", "study", name, "--scale", "smoke", "-o", str(output)], nnunet_env,
                         timeout=900)
        assert "make-dataset textures alpha 0.1 (reused)" in stdout
    for name in STUDIES:
        folder = output / "smoke" / name
        summary = json.loads((folder / STUDY_JSON).read_text())
        verdicts = [f["verdict"] for f in summary["findings"]]
        assert verdicts and set(verdicts) <= set(VERDICTS), name
        # smoke trains one level: F1's hard-level finding has no data; its 10-iteration models cannot show a
        # plateau, so every other finding is "unconverged" (or "not learned" where a model is below the prior)
        assert verdicts.count(NOT_EVALUATED) == (1 if name == "skip-complexity" else 0), verdicts
        assert set(verdicts) - {NOT_EVALUATED} <= {UNCONVERGED, NOT_LEARNED}, verdicts
        for finding in summary["findings"]:
            assert finding["rule"] and finding["published"]["source"]
            if finding["verdict"] != NOT_EVALUATED:
                assert finding["runs_per_arm"] and set(finding["converged"].values()) == {False}
                assert finding["baseline"]["test_dice"] is not None
        assert summary["training_curves"] and summary["arms"]
        html = (folder / STUDY_HTML).read_text()
        assert "Verdict per finding" in html and "Training curves" in html and "trivial baseline" in html
    f1 = json.loads((output / "smoke" / "skip-complexity" / STUDY_JSON).read_text())
    assert len(f1["recommendations"]) == 2 and all(r["verdict"] for r in f1["recommendations"])
    # a re-run reuses every step and rewrites the same verdicts
    before = json.loads((output / "smoke" / "noise" / STUDY_JSON).read_text())
    stdout = run_cli(["nnunet-robust", "study", "noise", "--scale", "smoke", "-o", str(output)], nnunet_env)
    assert "(running" not in stdout
    again = json.loads((output / "smoke" / "noise" / STUDY_JSON).read_text())
    assert [f["statistics"] for f in again["findings"]] == [f["statistics"] for f in before["findings"]]

