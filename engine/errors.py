"""Errors that reach the user as one line with exit code 2 (the CLI) or a message (the app)."""


class UsageError(Exception):
    """Bad input from the user: an empty prompt, a missing path, a store that cannot be used."""


class RunError(Exception):
    """A run that stopped part way through no fault of the input (a rank or device lost): what it committed
    stays committed, and the same command run again resumes."""
