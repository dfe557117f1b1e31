"""The one exception type the CLI turns into a one-line message and a non-zero exit."""


class HarnessError(Exception):
    """A problem with the user's input or environment, explained in one line.

    Raise it with a message that names the file, value or option at fault and what is wrong.
    """
