#!/usr/bin/env bash
# System packages the pack and its tests can use, installed with apt-get when we are root on
# Debian/Ubuntu and they are missing; otherwise this says what to install and carries on (what
# needs them is then skipped with that reason, everything else works):
#   - headless OpenGL (EGL through Mesa) for the multi-view renders of `kubik 3d preprocess`;
#   - Chromium (and a font for readable screenshots) for the browser tests in tests/browser,
#     which drive /usr/bin/chromium with Playwright (no browser download).
set -u

missing_of() {
    local p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
    done
}

# install_group PURPOSE PACKAGE... : apt-get install what is missing of PACKAGE... for PURPOSE.
install_group() {
    local purpose=$1; shift
    local missing
    missing=$(missing_of "$@" | tr '\n' ' ')
    [ -z "${missing// }" ] && return 0
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
        echo "installing system packages for $purpose: $missing"
        # shellcheck disable=SC2086  # $missing is a list of package names
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing) \
            >/dev/null || echo "warning: apt-get could not install $missing; $purpose will be skipped"
    else
        echo "note: for $purpose install: sudo apt-get install $missing"
    fi
}

command -v dpkg-query >/dev/null || { echo "note: not a Debian system; install EGL/Mesa and Chromium yourself"; exit 0; }
install_group "headless 3D renders" libegl1 libegl-mesa0 libgl1-mesa-dri
install_group "the browser tests" chromium fonts-dejavu-core
exit 0
