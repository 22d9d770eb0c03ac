"""User-input errors shared by every floor: raised where the input is read, mapped to exit 2 by `cli/errors.py`."""


class ConfigError(ValueError):
    """A config value that is missing, unknown or of the wrong type; the message names the file and key."""
