# Sourced by bin/test and bin/bench: one virtualenv per end of the supported pip range, each with
# pipguard (editable) and its test dependencies. Made once, remade when its pip version is off.
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=${PYTHON:-python3}
venvs="$root/.venvs"
newest_pip="26.3"
oldest_pip="25.3"
# The last pip release below the supported range: tests check that it gets plain pip. tests/support/versions.py
# reads all three, so the versions the suite names live here only.
below_range_pip="25.2"

ensure_venv() {
    local dir="$venvs/pip-$1"
    if ! "$dir/bin/python" -c "import pip, pipguard, pytest, sys; sys.exit(pip.__version__ != '$1')" 2>/dev/null; then
        rm -rf "$dir"
        "$python" -m venv "$dir"
        "$dir/bin/python" -m pip install --quiet --disable-pip-version-check "pip==$1"
        "$dir/bin/python" -m pip install --quiet --disable-pip-version-check -e "$root[test]" "pip==$1"
    fi
    echo "$dir/bin/python"
}
