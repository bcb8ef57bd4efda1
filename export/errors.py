"""The one exception type export raises for bad input or a failed check.

Its message is a single line that names the file or argument at fault and
what was expected; the CLI prints it as is and exits non-zero.
"""


class ExportError(Exception):
    """Bad input to export, or a verification check the converted model failed."""

    def __init__(self, message):
        super().__init__(" ".join(str(message).split()))
