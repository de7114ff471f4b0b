"""Errors that the command line reports as bad input (exit code 2, one line, no traceback)."""


class BadInput(Exception):
    """The user gave something unusable: a config value, a path, data or a checkpoint."""


class ConfigError(BadInput):
    """A config key is unknown, has the wrong type or a value out of range.

    The message always starts with the dotted key so the user knows what to fix.
    """

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(f"{key}: {message}")


class OptionError(ValueError):
    """Raised by a task or encoder constructor for one of its own options.

    The config layer turns it into a :class:`ConfigError` with the section prefix
    (``task.level``), so constructors stay usable from plain Python.
    """

    def __init__(self, option: str, message: str):
        self.option = option
        super().__init__(f"{option}: {message}")


def check_option(ok: bool, option: str, message: str) -> None:
    """Raise :class:`OptionError` for ``option`` unless ``ok``."""
    if not ok:
        raise OptionError(option, message)
