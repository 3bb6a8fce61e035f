"""The README's picture of a report: the top of an HTML report in headless Chromium.

    .venv/bin/python hack/report_screenshot.py .vigil/demo/wine-report.html docs/images/report.png

Drives Debian's chromium with the report browser test's code
(tests/e2e/report/browser.py); prints the JavaScript errors it saw (the
picture is written only when there are none).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "e2e" / "report"))
from browser import browser_page


async def shoot(report: Path, width: int, height: int, work: Path) -> tuple[bytes, list[str]]:
    async with browser_page(work) as page:
        await page.open(report.resolve().as_uri(), width)
        await page.send(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
        shot = await page.send("Page.captureScreenshot", format="png")
        return base64.b64decode(shot["data"]), list(page.errors)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=1250)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="report-shot-") as work:
        png, errors = asyncio.run(shoot(args.report, args.width, args.height, Path(work)))
    if errors:
        print("\n".join(errors), file=sys.stderr)
        return 1
    args.output.write_bytes(png)
    print(f"{args.output}: {len(png) / 1024:.0f} KiB, {args.width}x{args.height}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
