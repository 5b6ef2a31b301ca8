"""Errors that reach the user as one line, naming the offending file or value."""


class UserInputError(Exception):
    """Bad input from the user (a file, an argument, a dataset).

    The CLI prints ``nnunet-robust: error: <message>`` and exits with status 2, without a
    traceback, so the message must name the file or value and say what is wrong with it.
    """
