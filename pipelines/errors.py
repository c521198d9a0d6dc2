"""The two kinds of error that a script ends on with one line instead of a traceback (see cli.py).

A module's own error class names one of them as a base, beside the built-in one it already was (ValueError,
OSError, RuntimeError), so that cli.py recognises it without knowing the module.
"""


class UserInputError(Exception):
    """Something in the user's input: a recipe, a data or study file, a model or Hub id that cannot be loaded, a run
    folder that cannot be pushed. Scripts exit with status 2."""


class RunStoppedError(Exception):
    """A run that stopped for a reason outside the code: a NaN loss, a failed save, a failed Hub push. Scripts exit
    with status 1."""
