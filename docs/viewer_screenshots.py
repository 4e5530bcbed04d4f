"""Redraw the viewer's screenshots in docs/figures/ from a built viewer (by default the demo's).

    .venv/bin/iconolens demo && .venv/bin/python docs/viewer_screenshots.py runs/demo/viewer
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

FIGURES = Path(__file__).resolve().parent / "figures"


def main(site: Path, chromium: str) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        page.goto(f"file://{site.resolve() / 'index.html'}#gallery?outcome=&sort=m:gradcampp:attribute:component_iou"
                  "&order=worst")
        page.wait_for_selector(".card")
        page.wait_for_timeout(500)
        page.screenshot(path=str(FIGURES / "viewer_gallery.png"))
        page.click(".card >> nth=5")
        page.wait_for_selector("#overlay[data-ready]")
        page.select_option("#method", "gradcampp")
        page.eval_on_selector("#threshold", "(el) => { el.value = '0.8'; el.dispatchEvent(new Event('input')); }")
        page.wait_for_function("document.getElementById('overlay').dataset.ready.startsWith('gradcampp|')"
                               " && document.getElementById('overlay').dataset.ready.includes('|0.8|')")
        page.wait_for_timeout(500)
        page.screenshot(path=str(FIGURES / "viewer_image.png"))
        browser.close()


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/demo/viewer"), shutil.which("chromium") or "chromium")
