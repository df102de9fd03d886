#!/usr/bin/env bash
# Unpack ComfyUI's source into a build folder and install its requirements into the test venv,
# so that the tests that need a real ComfyUI (tests/integration, the live node, route and workflow
# tests) run instead of skipping.
#
#   bash scripts/setup_comfyui.sh TARBALL DEST VENV_PYTHON     # then: export COMFYUI_DIR=DEST/ComfyUI
#
# The source is never unpacked into the repository's tracked files (DEST is build/, ignored) and is
# never committed. torch, torchvision and torchaudio are left out of ComfyUI's requirements: the venv
# already has the pinned torch, and torchaudio only serves ComfyUI's audio nodes, which then log
# that they could not load (nothing in this pack uses them).
set -euo pipefail
tarball=$1
dest=$2
python=$3

[ -f "$tarball" ] || { echo "setup_comfyui: $tarball not found (ComfyUI's source archive)" >&2; exit 1; }
mkdir -p "$dest"
if [ ! -f "$dest/ComfyUI/main.py" ] || [ "$tarball" -nt "$dest/ComfyUI/main.py" ]; then
    rm -rf "$dest/ComfyUI"
    tar xzf "$tarball" -C "$dest"
    touch "$dest/ComfyUI/main.py"
fi
[ -f "$dest/ComfyUI/main.py" ] || { echo "setup_comfyui: $tarball holds no ComfyUI/main.py" >&2; exit 1; }

requirements=$(mktemp)
trap 'rm -f "$requirements"' EXIT
grep -v -E '^(torch|torchvision|torchaudio)([<>=!~ ;]|$)' "$dest/ComfyUI/requirements.txt" > "$requirements"
"$python" -m pip install -q -r "$requirements"
echo "ComfyUI ready: COMFYUI_DIR=$(cd "$dest/ComfyUI" && pwd)"
