"""The exceptions a user can cause, each carrying one sentence written for that user.

Everything else is a bug: it propagates with its traceback to the log.
"""

import re


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


class ClusterUnavailable(KubinError):
    """The Ray cluster that runs the jobs cannot be reached (or cannot be set up as configured)."""


# An absolute path (POSIX or Windows): quoted (it may hold spaces), or bare where it does not continue a
# word, a URL or a relative path. Group "name" is its last part.
_QUOTED_PATH = re.compile(r"""(?P<q>['"])(?:[A-Za-z]:)?[/\\][^'"]*?(?P<name>[^'"/\\]*)(?P=q)""")
_BARE_PATH = re.compile(r"""(?<![\w:/\\.~-])(?:[A-Za-z]:)?[/\\](?:[^\s'"/\\]+[/\\])+(?P<name>[^\s'"/\\]*)""")


def without_paths(text: str) -> str:
    """`text` with every absolute file path cut to its last part, the file's name: what an exception says
    about a file is shown to the user without the server's folders (a temp upload, the install folder)."""
    text = _QUOTED_PATH.sub(lambda m: m["q"] + m["name"] + m["q"], text)
    return _BARE_PATH.sub(lambda m: m["name"], text)


def first_line(exc: BaseException, limit: int = 160) -> str:
    """The first line of an exception's message (its type when it has none), kept short: the "why" in a
    sentence for the user."""
    lines = str(exc).strip().splitlines()
    return (lines[0][:limit] if lines else type(exc).__name__).rstrip(".")
