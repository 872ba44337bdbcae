"""What a Ray command checks before Ray (or anything heavy) is imported: the environment Ray
reads at import, the address a run joins.

This module imports nothing of Ray's: Ray's C++ core reads some settings when `ray` is
imported, and a bad one ends the process there without a word (a segmentation fault, exit 139).
`RAY_worker_niceness` is one: Ray parses it as a C integer (spaces, a sign, digits, nothing
after), so `abc`, `1.5`, `3 ` or an empty value crash `import ray`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from tune_app.errors import InputError

__all__ = ["NICENESS_VARIABLE", "check_environment", "check_niceness"]

NICENESS_VARIABLE = "RAY_worker_niceness"
# what Ray's C++ config reader takes for an integer (strtol-like, the whole value): leading
# white space, an optional sign, ASCII digits
_RAY_INTEGER = re.compile(r"[ \t\n\r\f\v]*[+-]?[0-9]+")


def check_niceness(environ: Mapping[str, str]) -> None:
    """Refuse a `RAY_worker_niceness` that Ray cannot read (it would crash `import ray`).

    Args:
        environ: the environment Ray will read (`os.environ`).

    Raises:
        InputError: the variable is set to something other than a whole number, as Ray
            parses one (`15`, `-1`, `+3`; not `abc`, `1.5`, `3 ` or empty).
    """
    value = environ.get(NICENESS_VARIABLE)
    if value is None or _RAY_INTEGER.fullmatch(value):
        return
    raise InputError(
        f"{NICENESS_VARIABLE}={value!r}: not a whole number, and Ray cannot start with it "
        f"(importing Ray crashes); set it to the niceness Ray adds to its trial workers "
        f"(0: the driver's priority, 15: Ray's default; README: A shared machine) or unset it"
    )


def check_environment(environ: Mapping[str, str]) -> None:
    """Every check of the environment a Ray command makes before Ray is imported.

    Args:
        environ: the environment Ray will read (`os.environ`).

    Raises:
        InputError: a setting Ray would fail on; one line naming it and the fix.
    """
    check_niceness(environ)
