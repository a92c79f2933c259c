"""Run pipguard under another interpreter (``--python``, ``$VIRTUAL_ENV``), which needs no pip of its own.

Executed by path, like pip's ``__pip-runner__.py``: only pipguard and the packages it drives are made
importable (from the environment pipguard is installed in), so the target's ``pip list`` and ``freeze``
see exactly the target's own packages.
"""

import json
import os
import sys
from importlib.machinery import PathFinder

if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]  # this file's folder holds pipguard's modules, which must not shadow top-level names

_SOURCES = json.loads(os.environ.pop("PIPGUARD_SOURCES", "{}"))


class _RedirectingFinder:
    @classmethod
    def find_spec(cls, fullname, path=None, target=None):  # type: ignore[no-untyped-def]
        where = _SOURCES.get(fullname)
        if where is None:
            return None
        return PathFinder.find_spec(fullname, [where], target)


sys.meta_path.insert(0, _RedirectingFinder())

# pip names itself in usage text after argv[0]; "__main__.py" makes it say "<python> -m pip", as under
# its own runner. Records take the command line from PIPGUARD_ARGV instead.
sys.argv[0] = "__main__.py"

from pipguard.cli import run_here  # noqa: E402

sys.exit(run_here(sys.argv[1:]))
