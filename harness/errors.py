"""The one exception type the CLI turns into a one-line message and a non-zero exit, and the
warning type it shows as one line."""


class HarnessError(Exception):
    """A problem with the user's input or environment, explained in one line.

    Raise it with a message that names the file, value or option at fault and what is wrong.
    """


class HarnessWarning(UserWarning):
    """Something the user should know that did not stop the work (a damaged cache rebuilt, ...).

    The CLI prints it as one ``warning: ...`` line on stderr, without a source location.
    """
