"""Fixtures for the dataset generator and complexity tests."""

from __future__ import annotations

from typing import Callable

import pytest

import nnunet_robustness.cli as cli

OUR_COMMANDS = ("nnunet_robustness.cli.make_dataset", "nnunet_robustness.cli.complexity")


@pytest.fixture
def robust_cli(monkeypatch: pytest.MonkeyPatch) -> Callable[..., int]:
    """``nnunet-robust`` in-process with only this folder's commands registered, so these tests do not
    depend on the other commands; returns the exit status like the console script."""
    monkeypatch.setattr(cli, "COMMAND_MODULES", OUR_COMMANDS)

    def run(*argv: str) -> int:
        return cli.main([str(a) for a in argv])

    return run
