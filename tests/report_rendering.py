"""Open an HTML report in headless Chromium, as a person's browser would, and
look at what it shows: where each plot was laid out, and a screenshot.

For every HTML report the project writes. A report passes only if Chromium
parses it as HTML (a file it shows as text has no plots), lays out each inline
<svg> plot at a visible size, and paints the plot's data in the screenshot:
a laid-out but blank plot, or a plot with axes and no lines, is caught.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
from pathlib import Path

from tests.conftest import require_or_skip

# One column of the reports' layout: wide enough that plots sit side by side as on a laptop.
WINDOW_WIDTH = 1200
# Quiet and self-contained: no network, no profile reuse, no first-run UI (the console's browser tests too).
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
          "--disable-background-networking", "--disable-component-update", "--disable-sync",
          "--hide-scrollbars", "--force-device-scale-factor=1")
# Tall enough for the reports the project writes today; a taller page is shot again at its own height.
_WINDOW_HEIGHT = 3000
_LAYOUT_MARK = "rendered-layout:"
# Appended to a copy of the report: logs each top-level <svg>'s box (page coordinates) and the page height
# to the console, which Chromium's log shows on stderr. It changes no layout and no pixel.
_PROBE = f"""<script>
console.log("{_LAYOUT_MARK}" + JSON.stringify({{
  height: document.documentElement.scrollHeight,
  plots: Array.from(document.querySelectorAll("svg:not(svg svg)")).map(function (plot) {{
    var box = plot.getBoundingClientRect();
    return [box.left + window.scrollX, box.top + window.scrollY, box.width, box.height];
  }})
}}));
</script>"""
# matplotlib's first two series colours: the candidate and the champion in every plot.
CANDIDATE_COLOUR = (0x1F, 0x77, 0xB4)
CHAMPION_COLOUR = (0xFF, 0x7F, 0x0E)


@dataclasses.dataclass(frozen=True)
class RenderedReport:
    plots: list[tuple[int, int, int, int]]  # left, top, width, height in screenshot pixels
    screenshot: Path

    def _region(self, plot: int):
        import numpy as np
        from PIL import Image

        left, top, width, height = self.plots[plot]
        with Image.open(self.screenshot) as image:
            return np.asarray(image.convert("RGB"), dtype=np.int16)[top:top + height, left:left + width]

    def pixels_near(self, plot: int, colour: tuple[int, int, int], tolerance: int = 40) -> int:
        """How many pixels of plot `plot` are painted in about `colour`."""
        return int((abs(self._region(plot) - colour).max(axis=2) <= tolerance).sum())


def _screenshot(page: Path, work_dir: Path, height: int) -> tuple[Path, dict | None]:
    """One Chromium run: the screenshot, and the layout the probe logged (None: the page was shown as text)."""
    profile = work_dir / f"profile-{height}"  # a new, empty profile for every run
    profile.mkdir()
    screenshot = work_dir / "screenshot.png"
    done = subprocess.run([shutil.which("chromium"), *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                           "--enable-logging=stderr", "--log-level=0", f"--window-size={WINDOW_WIDTH},{height}",
                           f"--screenshot={screenshot}",
                           page.as_uri()], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and screenshot.exists(), (
        f"chromium could not render {page} ({done.returncode}): {done.stderr[-2000:]}")
    logged = re.search(f'"{_LAYOUT_MARK}(.*)", source:', done.stderr)
    return screenshot, json.loads(logged.group(1)) if logged else None


def render_report(report: Path, work_dir: Path) -> RenderedReport:
    """Lays out and screenshots `report` as Chromium shows that file. The probe is
    added to a copy with the same file name ending, because the ending is what
    decides whether Chromium shows the file as a page or as text."""
    require_or_skip(shutil.which("chromium") is not None,
                    "chromium is not installed (Debian package `chromium`; .ci/run installs it)")
    work_dir.mkdir(parents=True, exist_ok=True)
    page = work_dir / f"page{report.suffix}"
    page.write_text(report.read_text(encoding="utf-8") + _PROBE, encoding="utf-8")

    screenshot, layout = _screenshot(page, work_dir, _WINDOW_HEIGHT)
    assert layout is not None, (
        f"Chromium did not show {report} as a web page: a file named {report.name!r} is shown as text")
    if layout["height"] > _WINDOW_HEIGHT:
        screenshot, layout = _screenshot(page, work_dir, layout["height"])
    return RenderedReport(plots=[tuple(round(value) for value in box) for box in layout["plots"]],
                          screenshot=screenshot)
