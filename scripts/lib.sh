# Shared set-up steps for scripts/test and scripts/demo (sourced, not run).

# Debian packages the tests start for real; the demo needs only mosquitto (DEMO_PACKAGES).
# libfaketime: the forensic test moves the clock of a retention run with it (tests/integration/test_forensic.py).
# chromium: the app's browser tests drive it headless with Playwright (tests/support/browser.py); no browser download.
SYSTEM_PACKAGES=(mosquitto mosquitto-clients ffmpeg postgresql libfaketime chromium)
DEMO_PACKAGES=(mosquitto)

# ensure_system_packages [PACKAGE...]: installs what is missing of the given packages (default: SYSTEM_PACKAGES),
# saying which and why, and python3-venv when this Python cannot make a virtualenv.
ensure_system_packages() {
  local wanted=("$@") missing=() p
  [ ${#wanted[@]} -eq 0 ] && wanted=("${SYSTEM_PACKAGES[@]}")
  for p in "${wanted[@]}"; do
    case "$p" in
      mosquitto) command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto) ;;
      mosquitto-clients) command -v mosquitto_pub >/dev/null 2>&1 || missing+=(mosquitto-clients) ;;
      ffmpeg) command -v ffmpeg >/dev/null 2>&1 || missing+=(ffmpeg) ;;
      postgresql) compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql) ;;
      *) dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p") ;;
    esac
  done
  [ -x .venv/bin/python ] || python3 -c 'import ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing system packages: ${missing[*]} (run: sudo apt-get install ${missing[*]})" >&2
    return 1
  fi
  echo "== installing the Debian packages ${missing[*]} (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The Debian packages start their own services; the tests and the demo start private instances on free ports.
  systemctl disable --now mosquitto >/dev/null 2>&1 || true
}

# ensure_venv [EXTRAS]: .venv with kotihub installed editable with EXTRAS (default hub,register,test: all of it).
# A venv already installed with everything also serves a smaller set, so the demo after the tests installs nothing.
ensure_venv() {
  local extras="${1:-hub,register,test}" stamp
  if [ ! -x .venv/bin/python ]; then
    echo "== creating the virtualenv .venv"
    python3 -m venv .venv
  fi
  for stamp in ".venv/.kotihub-installed.$extras" .venv/.kotihub-installed.hub,register,test; do
    if [ -f "$stamp" ] && [ ! setup.cfg -nt "$stamp" ] && [ ! pyproject.toml -nt "$stamp" ]; then
      return 0
    fi
  done
  echo "== installing kotihub[$extras] and its Python dependencies into .venv (pip; a minute or two the first time)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[$extras]"
  touch ".venv/.kotihub-installed.$extras"
}

# ensure_npm_packages: the household app's JavaScript packages, exactly as package-lock.json pins them (npm ci, from
# the npm registry, no install scripts), copied into cloud_sync/register/webapp/static/vendor/ by scripts/vendor.mjs
# (the register serves them from there; nothing from a CDN at run time). Needs node and npm (Debian: npm).
ensure_npm_packages() {
  local stamp=node_modules/.kotihub-npm-installed vendor=cloud_sync/register/webapp/static/vendor
  if ! command -v npm >/dev/null 2>&1; then
    ensure_system_packages npm || return 1
  fi
  if [ ! -f "$stamp" ] || [ package-lock.json -nt "$stamp" ]; then
    echo "== installing the app's JavaScript packages (npm ci)"
    npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
    touch "$stamp"
  fi
  if [ ! -f "$vendor/importmap.json" ] || [ "$stamp" -nt "$vendor/importmap.json" ] \
    || [ scripts/vendor.mjs -nt "$vendor/importmap.json" ]; then
    node scripts/vendor.mjs
  fi
}
