"""The exceptions a user can cause, each carrying one sentence written for that user.

Everything else is a bug: it propagates with its traceback to the log.
"""


class KubinError(Exception):
    """Base of every error whose message is meant for the user as it is."""


class InvalidParams(KubinError):
    """A generation parameter is out of range or malformed."""


class UnknownModel(KubinError):
    """The requested model id is not in the registry and is not a model folder."""


class UnsupportedTask(KubinError):
    """The selected model cannot run the requested task."""


class WeightsMissing(KubinError):
    """The model's weights are neither on disk nor downloadable right now."""


class OutOfMemory(KubinError):
    """The device ran out of memory during a job."""


class JobCancelled(KubinError):
    """The user cancelled the job; whatever finished before is kept."""


class ConfigError(KubinError):
    """A configuration file could not be read."""


def first_line(exc: BaseException, limit: int = 160) -> str:
    """The first line of an exception's message (its type when it has none), kept short: the "why" in a
    sentence for the user."""
    lines = str(exc).strip().splitlines()
    return (lines[0][:limit] if lines else type(exc).__name__).rstrip(".")
