"""Errors that end a stage with a readable one-line reason instead of a traceback."""


class PipelineError(Exception):
    """A problem the user can fix (bad params, bad data). The CLI prints `str(err)` and exits 1."""


class ParamsError(PipelineError):
    """params.yaml is invalid; the message names the key."""


class DataError(PipelineError):
    """Input data cannot be read or is not in the declared format."""


class GateBlocked(PipelineError):
    """The data-quality gate blocked the run; one line per failed check."""

    def __init__(self, lines: list[str]):
        self.lines = lines
        super().__init__("\n".join(lines))
