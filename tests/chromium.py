"""Headless Chromium for the tests: a screenshot of the HTML report, the DOM of the Prefect UI."""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# --headless is Chromium's new headless mode (the default since 132); --no-sandbox because CI
# and containers run as root; the rest keep it from phoning home and from showing scrollbars.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--disable-quic",
                  "--no-first-run", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync")


class ChromiumNotFound(RuntimeError):
    pass


def require_chromium(what: str, *, skip: bool = True) -> bool:
    """True when Chromium is on PATH. Without it: a failure under RSMOE_REQUIRE_CHROMIUM=1 (CI,
    `make test`), else a skip of the calling test saying `what` is not checked (or, with
    skip=False, False: the test goes on without that check)."""
    import os

    import pytest

    if find_chromium() is not None:
        return True
    message = f"Chromium not installed (apt-get install -y chromium); {what} is not checked"
    if os.environ.get("RSMOE_REQUIRE_CHROMIUM") == "1":
        pytest.fail(message + ", but RSMOE_REQUIRE_CHROMIUM=1")
    if skip:
        pytest.skip(message)
    return False


def find_chromium() -> str | None:
    return next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)


def render_png(html_file: Path, png: Path, width: int = 1200, height: int = 2400, timeout: float = 120) -> Path:
    """Screenshot the top `width` x `height` CSS pixels of `html_file` with headless Chromium."""
    exe = find_chromium()
    if exe is None:
        raise ChromiumNotFound(f"no Chromium on PATH (looked for {', '.join(CHROMIUM_NAMES)}); install it, "
                               "e.g. `apt-get install -y chromium` on Debian")
    html_file, png = Path(html_file).resolve(), Path(png).resolve()
    if not html_file.is_file():
        raise FileNotFoundError(f"{html_file} not found; write the report first (write_report)")
    png.parent.mkdir(parents=True, exist_ok=True)
    png.unlink(missing_ok=True)  # so a stale screenshot never passes for a new one
    with tempfile.TemporaryDirectory(prefix="rsmoe-chromium-") as profile:
        cmd = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
               f"--screenshot={png}", html_file.as_uri()]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0 or not png.is_file():
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"{exe} exited {proc.returncode} without writing {png}:\n{tail}")
    return png


def dump_dom(url: str, budget_ms: int = 20000, timeout: float = 180) -> str:
    """The DOM of `url` after its JavaScript ran for `budget_ms` of virtual time."""
    exe = find_chromium()
    if exe is None:
        raise ChromiumNotFound(f"no Chromium on PATH (looked for {', '.join(CHROMIUM_NAMES)})")
    with tempfile.TemporaryDirectory(prefix="rsmoe-chromium-") as profile:
        return subprocess.run([exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}",
                               "--dump-dom", url], capture_output=True, text=True, timeout=timeout).stdout
