"""Steps of a workflow built from nnU-Net's and our command-line tools: resumable, logged, with one
progress display and an ETA for the whole workflow (the demo and every study use it).

A step knows whether its output is complete (``done``); a re-run skips finished steps, so an
interrupted workflow continues where it stopped (an interrupted training continues from its latest
checkpoint with ``--c``, an interrupted ``run`` from its finished files). Each step's commands write
their output to ``logs/NN_<step>.log`` beside the results; the terminal shows one line per step with
the elapsed time and an estimate of the time left. The estimate scales each step's expected cost
(``weight``, in seconds on a 2-core CPU) by how fast the steps run so far actually were.

nnU-Net prints nothing inside an epoch, so a step that can say how far it is (``Step.progress``: a
training reads its fold folder, :mod:`nnunet_robustness.training_progress`) gets a progress line every
``progress_seconds`` while it runs (when it changed): where it is, the time this step still needs
(from the share done so far) and the time the whole workflow still needs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from nnunet_robustness.errors import UserInputError
from nnunet_robustness.io import atomic_write_json

# runner(command, env, log): run one command; ``log`` is the file its output goes to (None: the terminal)
Runner = Callable[[Sequence[str], dict, "Path | None"], None]
LOG_TAIL_LINES = 15


def run_command(command: Sequence[str], env: dict, log: Path | None = None) -> None:
    """Run one command of a step, its output appended to ``log``; a failure names the log and shows its tail.

    With a log, this environment's ``nnunet-robust`` commands run in one kept interpreter
    (:class:`_Interpreter`); every other command (nnU-Net's) in its own process, as typed."""
    if log is None:
        returncode = subprocess.run(list(command), env=env).returncode
    else:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a") as stream:
            stream.write(f"$ {' '.join(command)}\n")
            stream.flush()
        if command[0] == tool("nnunet-robust"):
            returncode = _Interpreter.for_env(env).run(command, log)
        else:
            _Interpreter.close()  # nothing of ours stays loaded (a GPU's memory included) while nnU-Net works
            with open(log, "a") as stream:
                returncode = subprocess.run(list(command), env=env, stdout=stream,
                                            stderr=subprocess.STDOUT).returncode
    if returncode != 0:
        tail = ""
        if log is not None and log.is_file():
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:])
            tail = f"\nlast lines of {log}:\n{tail}\n"
        raise UserInputError(f"{tail}step failed: {Path(command[0]).name} exited {returncode} "
                             f"(log: {log}); fix the cause and run the same command again: finished steps are reused")


class _Interpreter:
    """One Python process that runs ``nnunet-robust`` commands one after another (``cli.main`` with the
    command's arguments, its output appended to the command's log): a new process per command would
    import torch and nnU-Net again each time, seconds per command, and a study runs dozens of ``run``s.
    Started for the first such command, kept while they follow each other, stopped before any other
    command and when the pipeline ends (``close``)."""

    current: "_Interpreter | None" = None

    def __init__(self, env: dict) -> None:
        self.env = env
        # the entry point is named here, in the new process's code: the CLI imports the workflow, not back
        serve_cli = "from nnunet_robustness.cli import main; from nnunet_robustness.studies.workflow import serve; serve(main)"
        self.process = subprocess.Popen([sys.executable, "-c", serve_cli], env=env, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)

    @classmethod
    def for_env(cls, env: dict) -> "_Interpreter":
        if cls.current is None or cls.current.env != env or cls.current.process.poll() is not None:
            cls.close()
            cls.current = cls(env)
        return cls.current

    @classmethod
    def close(cls) -> None:
        if cls.current is not None:
            process, cls.current = cls.current.process, None
            process.stdin.close()  # serve() ends at the end of its input
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            process.stdout.close()

    def run(self, command: Sequence[str], log: Path) -> int:
        """The command's exit status; a process that died (a crash, a kill) is its status, and the next
        command gets a new one."""
        try:
            self.process.stdin.write(json.dumps({"argv": list(command), "log": str(log)}) + "\n")
            self.process.stdin.flush()
            reply = self.process.stdout.readline()
        except BrokenPipeError:
            reply = ""
        if not reply:
            type(self).close()
            return self.process.returncode or 1
        return int(json.loads(reply)["status"])


def serve(main: Callable[[list[str]], int]) -> None:
    """The kept interpreter's loop, ``main`` being ``nnunet-robust``'s entry point (``cli.main``): one JSON
    request per input line (``argv`` as typed, ``log``), one reply
    line ``{"status": N}``. File descriptors 1 and 2 point at the command's log while it runs, as for a
    command in its own process (output of libraries and child processes included); the requests arrive on
    a copy of fd 0 and the commands read /dev/null."""
    requests, replies = os.fdopen(os.dup(0)), os.fdopen(os.dup(1), "w")
    with open(os.devnull) as nothing:
        os.dup2(nothing.fileno(), 0)
    try:
        for line in requests:
            request = json.loads(line)
            with open(request["log"], "a") as log:
                os.dup2(log.fileno(), 1)
                os.dup2(log.fileno(), 2)
                status = _serve_one(main, request["argv"])
            replies.write(json.dumps({"status": status}) + "\n")
            replies.flush()
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group; the pipeline stops too
        pass


def _serve_one(main: Callable[[list[str]], int], argv: list[str]) -> int:
    """``argv`` (``nnunet-robust VERB ...``) as its own process would run it; returns its exit status."""
    import traceback

    sys.argv = list(argv)
    try:
        status = main(argv[1:])
    except SystemExit as e:  # argparse's usage errors, a verb's sys.exit: as the interpreter would exit
        status = 0 if e.code is None else e.code if isinstance(e.code, int) else 1
        if not isinstance(e.code, (int, type(None))):
            print(e.code, file=sys.stderr)
    except BaseException:  # an uncaught error ends a command's own process with its traceback, status 1
        traceback.print_exc()
        status = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    return status


def nnunet_environment(root: Path) -> dict[str, str]:
    """nnU-Net's three folders inside ``root`` (the user's own nnU-Net folders are never touched) and
    worker counts for a small machine, unless the user has set nnU-Net's own variables for them."""
    cpus = str(min(os.cpu_count() or 1, 4))
    for folder in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    workers = {name: os.environ.get(name, cpus) for name in ("nnUNet_n_proc_DA", "nnUNet_def_n_proc")}
    return {**os.environ,
            "nnUNet_raw": str(root / "nnUNet_raw"),
            "nnUNet_preprocessed": str(root / "nnUNet_preprocessed"),
            "nnUNet_results": str(root / "nnUNet_results"),
            **workers, "nnUNet_compile": "false"}


def tool(name: str) -> str:
    """A console script of this environment (nnU-Net's and ours), whatever PATH says."""
    return str(Path(sys.executable).parent / name)


@dataclass
class Step:
    """One unit of a workflow: ``commands`` run in order unless ``done()`` says the output is complete.

    ``commands`` is a callable so that arguments depending on earlier steps' outputs (e.g. whether a
    training checkpoint exists to resume from) are computed when the step starts.
    """

    title: str
    done: Callable[[], bool]
    commands: Callable[[], list[list[str]]]
    weight: float = 10.0  # expected seconds on a 2-core CPU, for the ETA
    # how far a running step is: (words, share done in [0, 1] or None), or None while nothing is known
    progress: Callable[[], "tuple[str, float | None] | None"] | None = None


@dataclass
class StepRecord:
    title: str
    status: str  # "reused" or "ran"
    seconds: float


@dataclass
class Pipeline:
    """Runs steps with one progress line each: ``[k/N] title (running|reused) ... elapsed, ETA``."""

    env: dict
    log_folder: Path | None
    runner: Runner = run_command
    records: list[StepRecord] = field(default_factory=list)
    printer: Callable[[str], None] = lambda line: print(line, flush=True)
    progress_seconds: float = 10.0

    def run(self, steps: Sequence[Step]) -> list[StepRecord]:
        start = time.perf_counter()
        # what is left to do, judged once at the start (each done() reads files; the ETA needs no more)
        pending_weight = [0.0 if step.done() else step.weight for step in steps]
        try:
            self._run_steps(steps, start, pending_weight)
        finally:
            _Interpreter.close()
        self.printer(f"all {len(steps)} steps finished in {_duration(time.perf_counter() - start)}")
        return self.records

    def _run_steps(self, steps: Sequence[Step], start: float, pending_weight: list[float]) -> None:
        ran_weight, ran_seconds = 0.0, 0.0
        for number, step in enumerate(steps, start=1):
            prefix = f"[{number}/{len(steps)}] {step.title}"
            if step.done():
                self.records.append(StepRecord(step.title, "reused", 0.0))
                self.printer(f"{prefix} (reused)")
                continue
            remaining = sum(pending_weight[number - 1:])
            rate = ran_seconds / ran_weight if ran_weight > 0 else 1.0
            elapsed = time.perf_counter() - start
            self.printer(f"{prefix} (running; elapsed {_duration(elapsed)}, about {_duration(remaining * rate)} "
                         "left)")
            log = None if self.log_folder is None else self.log_folder / f"{number:02d}_{_slug(step.title)}.log"
            began = time.perf_counter()
            rest_of_workflow = sum(pending_weight[number:]) * rate
            watcher = self._watch(step, began, rest_of_workflow) if step.progress is not None else None
            try:
                for command in step.commands():
                    self.runner(command, self.env, log)
            finally:
                if watcher is not None:
                    watcher()
            seconds = time.perf_counter() - began
            ran_weight, ran_seconds = ran_weight + step.weight, ran_seconds + seconds
            self.records.append(StepRecord(step.title, "ran", seconds))


    def _watch(self, step: Step, began: float, rest_of_workflow: float) -> Callable[[], None]:
        """Print ``step.progress()`` every ``progress_seconds`` from a thread; returns the function that
        stops it."""
        stop = threading.Event()
        first = step.progress()  # what was there before this run (a resumed training): not its speed
        start_share = first[1] if first is not None and first[1] is not None else 0.0

        def watch() -> None:
            last = None
            while not stop.wait(self.progress_seconds):
                try:
                    state = step.progress()
                except OSError:  # a file replaced while read: the next look sees it
                    continue
                if state is None or state[0] == last:
                    continue
                last = state[0]
                self.printer("    " + progress_line(state[0], state[1], start_share,
                                                    time.perf_counter() - began, rest_of_workflow))

        thread = threading.Thread(target=watch, name=f"progress of {step.title}", daemon=True)
        thread.start()

        def finish() -> None:
            stop.set()
            thread.join()

        return finish


def progress_line(words: str, share: float | None, start_share: float, elapsed: float,
                  rest_of_workflow: float) -> str:
    """``words; elapsed E, about L left in this step (W in all)``: L extrapolates the time per share done
    since the step started; without a share (or before any progress) only the elapsed time."""
    line = f"{words}; elapsed {_duration(elapsed)}"
    start_share = min(start_share, share) if share is not None else start_share  # a restart from scratch
    if share is not None and share > start_share:
        left = elapsed * (1.0 - share) / (share - start_share)
        line += f", about {_duration(left)} left in this step ({_duration(left + rest_of_workflow)} in all)"
    return line


def training_progress(fold_folder: Path) -> Callable[[], "tuple[str, float | None] | None"]:
    """A training step's ``progress``: nnU-Net's log and our trainers' progress file in ``fold_folder``."""
    from nnunet_robustness.training_progress import read_training_progress

    def progress() -> tuple[str, float | None] | None:
        state = read_training_progress(fold_folder)
        return None if state is None else (state.describe(), state.fraction())

    return progress


def training_step(title: str, model_folder: Path, command: list[str], fold: str = "0", weight: float = 60.0) -> Step:
    """``nnUNetv2_train``: done when ``checkpoint_final.pth`` exists; an interrupted training continues
    from ``checkpoint_latest.pth`` (nnU-Net's ``--c``)."""
    fold_folder = model_folder / f"fold_{fold}"

    def commands() -> list[list[str]]:
        resume = ["--c"] if (fold_folder / "checkpoint_latest.pth").is_file() else []
        return [[*command, *resume]]

    return Step(title, lambda: (fold_folder / "checkpoint_final.pth").is_file(), commands, weight,
                progress=training_progress(fold_folder))


def preprocessing_done(raw: Path, preprocessed: Path, configuration: str) -> bool:
    """nnU-Net's plans exist and every training case of ``raw`` is preprocessed for ``configuration``."""
    plans, dataset_json = preprocessed / "nnUNetPlans.json", raw / "dataset.json"
    if not plans.is_file() or not dataset_json.is_file():
        return False
    configurations = json.loads(plans.read_text())["configurations"]
    if configuration not in configurations:
        return False
    data = preprocessed / configurations[configuration].get("data_identifier", "")
    expected = json.loads(dataset_json.read_text())["numTraining"]
    return data.is_dir() and len(list(data.glob("*.pkl"))) == expected


def predicted_by_another_model(folder: Path, model_folder: Path) -> bool:
    """``folder``'s run.json names another model folder than ``model_folder`` (the protocol changed an arm's
    trainer, e.g. a longer schedule): its predictions are stale and the run starts over (``--overwrite``)."""
    from nnunet_robustness.records.run_manifest import RunManifest

    manifest = RunManifest.read_if_present(folder)
    return manifest is not None and manifest.model_folder.resolve() != model_folder.resolve()


def run_done(folder: Path, specs: Sequence[str], sets: Sequence[str], model_folder: Path) -> bool:
    """Every condition of ``specs``/``sets`` predicted for every case by ``model_folder``'s model (run.json
    lists what the folder holds and which model predicted it)."""
    from nnunet_robustness.conditions.parsing import resolve_conditions
    from nnunet_robustness.records.run_manifest import RunManifest

    manifest = RunManifest.read_if_present(folder)
    return (manifest is not None and manifest.model_folder.resolve() == model_folder.resolve()
            and manifest.is_complete(folder, resolve_conditions(specs, sets)))


def newer_than_all(output: Path, inputs: Sequence[Path]) -> bool:
    """``output`` exists and no input is newer: the output was made from exactly these inputs."""
    return output.is_file() and all(i.is_file() and i.stat().st_mtime <= output.stat().st_mtime for i in inputs)


def eval_done(evaluation: Path, prediction_folders: Sequence[Path]) -> bool:
    """eval's report and summary exist and are newer than every run.json they evaluated."""
    from nnunet_robustness.records.run_manifest import RunManifest

    return ((evaluation / "report.html").is_file()
            and newer_than_all(evaluation / "summary.json", [RunManifest.path(f) for f in prediction_folders]))


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def _slug(title: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "_", title).strip("_")[:60]


def write_records(path: Path, records: Sequence[StepRecord]) -> list[StepRecord]:
    """Write ``steps.json``; a reused step keeps the time it took when it ran (earlier ``steps.json``), so
    the file holds the whole workflow's time however many invocations it took. Returns what it wrote."""
    earlier: dict[str, float] = {}
    if path.is_file():
        try:
            earlier = {r["title"]: float(r["seconds"]) for r in json.loads(path.read_text())}
        except (ValueError, KeyError, TypeError):
            earlier = {}
    merged = [StepRecord(r.title, r.status, earlier.get(r.title, 0.0) if r.status == "reused" else r.seconds)
              for r in records]
    atomic_write_json(path, [{"title": r.title, "status": r.status, "seconds": round(r.seconds, 1)} for r in merged])
    return merged
