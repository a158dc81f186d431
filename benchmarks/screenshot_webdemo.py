"""Screenshots of the web demo (`vcq demo`) for the README, taken in headless Chromium.

Serves the bundled demo checkpoint on a free 127.0.0.1 port, chooses a class, generates 8 images at guidance 2 (the
setting the demo checkpoint was evaluated at) and saves the "Generate" tab, then opens the "VCQ view" tab, shows the
coarse-to-fine decodes of the first image and saves that too. Needs the demo extra, selenium and Debian's `chromium`
+ `chromium-driver`:

    python benchmarks/screenshot_webdemo.py --output-dir docs/figures
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import time
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument(
        "--output-dir", default="docs/figures", help="Folder for webdemo.png and webdemo_vcq_view.png."
    )
    parser.add_argument("--class-label", default="7: Sneaker", help="Dropdown entry to choose (default: 7: Sneaker).")
    parser.add_argument("--num-images", type=int, default=8, help="Images to generate (default: 8).")
    parser.add_argument("--guidance-scale", type=float, default=2.0, help="Guidance scale (default: 2.0).")
    parser.add_argument("--seed", type=int, default=0, help="Seed (default: 0).")
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> None:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    from vcq_hf.gradio_app import VCQDemo, build_app, serve

    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    app = serve(build_app(VCQDemo.from_pretrained(None)), port=port, prevent_thread_lock=True, quiet=True)
    options = Options()
    options.binary_location = shutil.which("chromium")
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,980"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
    wait = WebDriverWait(driver, 60, poll_frequency=0.1)

    def set_value(selector: str, value: object) -> None:
        field = driver.find_element(By.CSS_SELECTOR, f"{selector} input[type=number]")
        field.send_keys(Keys.CONTROL, "a")
        field.send_keys(str(value), Keys.TAB)

    def images_loaded(selector: str, count: int) -> bool:
        script = (
            f"const images = document.querySelectorAll('{selector} .grid-container img');"
            f"return images.length === {count} && Array.from(images).every(img => img.complete && img.naturalWidth);"
        )
        return bool(driver.execute_script(script))

    try:
        driver.get(app.local_url)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#vcq-class input"))[0].click()
        option = f'[role=option][aria-label="{args.class_label}"]'
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, option))[0].click()
        set_value("#vcq-num-images", args.num_images)
        set_value("#vcq-guidance-scale", args.guidance_scale)
        set_value("#vcq-seed", args.seed)
        driver.find_element(By.CSS_SELECTOR, "#vcq-generate").click()
        wait.until(lambda d: images_loaded("#vcq-gallery", args.num_images))
        driver.execute_script("window.scrollTo(0, 0)")
        time.sleep(0.5)  # let the layout settle
        driver.save_screenshot(str(output_dir / "webdemo.png"))
        driver.find_element(By.XPATH, "//button[@role='tab' and contains(., 'VCQ view')]").click()
        driver.find_element(By.CSS_SELECTOR, "#vcq-coarse-to-fine").click()
        wait.until(lambda d: d.execute_script("return document.querySelectorAll('#vcq-decodes img').length > 0"))
        driver.set_window_size(1280, 1130)  # the whole tab
        driver.execute_script("window.scrollTo(0, 0)")
        time.sleep(1.0)
        driver.save_screenshot(str(output_dir / "webdemo_vcq_view.png"))
        print(f"wrote {output_dir / 'webdemo.png'} and {output_dir / 'webdemo_vcq_view.png'}")
    finally:
        driver.quit()
        app.close()


if __name__ == "__main__":
    main(parse_args())
