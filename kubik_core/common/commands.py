"""What a ``kubik`` sub-command module needs from the command line, kept below both.

``kubik_core/cli.py`` loads each capability's ``cli.py``, and those modules raise
``CommandError``; defining it here (and not in cli.py) lets them do so without importing the
module that loads them.
"""


class CommandError(Exception):
    """A user-facing error: printed as one line, exit status 2, no traceback."""
