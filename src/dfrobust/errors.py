"""User-facing errors.

A :class:`DfrobustError` carries a one-line message that says what went wrong and what to
do; the CLI prints it as ``error: <message>`` and exits with status 2, without a traceback.
"""


class DfrobustError(Exception):
    """An error caused by the user's input (missing folder, wrong checkpoint, bad option)."""
