"""The errors a user can fix, each a ValueError whose message names the file, row, field or key.

They live here, apart from the modules that raise them, so that the command line can catch them
without importing torch: `nofrog --help` answers at once.
"""


class DataError(ValueError):
    """Data that cannot be used; the message names the file, row and field."""


class ModelError(ValueError):
    """A model source that cannot be resolved or loaded; the message says which."""


class ReplayError(ValueError):
    """A replay request that cannot be served; the message says why."""


class ControlError(ValueError):
    """A control that does not fit the model; the message names the config key."""
