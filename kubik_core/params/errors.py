"""The one error type of the parameter optimizer.

A ``ParamsError`` is a user error: its message starts with the name of the input at fault
("family: ...", "steps: ...") and says what would fix it. It subclasses ValueError so callers
that only know ValueError still catch it.
"""


class ParamsError(ValueError):
    """Bad input to detect_family/optimize/estimate, named in the message."""
