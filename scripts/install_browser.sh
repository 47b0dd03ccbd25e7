#!/usr/bin/env bash
# Install Debian's headless browser for the browser tests (report rendering, web chat):
# `chromium` and `chromium-driver` (/usr/bin/chromium, /usr/bin/chromedriver).
#
# Safe to run repeatedly: does nothing when both are present. Installs only when running as root
# with apt-get available; otherwise prints what to do and exits 0, so `make test` continues and the
# browser tests skip with their own clear reason.
set -u

CHROMIUM_BIN="${NEBRAS_CHROMIUM:-/usr/bin/chromium}"
DRIVER_BIN="${NEBRAS_CHROMEDRIVER:-/usr/bin/chromedriver}"

have_browser() {
  [ -x "$CHROMIUM_BIN" ] && [ -x "$DRIVER_BIN" ]
}

if have_browser; then
  echo "install_browser: chromium and chromedriver already present ($CHROMIUM_BIN, $DRIVER_BIN)"
  exit 0
fi

if [ "$(id -u)" != "0" ]; then
  echo "install_browser: chromium/chromedriver missing and not running as root;"
  echo "  install them with: sudo apt-get install -y chromium chromium-driver"
  echo "  (browser tests will be skipped until then)"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install_browser: chromium/chromedriver missing and apt-get is not available on this system;"
  echo "  install Chromium and a matching chromedriver by hand (browser tests will be skipped)"
  exit 0
fi

echo "install_browser: installing chromium and chromium-driver with apt-get ..."
export DEBIAN_FRONTEND=noninteractive
# Another apt/dpkg run (e.g. a second installer) may hold the lock: wait for it instead of failing.
APT=(apt-get -o DPkg::Lock::Timeout=600 -y --no-install-recommends)
if ! "${APT[@]}" install chromium chromium-driver; then
  echo "install_browser: first attempt failed; refreshing the package lists and retrying"
  apt-get -o DPkg::Lock::Timeout=600 update && "${APT[@]}" install chromium chromium-driver || {
    echo "install_browser: could not install chromium (no mirror reachable or dpkg busy);"
    echo "  browser tests will be skipped"
    exit 0
  }
fi

if have_browser; then
  echo "install_browser: done ($("$CHROMIUM_BIN" --version 2>/dev/null))"
else
  echo "install_browser: apt-get finished but $CHROMIUM_BIN / $DRIVER_BIN are still missing"
fi
exit 0
