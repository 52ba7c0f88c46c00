#!/bin/sh
# Install what tests/slurm/cluster.py needs to start a single-node Slurm with accounting (Debian/Ubuntu).
# Does nothing when the daemons are already there; needs root (or sudo). Daemons are never started here:
# the test suite starts its own in a temporary directory and stops them by pid.
# Where the packages cannot be installed the slurm tests skip, except in CI (CI=true): there the slurm
# tests must run, so this exits 1 (and the test fixture fails instead of skipping).
set -e
PACKAGES="slurmctld slurmd slurm-client slurmdbd munge mariadb-server"
installed() {
    command -v slurmctld >/dev/null 2>&1 && command -v slurmdbd >/dev/null 2>&1 \
        && command -v munged >/dev/null 2>&1 && command -v mariadbd >/dev/null 2>&1
}
cannot() {
    case "${CI:-}" in
        [Tt][Rr][Uu][Ee]) echo "tests/slurm/install.sh: $1 (CI=true: the slurm tests must run)" >&2; exit 1 ;;
    esac
    echo "tests/slurm/install.sh: $1; the slurm tests will skip" >&2
    exit 0
}
if installed; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    cannot "no apt-get here; install $PACKAGES yourself"
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
        cannot "not root and no sudo"
    fi
fi
export DEBIAN_FRONTEND=noninteractive
# the packages' scripts must not start services on this machine (no systemd; the tests start their own)
POLICY=/usr/sbin/policy-rc.d
ADDED_POLICY=""
if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
    $SUDO chmod +x "$POLICY"
    ADDED_POLICY=1
fi
DONE=1
# shellcheck disable=SC2086
$SUDO apt-get install -y --no-install-recommends $PACKAGES \
    || { $SUDO apt-get update && $SUDO apt-get install -y --no-install-recommends $PACKAGES; } \
    || DONE=""
if [ -n "$ADDED_POLICY" ]; then $SUDO rm -f "$POLICY"; fi
if [ -z "$DONE" ] || ! installed; then
    cannot "could not install $PACKAGES"
fi
exit 0
