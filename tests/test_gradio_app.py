"""Tests of the web demo (`vcq demo`, `app.py`): its sampling and coarse-to-fine logic on a tiny random pipeline, the
missing-extra error, and, when Chromium, chromedriver, selenium and Gradio are installed, the page in a real headless
browser on the bundled demo checkpoint."""

from __future__ import annotations

import contextlib
import os
import re
import runpy
import shutil
import socket
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from vcq_hf import VCQConfig, VCQForCausalLM, VCQMask, VCQVQConfig, VCQVQModel
from vcq_hf.cli import main as vcq_main
from vcq_hf.gradio_app import INSTALL_HINT, MAX_IMAGES, Generation, VCQDemo, prefix_lengths, require_gradio
from vcq_hf.pipeline_vcq import VCQPipeline


REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo() -> VCQDemo:
    """A tiny random pipeline: T = 5, K_t = [3, 6, 11, 20, 37], 3 named classes."""
    torch.manual_seed(0)
    vq_config = VCQVQConfig.from_preset("tiny")
    vq_model = VCQVQModel(vq_config).eval()
    transformer = VCQForCausalLM(VCQConfig.from_vq_config(vq_config, preset="tiny")).eval()
    pipe = VCQPipeline(vq_model, transformer, id2label={0: "cat", 1: "dog", 2: "fish"})
    return VCQDemo(pipe)


@torch.no_grad()
def greedy_completion(pipe: VCQPipeline, label: int, prefix: list[int], guidance_scale: float) -> list[int]:
    """The prior's greedy continuation of `prefix`, without a KV cache: full cond and null forwards at each step."""
    config = pipe.transformer.config
    mask = VCQMask(codebook_sizes=config.codebook_sizes, prompt_length=1)
    cond = torch.tensor([config.class_token_ids([label]) + prefix])
    null = torch.tensor([[config.null_class_token_id] + prefix])
    while cond.shape[1] - 1 < config.num_image_tokens:
        cond_logits = pipe.transformer(input_ids=cond).logits[:, -1].float()
        null_logits = pipe.transformer(input_ids=null).logits[:, -1].float()
        logits = null_logits + guidance_scale * (cond_logits - null_logits)
        next_code = mask(cond, logits).argmax(-1, keepdim=True)
        cond, null = torch.cat([cond, next_code], 1), torch.cat([null, next_code], 1)
    return cond[0, 1:].tolist()


# ------------------------------------------------------------------------------------------------- logic (no Gradio)


def test_prefix_lengths():
    assert prefix_lengths(1) == [1]
    assert prefix_lengths(5) == [1, 2, 4, 5]
    assert prefix_lengths(256) == [1, 2, 4, 8, 16, 32, 64, 128, 256]
    with pytest.raises(ValueError, match="num_tokens = 0 is out of range"):
        prefix_lengths(0)


def test_docstring_examples():
    import doctest

    from vcq_hf import gradio_app

    results = doctest.testmod(gradio_app)
    assert results.attempted > 0 and results.failed == 0


def test_class_choices_show_names_and_ids(demo):
    assert demo.class_choices() == [("0: cat", 0), ("1: dog", 1), ("2: fish", 2)]


def test_page_starts_from_the_pipelines_defaults(demo):
    defaults = demo.sampling_defaults()
    settings = [defaults[name] for name in ("guidance_scale", "guidance_schedule", "temperature", "top_k", "top_p")]
    _, record = demo.generate(0, 3, *settings, seed=5)
    generators = [torch.Generator().manual_seed(5 + i) for i in range(3)]
    assert demo.pipe(class_labels=[0], num_images_per_class=3, generator=generators).codes.tolist() == record.codes
    settings[0] += 3.0  # the guidance matters on this model, so the comparison above can fail
    assert demo.generate(0, 3, *settings, seed=5)[1].codes != record.codes


def test_same_seed_same_images_and_image_i_uses_seed_plus_i(demo):
    kwargs = dict(guidance_scale=2.0, guidance_schedule="constant", temperature=1.0, top_k=None, top_p=None)
    images, record = demo.generate("dog", num_images=3, seed=7, **kwargs)
    again, record_again = demo.generate(1, num_images=3, seed=7, **kwargs)
    assert [im.size for im in images] == [(demo.image_size, demo.image_size)] * 3
    assert record == record_again and record.class_id == 1
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(images, again))
    # Image 1 of seed 7 is image 0 of seed 8 (as in `vcq generate`), and another seed gives other codes.
    shifted, record_shifted = demo.generate("dog", num_images=1, seed=8, **kwargs)
    assert record_shifted.codes[0] == record.codes[1]
    assert np.array_equal(np.asarray(shifted[0]), np.asarray(images[1]))
    other = demo.generate("dog", num_images=3, seed=1000, **kwargs)[1]
    assert other.codes != record.codes


def test_progress_is_reported_for_every_token(demo):
    calls = []
    demo.generate(0, 2, 2.0, "linear", 1.0, None, None, 0, progress=lambda fraction, text: calls.append(fraction))
    assert calls == [(t + 1) / demo.num_tokens for t in range(demo.num_tokens)]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_images": 0}, rf"number of images = 0 is out of range: it must be an integer in \[1, {MAX_IMAGES}\]"),
        ({"num_images": MAX_IMAGES + 1}, "number of images = 17 is out of range"),
        ({"seed": -1}, r"seed = -1 is out of range: it must be an integer in \[0, 4294967295\]"),
        ({"class_label": "dgo"}, "Unknown class name 'dgo'. Did you mean: 'dog'"),
        ({"class_label": 3}, r"class label 3 .* is out of range: this model has 3 classes"),
        ({"guidance_scale": -1.0}, "guidance_scale = -1.0 is out of range"),
        ({"temperature": 0.0}, "temperature = 0.0 is out of range"),
        ({"top_k": 0}, "top_k = 0 is out of range"),
        ({"guidance_schedule": "cosine"}, "guidance_schedule = 'cosine' is not supported"),
    ],
)
def test_bad_values_are_refused_naming_the_value(demo, kwargs, match):
    arguments = dict(
        class_label=0,
        num_images=1,
        guidance_scale=2.0,
        guidance_schedule="constant",
        temperature=1.0,
        top_k=None,
        top_p=None,
        seed=0,
    )
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=match):
        demo.generate(**arguments)


@pytest.mark.parametrize("guidance_scale", [1.0, 3.0])
def test_coarse_to_fine_keeps_k_tokens_and_fills_the_rest_greedily(demo, guidance_scale):
    images, record = demo.generate(2, 2, guidance_scale, "constant", 1.0, None, None, 3)
    decodes = demo.coarse_to_fine(record, 1)
    lengths = prefix_lengths(demo.num_tokens)
    assert [caption for _, caption in decodes] == ["first 1 token", "first 2 tokens", "first 4 tokens", "all 5 tokens"]
    # Every decode is the tokenizer's decode of prefix + the prior's greedy continuation (computed without a cache).
    expected_codes = [greedy_completion(demo.pipe, 2, record.codes[1][:k], guidance_scale) for k in lengths]
    assert expected_codes[-1] == record.codes[1]
    with torch.no_grad():
        expected = demo.pipe.vq_model.decode(torch.tensor(expected_codes)).sample
    expected = demo.pipe.image_processor.postprocess(expected, output_type="pil")
    for (image, _), reference in zip(decodes, expected):
        assert np.array_equal(np.asarray(image), np.asarray(reference))
    assert np.array_equal(np.asarray(decodes[-1][0]), np.asarray(images[1]))


def test_coarse_to_fine_refuses_a_missing_image(demo):
    record = Generation(class_id=0, guidance_scale=1.0, guidance_schedule="constant", codes=[[0] * demo.num_tokens])
    with pytest.raises(ValueError, match=r"image 1 is out of range: the last generation made 1 images"):
        demo.coarse_to_fine(record, 1)


def test_schedule_figure_plots_the_schedule(demo):
    figure = demo.schedule_figure()
    line = figure.axes[0].get_lines()[0]
    assert list(line.get_ydata()) == demo.codebook_sizes


# ------------------------------------------------------------------------------------------------------ the command


def test_missing_gradio_names_the_extra(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gradio", None)  # `import gradio` now raises ImportError
    with pytest.raises(ImportError, match=r"optional extra: pip install \"vcq_hf\[demo\]\""):
        require_gradio()
    assert vcq_main(["demo"]) == 2
    assert INSTALL_HINT in capsys.readouterr().err


def test_demo_command_refuses_bad_port_and_model(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        vcq_main(["demo", "--port", "70000"])
    assert exit_info.value.code == 2
    assert "--port 70000 is out of range" in capsys.readouterr().err
    pytest.importorskip("gradio")
    with pytest.raises(SystemExit) as exit_info:
        vcq_main(["demo", "--model", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "has no model_index.json" in capsys.readouterr().err


def test_app_py_is_the_demo_command(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["app.py", "--help"])
    monkeypatch.setattr(sys, "path", list(sys.path))
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(REPO_ROOT / "app.py"), run_name="__main__")
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--model" in out and "--port" in out and "--host" in out


# ----------------------------------------------------------------------------------------- the page, through its API


@pytest.fixture(scope="module")
def served(demo):
    """The tiny demo's page served on a free 127.0.0.1 port, and a Gradio client session on it."""
    pytest.importorskip("gradio")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from gradio_client import Client

    from vcq_hf.gradio_app import build_app, serve

    app = serve(build_app(demo), host="127.0.0.1", port=_free_port(), prevent_thread_lock=True, quiet=True)
    try:
        yield Client(app.local_url, verbose=False, download_files=False)
    finally:
        app.close()


def test_page_api_generates_then_decodes_coarse_to_fine(demo, served):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="Generate images first"):
        served.predict(None, 1, api_name="/coarse_to_fine")
    settings = dict(guidance_scale=2.0, schedule="linear", temperature=1.0, top_k=0, top_p=1.0)
    gallery, status, index = served.predict(2, 3, *settings.values(), 9, api_name="/generate")
    assert [item["caption"] for item in gallery] == [f"2: fish, seed {s}" for s in (9, 10, 11)]
    assert index == {"__type__": "update", "maximum": 3, "value": 1}  # the VCQ view's image picker follows
    assert status.startswith("3 image(s) of class 2: fish, 12x12 px, guidance 2 (linear), seeds 9..11")
    decodes = served.predict(3, api_name="/coarse_to_fine")
    assert [item["caption"] for item in decodes] == [
        "first 1 token",
        "first 2 tokens",
        "first 4 tokens",
        "all 5 tokens",
    ]
    with pytest.raises(AppError, match="Value 4 is greater than maximum value 3"):  # the picker's range follows
        served.predict(4, api_name="/coarse_to_fine")
    with pytest.raises(AppError, match="Value 0 is less than minimum value 1"):
        served.predict(0, api_name="/coarse_to_fine")


@pytest.mark.parametrize(
    "position, value, match",
    [
        (0, 3, r"Value: 3 is not in the list of choices: \[0, 1, 2\]"),
        (1, 17, "Value 17 is greater than maximum value 16"),
        (2, -0.5, "Value -0.5 is less than minimum value 0"),
        (5, 38, "Value 38 is greater than maximum value 37"),
        (7, -1, "Value -1 is less than minimum value 0"),
    ],
)
def test_page_api_refuses_values_outside_the_controls(served, position, value, match):
    from gradio_client.exceptions import AppError

    arguments = [0, 1, 2.0, "constant", 1.0, 0, 1.0, 0]
    arguments[position] = value
    with pytest.raises(AppError, match=match):
        served.predict(*arguments, api_name="/generate")


# ------------------------------------------------------------------------------------------------ the page, a browser


def _browser_missing() -> str | None:
    missing = [name for name in ("chromium", "chromedriver") if shutil.which(name) is None]
    for module in ("selenium", "gradio"):
        try:
            __import__(module)
        except ImportError:
            missing.append(f"the {module} package")
    if missing:
        return (
            f"browser test needs {', '.join(missing)}: apt-get install chromium chromium-driver and "
            'pip install -e ".[dev]" (.ci/run installs them)'
        )
    return None


BROWSER_MISSING = _browser_missing()
browser = pytest.mark.skipif(BROWSER_MISSING is not None, reason=BROWSER_MISSING or "")


@contextlib.contextmanager
def slowed_down(module: torch.nn.Module, seconds: float):
    """Make every forward call of `module` take `seconds` longer."""

    def pause(*args):
        time.sleep(seconds)

    handle = module.register_forward_pre_hook(pause)
    try:
        yield
    finally:
        handle.remove()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def page():
    """The bundled demo served on a free 127.0.0.1 port, and headless Chromium on it."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    from vcq_hf.gradio_app import build_app, serve

    demo = VCQDemo.from_pretrained(None)
    app = serve(build_app(demo), host="127.0.0.1", port=_free_port(), prevent_thread_lock=True, quiet=True)
    options = Options()
    options.binary_location = shutil.which("chromium")
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
    driver.set_page_load_timeout(60)
    try:
        driver.get(app.local_url)
        yield demo, driver
    finally:
        driver.quit()
        app.close()


def _wait(driver, condition, timeout: float = 60.0, what: str = "the page"):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition, message=f"timed out waiting for {what}")


_GALLERY_PIXELS = """
const images = Array.from(document.querySelectorAll(arguments[0] + ' .grid-container img'));
if (images.length === 0 || !images.every(img => img.complete && img.naturalWidth > 0)) return null;
return images.map(img => {
  const canvas = document.createElement('canvas');
  canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
  const context = canvas.getContext('2d');
  context.drawImage(img, 0, 0);
  return {src: img.src, width: img.naturalWidth, height: img.naturalHeight,
          rgba: Array.from(context.getImageData(0, 0, canvas.width, canvas.height).data)};
});
"""


def _gallery(driver, selector: str, previous: list | None = None, count: int | None = None) -> list[dict]:
    """The images of a gallery once loaded (and different from `previous`), with their pixels read in the page."""

    def ready(driver):
        images = driver.execute_script(_GALLERY_PIXELS, selector)
        if not images or (count is not None and len(images) != count):
            return None
        if previous is not None and [im["src"] for im in images] == [im["src"] for im in previous]:
            return None
        return images

    return _wait(driver, ready, what=f"the images of {selector}")


def _rgb(image: dict) -> np.ndarray:
    return np.array(image["rgba"], dtype=np.uint8).reshape(image["height"], image["width"], 4)[..., :3]


def _click(driver, selector: str, by: str = "css selector") -> None:
    """Click an element once nothing covers it (Gradio lays a status overlay on components while they load)."""
    from selenium.common.exceptions import ElementClickInterceptedException, ElementNotInteractableException

    def clicked(driver):
        try:
            driver.find_element(by, selector).click()
        except (ElementClickInterceptedException, ElementNotInteractableException):
            return False
        return True

    _wait(driver, clicked, what=f"{selector} to be clickable")


def _set_number(driver, selector: str, value) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    field = driver.find_element(By.CSS_SELECTOR, f"{selector} input[type=number]")
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(str(value), Keys.TAB)


@browser
@pytest.mark.browser
def test_page_in_headless_chromium(page):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    demo, driver = page
    started = time.perf_counter()
    # Choose a class from the dropdown (names and ids), 2 images, seed 11.
    _click(driver, "#vcq-class input")
    _click(driver, '[role=option][aria-label="7: Sneaker"]')
    _set_number(driver, "#vcq-num-images", 2)
    _set_number(driver, "#vcq-seed", 11)
    _click(driver, "#vcq-generate")
    first = _gallery(driver, "#vcq-gallery", count=2)
    assert all((im["width"], im["height"]) == (demo.image_size, demo.image_size) for im in first)
    status = driver.find_element(By.CSS_SELECTOR, "#vcq-status").text
    assert "2 image(s) of class 7: Sneaker" in status and "seeds 11..12" in status

    # The page shows exactly the pipeline's images for these settings (PNG: lossless).
    defaults = demo.sampling_defaults()
    expected, _ = demo.generate(
        "Sneaker", 2, defaults["guidance_scale"], defaults["guidance_schedule"], defaults["temperature"],
        defaults["top_k"], defaults["top_p"], seed=11,
    )  # fmt: skip
    for shown, reference in zip(first, expected):
        assert np.array_equal(_rgb(shown), np.asarray(reference))

    # Another seed gives other pixels; the first seed again gives the same pixels. Sampling is slowed down here
    # (20 ms per token) so that its progress, reported token by token, can be seen in the page.
    _set_number(driver, "#vcq-seed", 12)
    with slowed_down(demo.pipe.transformer, seconds=0.02):
        _click(driver, "#vcq-generate")
        progress = _wait(
            driver,
            lambda d: re.search(r"sampling: token (\d+) of 32", d.find_element(By.CSS_SELECTOR, "#vcq-gallery").text),
            what="the sampling progress",
        )
        assert 1 <= int(progress.group(1)) <= 32
    second = _gallery(driver, "#vcq-gallery", previous=first, count=2)
    assert not np.array_equal(_rgb(second[0]), _rgb(first[0]))
    assert np.array_equal(_rgb(second[0]), _rgb(first[1]))  # seed 12 is image 1 of seed 11
    _set_number(driver, "#vcq-seed", 11)
    _click(driver, "#vcq-generate")
    third = _gallery(driver, "#vcq-gallery", previous=second, count=2)
    assert all(np.array_equal(_rgb(a), _rgb(b)) for a, b in zip(third, first))

    # Clicking the second image picks it for the VCQ view, which shows the schedule plot and its coarse-to-fine
    # decodes; the decode from all T tokens is the image itself.
    _click(driver, '#vcq-gallery button[aria-label="Thumbnail 2 of 2"]')
    _click(driver, "//button[@role='tab' and contains(., 'VCQ view')]", By.XPATH)
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#vcq-schedule img"), what="the schedule plot")
    index = driver.find_element(By.CSS_SELECTOR, "#vcq-image-index input[type=number]")
    _wait(driver, lambda d: index.get_attribute("value") == "2", what="image 2 to be picked")
    _click(driver, "#vcq-coarse-to-fine")
    lengths = prefix_lengths(demo.num_tokens)
    decodes = _gallery(driver, "#vcq-decodes", count=len(lengths))
    assert np.array_equal(_rgb(decodes[-1]), _rgb(first[1]))
    assert not np.array_equal(_rgb(decodes[0]), _rgb(first[1]))  # one token fixes little of the image

    # A bad value is refused in the page, with the allowed range.
    _click(driver, "//button[@role='tab' and contains(., 'Generate')]", By.XPATH)
    _set_number(driver, "#vcq-seed", -5)
    _click(driver, "#vcq-generate")

    def seed_errors(d) -> list[str]:
        # The toast's text is read once, when it is found: read again later, a toast that is fading out gives ''.
        try:
            return [text for text in (e.text for e in d.find_elements(By.CSS_SELECTOR, ".toast-body")) if "-5" in text]
        except StaleElementReferenceException:  # a toast removed between find and read
            return []

    error = _wait(driver, seed_errors, what="the error for seed -5")[0]
    assert "minimum" in error.lower() or "out of range" in error.lower(), error

    print(f"browser interactions took {time.perf_counter() - started:.1f} s")
