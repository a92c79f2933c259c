"""Run pipguard under the target interpreter (target.py chooses it), which needs no pip of its own.

Executed by path, like pip's ``__pip-runner__.py``: only pipguard and the packages it drives are made
importable (from the environment pipguard is installed in), so the target's ``pip list`` and ``freeze``
see exactly the target's own packages.

pipguard's own code (and its dependencies, installed for pipguard's interpreter) may not run under an
older target; then this runs pip's own runner instead, which is exactly what plain ``pip --python``
does, so the install still happens (or pip refuses the interpreter in its own words).
"""

import json
import os
import runpy
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



def _plain_pip():  # type: ignore[no-untyped-def]
    """Hand over to pip's own runner: plain pip under this interpreter."""
    runner = os.path.join(_SOURCES["pip"], "pip", "__pip-runner__.py")
    sys.argv[0] = runner
    runpy.run_path(runner, run_name="__main__")


# pipguard needs what pip 25.3+ needs; under an older Python, pip's runner says so in its own words.
# Run under another name by the fork server (forkserver.py): its own imports, then ``run_here`` for each
# child it forks; where pipguard cannot run, the server fails and each child starts anew instead.
_SERVED = __name__ != "__main__"
if sys.version_info < (3, 10) and not _SERVED:  # noqa: UP036 - the target may be older than pipguard's own Python
    _plain_pip()

try:
    from pipguard.cli import exit_now, run_here
except Exception as exc:  # noqa: BLE001 - pipguard cannot run here; plain pip still can
    if _SERVED:
        raise
    if "PIPGUARD_PARENTS" not in os.environ:  # a build-dependency install (build_deps.py) falls back silently
        sys.stderr.write(f"pipguard: warning: cannot run under {sys.executable} ({exc}); running plain pip\n")
    _plain_pip()

# pip names itself in usage text after argv[0]; "__main__.py" makes it say "<python> -m pip", as under
# its own runner. Records take the command line from PIPGUARD_ARGV instead.
if not _SERVED:
    sys.argv[0] = "__main__.py"
    exit_now(run_here(sys.argv[1:]))
