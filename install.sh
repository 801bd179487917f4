#!/usr/bin/env bash
# One-command set-up of t2ibench into the current Python environment.
#   ./install.sh          the package, its scorer libraries and the test tools
#   ./install.sh --browser   also Debian's chromium (for the leaderboard's browser test)
#   ./install.sh --postgres  also Debian's postgresql (the tests start a throwaway server from it)
# Why a script and not only `pip install`: image-reward 1.5 and hpsv2 1.2 pin stacks that break
# open_clip and current transformers, so they go in with --no-deps (their real imports are in
# pyproject.toml), and the CPU torchvision fix must be registered as a start-up hook.
set -euo pipefail
cd "$(dirname "$0")"
BROWSER=0 POSTGRES=0
for arg in "$@"; do
  case "$arg" in
    --browser) BROWSER=1 ;;
    --postgres) POSTGRES=1 ;;
    *) echo "install.sh: unknown option $arg (known: --browser, --postgres)" >&2; exit 2 ;;
  esac
done
apt_install() {
  if [[ $(id -u) == 0 ]]; then apt-get -qq update && apt-get -qq install -y "$@" >/dev/null
  else sudo apt-get -qq update && sudo apt-get -qq install -y "$@" >/dev/null; fi
}
PY=${PYTHON:-python3}
export PIP_CONSTRAINT="$PWD/constraints.txt"
$PY -m pip install -q -e ".[test]"
$PY -m pip install -q --no-deps "image-reward==1.5" "hpsv2==1.2.0"
# VQAScore: qwen-vl-utils (Qwen's image resize; its PyAV requirement is only for video). t2v-metrics and
# decord only for the equivalence test, which imports t2v_metrics' Qwen model file (its pins are transformers 4.49).
$PY -m pip install -q --no-deps "qwen-vl-utils==0.0.14" "t2v-metrics==3.0" "decord==0.6.0" "clip-benchmark==1.6.2"
$PY -m t2ibench.compat install
if [[ $BROWSER == 1 ]] && ! command -v chromium >/dev/null; then apt_install chromium; fi
if [[ $POSTGRES == 1 ]] && ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then apt_install postgresql; fi
echo "t2ibench installed: $(command -v t2ibench)"
