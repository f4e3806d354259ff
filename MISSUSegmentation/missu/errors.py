"""The one exception type for problems a user can fix (bad file, bad option, tampered bundle)."""


class MISSUError(ValueError):
    """A user-facing error; its message names the file or option and the problem."""
