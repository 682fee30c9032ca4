"""The playground (GET /) in headless Chromium against a live `mathtune serve` on a tiny model:
a question typed into the page streams an answer, the final-answer highlight works, and a
screenshot is kept (in tmp, and in $MATHTUNE_ARTIFACTS when set).

Run: .venv/bin/python -m pytest tests/test_serve_playground.py -q
Chromium is driven over the DevTools protocol on a pipe (--remote-debugging-pipe; stdlib only).
Without chromium the test skips, except under CI=true, where it fails.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from test_serve import LiveServer  # noqa: E402

from mathtune.generation import HFGenerator  # noqa: E402
from mathtune.grading import extract_answer  # noqa: E402
from mathtune.serve.app import create_app  # noqa: E402

QUESTION = "What is 12*7?"
# text -> the HTML the playground renders it as (math subset; the last box is the marked answer)
RENDERED = {
    "so x = \\boxed{\\frac{1}{2}} in the end":
        'so x = <span class="math"><mark class="answer"><span class="boxed" data-box="0"><span class="frac">'
        '<span>1</span><span>2</span></span></span></mark></span> in the end',
    "\\(x^{2} \\times 3\\) then \\boxed{4} and \\boxed{5}":
        '<span class="math">x<sup>2</sup> \u00d7 3</span> then <span class="math"><span class="boxed" data-box="0">4'
        '</span></span> and <span class="math"><mark class="answer"><span class="boxed" data-box="1">5</span></mark></span>',
    "costs $5 and $10 < 3": "costs $5 and $10 &lt; 3",  # money is not math; text is escaped
    "unclosed \\(x^2": "unclosed \\(x^2",  # mid-stream: stays text until the math closes
}


def _chromium() -> str:
    exe = shutil.which("chromium")
    if exe is None:
        why = "chromium not installed (apt-get install -y chromium)"
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(f"{why}: under CI the playground must be tested in a real browser")
        pytest.skip(why)
    return exe


class Browser:
    """Headless Chromium and a DevTools-protocol session on its first page, over fds 3/4."""

    def __init__(self, exe: str, url: str, profile: Path) -> None:
        to_chrome_r, self._w = os.pipe()
        self._r, from_chrome_w = os.pipe()

        def fds() -> None:  # chromium reads commands on fd 3 and writes replies on fd 4
            # via high copies first: the pipe ends may themselves be fds 3 or 4
            r, w = (fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in (to_chrome_r, from_chrome_w))
            os.dup2(r, 3)
            os.dup2(w, 4)

        self.proc = subprocess.Popen(
            [exe, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--window-size=1000,700", url],
            preexec_fn=fds, close_fds=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._id, self._buf, self.session = 0, b"", None
        deadline = time.time() + 30
        while True:
            pages = [t for t in self.call("Target.getTargets")["targetInfos"] if t["type"] == "page"]
            if pages:
                break
            assert time.time() < deadline, "chromium opened no page"
            time.sleep(0.1)
        self.session = self.call("Target.attachToTarget", targetId=pages[0]["targetId"], flatten=True)["sessionId"]

    def call(self, method: str, **params) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params}
        if self.session and not method.startswith(("Target.", "Browser.")):
            msg["sessionId"] = self.session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        while True:
            while b"\0" not in self._buf:
                chunk = os.read(self._r, 1 << 16)
                assert chunk, "chromium closed the DevTools pipe"
                self._buf += chunk
            raw, self._buf = self._buf.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._id:
                assert "error" not in reply, reply
                return reply["result"]

    def js(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30.0):
        deadline = time.time() + timeout
        while not (value := self.js(expression)):
            assert time.time() < deadline, f"timed out waiting for {expression}"
            time.sleep(0.05)
        return value

    def close(self) -> None:
        with contextlib.suppress(AssertionError, OSError):
            self.call("Browser.close")
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        os.close(self._w)
        os.close(self._r)


def test_playground_streams_an_answer_in_headless_chromium(tiny_model_dir, tmp_path):
    exe = _chromium()
    gen = HFGenerator(str(tiny_model_dir), dtype="fp32", threads=1)
    with LiveServer(create_app(gen, model_name="tiny")) as live:
        # what the page should show: the same request, not streamed
        expected = live.post("/v1/chat/completions", {
            "model": "tiny", "messages": [{"role": "user", "content": QUESTION}], "temperature": 0,
            "max_tokens": 256, "mathtune": {"prompt": "chat-boxed"}})["choices"][0]["message"]["content"]
        browser = Browser(exe, live.url + "/", tmp_path / "profile")
        try:
            browser.wait_for("document.getElementById('model')?.textContent === 'tiny'")  # page up, /v1/models read
            browser.js(f"document.getElementById('prompt').value = {json.dumps(QUESTION)};"
                       "document.getElementById('ask').requestSubmit(); true")
            browser.wait_for("document.querySelector('.msg.assistant.done') !== null")
            shown = browser.js("""(() => {
                const el = document.querySelector('.msg.assistant.done');
                const fin = el.querySelector('.final');
                return {user: document.querySelector('.msg.user').textContent,
                        text: el.dataset.text, shown: el.textContent,
                        final: fin.textContent, error: document.querySelector('.msg.error') !== null};
            })()""")
            # math rendering and the final-answer highlight on known texts, by the page's own renderer
            texts = json.dumps(list(RENDERED))
            rendered = browser.js(f"(() => {{ const d = document.createElement('div'); return {texts}.map(t => {{"
                                  " render(d, t); return d.innerHTML; }); })()")
            browser.js("window.scrollTo(0, 0); true")  # the question and the start of the answer
            png = base64.b64decode(browser.call("Page.captureScreenshot", format="png")["data"])
        finally:
            browser.close()
    assert shown["user"] == QUESTION and not shown["error"]
    assert shown["text"] == expected  # the streamed answer, as the server generates it
    assert shown["shown"].startswith(expected.strip()[:20])  # and on the page (plain text: no math in it)
    answer = extract_answer(expected)
    assert shown["final"] == ("no final answer found" if answer is None else f"final answer: {answer}")
    assert dict(zip(RENDERED, rendered, strict=True)) == RENDERED

    from PIL import Image

    shot = tmp_path / "playground.png"
    shot.write_bytes(png)
    img = Image.open(shot).convert("L")
    assert img.size[0] == 1000 and sum(1 for c in img.histogram() if c) > 8  # a rendered page, not blank
    if os.environ.get("MATHTUNE_ARTIFACTS"):
        dest = Path(os.environ["MATHTUNE_ARTIFACTS"])
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, dest / "playground.png")


def test_playground_model_picker_sends_the_chosen_adapter(tiny_model_dir, tmp_path):
    """With an adapter served beside the base, the page shows a picker listing both; choosing the
    adapter and asking streams the adapter's answer (which differs from the base's)."""
    from test_serve_adapters import make_adapter

    from mathtune.serve.adapters import load_adapters

    exe = _chromium()
    base = HFGenerator(str(tiny_model_dir), dtype="fp32", threads=1)
    adapters = load_adapters(base, {"alpha": make_adapter(tiny_model_dir, tmp_path / "alpha", seed=1)})
    with LiveServer(create_app(base, model_name="tiny", adapters=adapters)) as live:
        def answer(model: str) -> str:
            return live.post("/v1/chat/completions", {
                "model": model, "messages": [{"role": "user", "content": QUESTION}], "temperature": 0,
                "max_tokens": 256, "mathtune": {"prompt": "chat-boxed"}})["choices"][0]["message"]["content"]

        expected, base_text = answer("alpha"), answer("tiny")
        assert expected != base_text  # the picker's choice is visible in the answer
        browser = Browser(exe, live.url + "/", tmp_path / "profile")
        try:
            options = browser.wait_for("(() => { const s = document.getElementById('model-choice');"
                                       " return s && !s.hidden && s.options.length ? [...s.options].map(o => o.value)"
                                       " : null; })()")
            browser.js("(() => { const s = document.getElementById('model-choice'); s.value = 'alpha';"
                       " s.dispatchEvent(new Event('change')); return true; })()")
            shown_model = browser.js("document.getElementById('model').textContent")
            browser.js(f"document.getElementById('prompt').value = {json.dumps(QUESTION)};"
                       "document.getElementById('ask').requestSubmit(); true")
            browser.wait_for("document.querySelector('.msg.assistant.done') !== null")
            text = browser.js("document.querySelector('.msg.assistant.done').dataset.text")
            png = base64.b64decode(browser.call("Page.captureScreenshot", format="png")["data"])
        finally:
            browser.close()
    assert options == ["tiny", "alpha"] and shown_model == "alpha"
    assert text == expected
    if os.environ.get("MATHTUNE_ARTIFACTS"):
        dest = Path(os.environ["MATHTUNE_ARTIFACTS"])
        dest.mkdir(parents=True, exist_ok=True)
        (dest / "playground-picker.png").write_bytes(png)
