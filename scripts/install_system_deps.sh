#!/usr/bin/env bash
# System libraries the pack can use: headless OpenGL (EGL through Mesa) for the multi-view
# renders of `kubik 3d preprocess`. Installed with apt-get when we are root on Debian/Ubuntu and
# they are missing; otherwise this says what to install and carries on (renders are then
# skipped with that reason, everything else works).
set -u
packages=(libegl1 libegl-mesa0 libgl1-mesa-dri)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    echo "installing system packages for headless rendering: ${missing[*]}"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}") \
        >/dev/null || echo "warning: apt-get could not install ${missing[*]}; 3D renders will be skipped"
else
    echo "note: for 3D renders install: sudo apt-get install ${missing[*]}"
fi
exit 0
