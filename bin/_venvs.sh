# Sourced by bin/test and bin/bench: one virtualenv per end of the supported pip range, each with
# pipguard (editable) and its test dependencies. Made once, remade when its pip version is off.
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=${PYTHON:-python3}
venvs="$root/.venvs"
# The ends of the supported pip range, as pipguard/_pip/requirements.txt names them (written there only).
read -r oldest_pip newest_pip < <(sed -n 's/^# tested-pip: //p' "$root/pipguard/_pip/requirements.txt")

# What the venvs were made from: remade when pipguard's dependencies or test dependencies change.
stamp=$(cat "$root/pyproject.toml" "$root/pipguard/_pip/requirements.txt" | sha256sum | cut -d' ' -f1)

ensure_venv() {
    local dir="$venvs/pip-$1"
    if ! "$dir/bin/python" -c "import pip, pipguard, pytest, sys; sys.exit(pip.__version__ != '$1')" 2>/dev/null \
        || [ "$(cat "$dir/.made-from" 2>/dev/null)" != "$stamp" ]; then
        rm -rf "$dir"
        "$python" -m venv "$dir"
        "$dir/bin/python" -m pip install --quiet --disable-pip-version-check "pip==$1"
        "$dir/bin/python" -m pip install --quiet --disable-pip-version-check -e "$root[test]" "pip==$1"
        echo "$stamp" >"$dir/.made-from"
    fi
    echo "$dir/bin/python"
}

# The bench's peer to compare against (uv), pinned: a venv of its own, never in the test venvs. Made once
# from PyPI, remade when the pin changes; prints the uv binary, or fails quietly when it cannot be made.
bench_tools="uv==0.13.9"
bench_index="https://pypi.org/simple/"

ensure_bench_tools() {
    local dir="$venvs/bench-tools"
    if [ "$(cat "$dir/.made-from" 2>/dev/null)" != "$bench_tools" ] || ! "$dir/bin/uv" --version >/dev/null 2>&1; then
        "$python" -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=10)" "$bench_index" \
            2>/dev/null || return 1
        rm -rf "$dir"
        if ! { "$python" -m venv "$dir" \
               && "$dir/bin/python" -m pip install --quiet --disable-pip-version-check "$bench_tools"; }; then
            rm -rf "$dir"
            return 1
        fi
        echo "$bench_tools" >"$dir/.made-from"
    fi
    echo "$dir/bin/uv"
}
