"""The one error type of the consistency capability."""


class ConsistencyError(ValueError):
    """Input that cannot be scored (too few references, an unusable encoder, a mask of the wrong
    size); its message is one line naming what is wrong and what would fix it."""
