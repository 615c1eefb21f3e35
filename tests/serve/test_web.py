"""The Gradio web UI (`llama3med.serve.web`) in a real headless Chromium: upload an image, ask twice, read the
answers on the page; and the examples gallery's files."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time

import pytest
from serve_helpers import ARTIFACTS, free_port, stop_process, wait_for_http

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def wait_until(condition, timeout: float = 90.0) -> None:
    """Poll `condition` (it reads the page) until true; the answer streams in, so it becomes true late."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in {timeout} s")
        time.sleep(0.2)


def visible(text: str) -> str:
    """Text as a browser shows it: control characters dropped, whitespace runs collapsed."""
    return " ".join(re.sub(r"[\x00-\x08\x0b-\x1f\x7f]", "", text).split())


@pytest.fixture(scope="module")
def web_url(tiny_model_dir, images, tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("web") / "web.log"
    examples = images["scan"].parent
    command = [
        sys.executable, "-m", "llama3med", "web", "--model", str(tiny_model_dir),
        "--port", str(port), "--examples", str(examples), "--max-new-tokens", "16",
    ]  # fmt: skip
    with log.open("w") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    wait_for_http(url, process, log)
    yield url
    stop_process(process)


def test_upload_ask_and_read_the_answer(web_url, tiny_api, images, tmp_path) -> None:
    if CHROMIUM is None:
        pytest.skip("no chromium binary on PATH: install Debian's `chromium` package to run the browser test")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (dev extra)")
    scan = images["scan"]
    first = tiny_api.chat(scan, "What does this image show?", max_new_tokens=16)
    history = [{"role": "user", "content": "What does this image show?"}, {"role": "assistant", "content": first}]
    second = tiny_api.chat(scan, "Is it normal?", history=history, max_new_tokens=16)

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS, viewport={"width": 1280, "height": 900}
        )
        try:
            page = browser.new_page()
            page.goto(web_url)
            page.locator("#image input[type=file]").set_input_files(str(scan))
            page.locator("#image img").first.wait_for(timeout=60_000)
            bot_messages = page.locator("#conversation [data-testid='bot']")
            for number, (question, expected) in enumerate([("What does this image show?", first), ("Is it normal?", second)], start=1):
                page.locator("#question textarea").fill(question)
                page.locator("#ask").click()
                wait_until(lambda n=number, e=expected: bot_messages.count() == n and visible(bot_messages.nth(n - 1).inner_text()) == visible(e))
                assert visible(bot_messages.nth(number - 1).inner_text()) == visible(expected)
            user_messages = page.locator("#conversation [data-testid='user']")
            assert [visible(t) for t in user_messages.all_inner_texts()] == ["What does this image show?", "Is it normal?"]
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "web_ui.png"), full_page=True)
        finally:
            browser.close()
    assert (ARTIFACTS / "web_ui.png").stat().st_size > 10_000


def test_example_images_are_the_image_files_of_a_folder_sorted_and_capped(tmp_path) -> None:
    from llama3med.serve.web import example_images

    for name in ("b.png", "a.JPG", "notes.txt", "c.tif", "d.dcm"):
        (tmp_path / name).write_bytes(b"")
    assert example_images(tmp_path) == [str(tmp_path / name) for name in ("a.JPG", "b.png", "c.tif")]
    assert example_images(tmp_path, limit=2) == [str(tmp_path / "a.JPG"), str(tmp_path / "b.png")]
    assert example_images(None) == []
    with pytest.raises(FileNotFoundError, match=r"examples folder .*missing does not exist"):
        example_images(tmp_path / "missing")
