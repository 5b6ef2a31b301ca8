"""Errors that reach the user as one line, naming the offending file or value."""


class UserInputError(Exception):
    """Bad input from the user (a file, an argument, a dataset).

    The CLI prints ``nnunet-robust: error: <message>`` and exits with status 2, without a
    traceback, so the message must name the file or value and say what is wrong with it.
    """


def check_seed(seed: int, option: str = "--seed") -> int:
    """One rule for every command's seed: a whole number >= 0. numpy's generators refuse negative seeds
    (a traceback in eval, calibrate, recommend), while run and corrupt hashed them into valid ones, so
    the same ``--seed -1`` meant something in one verb and crashed another."""
    if seed < 0:
        raise UserInputError(f"{option} {seed}: a seed is a whole number >= 0")
    return seed
