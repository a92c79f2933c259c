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
