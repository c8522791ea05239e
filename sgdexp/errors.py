"""Errors that are the user's to fix: they stop a run with one line and no traceback."""
import re

SECRET_KEY = re.compile(r"api_?key|token|secret|password", re.IGNORECASE)


def shown(key: str, value):
    """`value` as an error line may print it: hidden where `key` names a secret (a W&B key passed as a
    config value by mistake must not reach the terminal or a log)."""
    return "<hidden>" if SECRET_KEY.search(key) else value


def shown_arguments(arguments):
    """`key=value` arguments (a command line, Hydra's overrides) with the values of secret-named keys
    hidden (`shown`): what a record of them (`.hydra/hydra.yaml`, W&B's run file) may keep."""
    return [key + eq + (shown(key, value) if eq else "") for key, eq, value in (a.partition("=") for a in arguments)]


class ConfigError(ValueError):
    """A config value that is not allowed, or data that is not where the config says.

    The message is the whole story: it names the key, the value and what is allowed.
    """

    def __init__(self, key: str, value, allowed: str):
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"{key}={shown(key, value)!r} is not allowed: {allowed}")


class StorageError(RuntimeError):
    """The run directory stopped accepting writes (disk full, read-only, gone): the run stops with
    `status: failed`; the message says where, why, and that what was written before is intact."""


class RefusedJob(Exception):
    """A sweep's job that its own checks refused (a ConfigError found with the data or the model, such as
    a batch larger than the dataset). An Exception, where a single run exits: Hydra's launchers then mark
    the job failed and run the sweep's other jobs, and the sweeper raises it when the batch has run.
    The message is the job's label and its error."""


class InterruptedJob(Exception):
    """A sweep's job in a worker process that Ctrl-C or SIGTERM stopped (its summary says interrupted),
    or that did not start because the sweep was interrupted (`sgdexp.interrupts`). An Exception, for
    the same reason as RefusedJob; the sweep then ends with one line and exit status 130 (143 for
    SIGTERM). The message is the job's label and how far it got."""
