"""The root of every Metrica Fleet exception.

Each component defines its own root below :class:`FleetError`; CLI entry points catch
``FleetError`` and print one line plus an optional hint instead of a traceback.
"""


class FleetError(Exception):
    """An expected failure with a message fit for an operator."""

    hint: str | None = None

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint


class CommandError(FleetError):
    """An external command failed or could not be started."""

    def __init__(self, argv: list[str], returncode: int | None, stderr: str) -> None:
        self.argv = argv
        self.returncode = returncode
        self.stderr = stderr
        detail = stderr.strip().splitlines()[-1] if stderr.strip() else "no output"
        status = "could not start" if returncode is None else f"exited {returncode}"
        super().__init__(f"{argv[0]} {status}: {detail}")


class FormatError(FleetError):
    """A file or message does not match its format."""


class VersionError(FormatError):
    """A version string is not dotted numbers."""
