"""The one error type of the parameter optimizer.

A ``ParamsError`` is a user error: its message starts with the name of the input at fault
("family: ...", "steps: ...") and says what would fix it. It subclasses ValueError so callers
that only know ValueError still catch it.
"""


class ParamsError(ValueError):
    """Bad input to detect_family/optimize/estimate, named in the message."""


class CheckpointFileError(ParamsError):
    """A checkpoint whose safetensors header cannot be read (truncated, crafted, not safetensors).

    ``file`` is the name the caller gave (a path on the command line, the name relative to the
    model folder in a node) and ``reason`` the problem alone, so that a node can turn it into a
    note without an absolute server path.
    """

    def __init__(self, file: str, reason: str):
        super().__init__(f"checkpoint {file}: {reason}")
        self.file = file
        self.reason = reason
