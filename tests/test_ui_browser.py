"""The web UI in a real browser: `vlkit demo` started as a user would, driven in headless Chromium
(Debian's `chromium` + `chromium-driver`, installed by scripts/setup.sh) through selenium.

Chat: upload an image, ask, and the reply the model streams appears, the same text as
`GenerativeModel.chat` (and the caption tab's as `caption`); classify: the probabilities appear,
the same as `ContrastiveModel.classify`; search: a gallery of the example images.
The browser resolves no host but 127.0.0.1, and the page must load nothing from elsewhere (it works
offline). Screenshots are saved under the test's tmp_path and their paths printed.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

import vlkit
from vlkit.data.scenes import Scenes, ScenesConfig
from vlkit.decoding import Decoding
from vlkit.serve.server import free_port

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (CHROMIUM and CHROMEDRIVER),
        reason="needs Debian's chromium and chromium-driver (scripts/setup.sh installs them: "
        "apt-get install chromium chromium-driver)",
    ),
]
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1300",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",  # offline: no other host exists
]
QUESTION = "What color is the circle?"


@pytest.fixture
def browser() -> Iterator:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    with tempfile.TemporaryDirectory(prefix="vlkit-chromium-") as profile:
        for flag in [*FLAGS, f"--user-data-dir={profile}"]:
            options.add_argument(flag)
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        try:
            yield driver
        finally:
            driver.quit()


@pytest.fixture(scope="module")
def talking_vlm_run(tmp_path_factory) -> Path:
    """The tiny VLM of tests/conftest.py, trained long enough (400 steps, ~15 s) that its greedy
    reply is words rather than an immediate end of turn."""
    from conftest import make_tiny_vlm_cfg

    from vlkit.train.loop import train

    cfg = make_tiny_vlm_cfg()
    t = cfg.train
    t.out_dir = str(tmp_path_factory.mktemp("talking-vlm") / "run")
    t.steps, t.save_every, t.log_every, t.lr = 400, 400, 100, 3e-3
    return train(cfg, progress=False)


@pytest.fixture
def demo(tmp_path) -> Iterator:
    """start(MODEL) → the URL of `vlkit demo MODEL` running on a free loopback port (ask for this
    fixture before `browser`, so the browser has closed its pages when the server is stopped)."""
    servers = []

    def start(model: Path) -> str:
        port = free_port()
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
        command = [sys.executable, "-m", "vlkit", "demo", str(model), "--port", str(port)]
        server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
        servers.append(server)
        line = server.stdout.readline()  # printed once the model is loaded
        assert line.startswith("ready: demo of"), f"vlkit demo said {line!r} (exit {server.poll()})"
        url, deadline = f"http://127.0.0.1:{port}/", time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5):
                    return url
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "vlkit demo did not start"
                time.sleep(0.3)

    yield start
    for server in servers:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:  # a page's open event stream holds a graceful stop
            server.kill()
            server.wait(timeout=15)


def _scene(path: Path) -> Path:
    Image.fromarray(Scenes(ScenesConfig(image_size=64, seed=5))[0]["image"]).save(path)
    return path


def _wait(driver, condition, what: str, timeout: float = 90):
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)
    except Exception:
        driver.save_screenshot(str(Path(tempfile.gettempdir()) / "vlkit-ui-timeout.png"))
        raise AssertionError(f"the page never showed {what}") from None


def _text(driver, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    return " ".join(driver.find_element(By.ID, element_id).text.split())


def _upload(driver, component_id: str, image: Path) -> None:
    from selenium.webdriver.common.by import By

    selector = f"#{component_id} input[type=file]"
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, selector), f"the upload box of #{component_id}")
    driver.find_element(By.CSS_SELECTOR, selector).send_keys(str(image))
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, f"#{component_id} img"), "the uploaded image")


def _tab(driver, name: str) -> None:
    from selenium.webdriver.common.by import By

    tab = next(t for t in driver.find_elements(By.CSS_SELECTOR, "button[role=tab]") if t.text == name)
    tab.click()


def _only_loopback_loaded(driver, url: str) -> None:
    loaded = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert loaded and all(u.startswith(url.rstrip("/")) for u in loaded), [
        u for u in loaded if not u.startswith(url.rstrip("/"))
    ]


def _screenshot(driver, path: Path) -> None:
    driver.save_screenshot(str(path))
    print(f"screenshot: {path}")
    assert path.stat().st_size > 0


def test_chat_streams_the_models_reply_about_an_uploaded_image(talking_vlm_run, demo, browser, tmp_path):
    from selenium.webdriver.common.by import By

    image = _scene(tmp_path / "scene.png")
    messages = [
        {
            "role": "user",
            "content": [{"type": "image", "image": str(image)}, {"type": "text", "text": QUESTION}],
        }
    ]
    expected = " ".join(vlkit.load(talking_vlm_run).chat(messages, Decoding(max_new_tokens=64)).split())
    assert expected, "the trained tiny VLM should say something"

    url = demo(talking_vlm_run)
    browser.get(url)
    _wait(browser, lambda d: str(talking_vlm_run) in _text(d, "model-info"), "the model's name")
    assert "generative" in _text(browser, "model-info")
    _upload(browser, "chat-image", image)
    browser.find_element(By.CSS_SELECTOR, "#chat-question textarea").send_keys(QUESTION)
    browser.find_element(By.ID, "chat-ask").click()
    _wait(browser, lambda d: QUESTION in _text(d, "chat-log"), "the question in the conversation")
    _wait(browser, lambda d: _text(d, "chat-log").endswith(expected), f"the reply {expected!r}")
    _only_loopback_loaded(browser, url)
    _screenshot(browser, tmp_path / "ui-chat.png")

    caption = vlkit.load(talking_vlm_run).caption([str(image)])[0]
    _tab(browser, "Caption")
    tabs = [t.text for t in browser.find_elements(By.CSS_SELECTOR, "button[role=tab]")]
    assert tabs == ["Chat", "Caption"], tabs
    _upload(browser, "caption-image", image)
    browser.find_element(By.ID, "caption-run").click()
    box = browser.find_element(By.CSS_SELECTOR, "#caption-text textarea")
    _wait(browser, lambda d: box.get_attribute("value") == caption, f"the caption {caption!r}")
    _screenshot(browser, tmp_path / "ui-caption.png")


def test_classify_shows_the_probabilities_of_the_labels(tiny_run, demo, browser, tmp_path):
    from selenium.webdriver.common.by import By

    image, labels = _scene(tmp_path / "scene.png"), ["red circle", "blue star", "green square"]
    result = vlkit.load(tiny_run).classify([str(image)], labels)
    shown = {label: f"{int(p * 100 + 0.5)}%" for label, p in zip(labels, result.probs[0])}

    url = demo(tiny_run)
    browser.get(url)
    _wait(browser, lambda d: "contrastive" in _text(d, "model-info"), "the model's kind")
    _upload(browser, "classify-image", image)
    box = browser.find_element(By.CSS_SELECTOR, "#classify-labels textarea")
    box.clear()
    box.send_keys(", ".join(labels))
    browser.find_element(By.ID, "classify-run").click()
    _wait(browser, lambda d: all(label in _text(d, "classify-probs") for label in labels), "the labels' bars")
    probs = _text(browser, "classify-probs")
    for label, percent in shown.items():
        assert f"{label} {percent}" in probs, (label, percent, probs)
    assert probs.startswith(f"Probabilities {result.top[0]}")  # the best label as the heading
    _only_loopback_loaded(browser, url)
    _screenshot(browser, tmp_path / "ui-classify.png")

    _tab(browser, "Search")
    browser.find_element(By.ID, "search-run").click()
    shown = (
        "return [...document.querySelectorAll('#search-gallery img')].filter(i => i.naturalWidth > 0).length"
    )
    _wait(browser, lambda d: d.execute_script(shown) >= 6, "6 images in the gallery")
    assert "scene-" in _text(browser, "search-gallery")  # the example images, each with its score
    _screenshot(browser, tmp_path / "ui-search.png")
