"""Running nnU-Net's and our command-line tools as subprocesses in tests, with their output on failure."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def run_cli(args: list[str], env: dict, timeout: int = 600) -> str:
    executable = args[0] if os.path.isabs(args[0]) else str(BIN / args[0])
    result = subprocess.run([executable, *args[1:]], env=env, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {result.returncode}\n--- stdout ---\n{result.stdout[-4000:]}"
                             f"\n--- stderr ---\n{result.stderr[-4000:]}")
    return result.stdout
