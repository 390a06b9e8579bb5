"""Open a report page in headless Chromium and say whether it really works.

Talks the Chrome DevTools Protocol over ``--remote-debugging-pipe`` (file descriptors 3 and 4, messages
separated by NUL), so it needs no websocket library, no chromedriver, no network port and nothing
downloaded: only a ``chromium`` binary (Debian package ``chromium``).

>>> result = check_page("out/report.html", screenshot="out/report.png")   # doctest: +SKIP
>>> result.problems                                                        # doctest: +SKIP
[]
"""
from __future__ import annotations

import base64
import fcntl
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["find_chromium", "check_page", "PageCheck", "BrowserError", "CHROMIUM_FLAGS"]

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--mute-audio", "--hide-scrollbars",
    "--autoplay-policy=no-user-gesture-required", "--no-default-browser-check",
    "--disable-dev-shm-usage", "--remote-debugging-pipe",
]

_CANDIDATES = ("chromium", "chromium-browser", "google-chrome-stable", "google-chrome", "chrome")

# Runs in the page after `load`: waits until every <img> has decoded and every <audio> has loaded its
# metadata (or failed), then returns what the page looks like.
_PROBE_JS = r"""
(async () => {
  const deadline = Date.now() + %(timeout_ms)d;
  const audios = [...document.querySelectorAll('audio')];
  await Promise.all(audios.map(a => a.readyState >= 1 || a.error ? null : new Promise(res => {
    a.addEventListener('loadedmetadata', res, {once: true});
    a.addEventListener('error', res, {once: true});
    if (a.preload === 'none') a.load();
    setTimeout(res, Math.max(0, deadline - Date.now()));
  })));
  const imgs = [...document.querySelectorAll('img')];
  await Promise.all(imgs.map(i => i.decode().catch(() => null)));
  const srcKind = s => (s || '').split(',')[0].slice(0, 40);
  return JSON.stringify({
    title: document.title,
    h1: (document.querySelector('h1') || {}).textContent || null,
    tables: document.querySelectorAll('table').length,
    table_rows: document.querySelectorAll('tbody tr').length,
    svgs: document.querySelectorAll('svg').length,
    images: imgs.map(i => ({src: srcKind(i.currentSrc || i.src), complete: i.complete,
                            naturalWidth: i.naturalWidth, naturalHeight: i.naturalHeight,
                            shownWidth: i.getBoundingClientRect().width})),
    audio: audios.map(a => ({src: srcKind(a.currentSrc || a.src), readyState: a.readyState,
                             duration: a.duration, error: a.error ? a.error.code : null,
                             title: a.title})),
    scripts: document.querySelectorAll('script').length,
    width: document.documentElement.scrollWidth,
    height: document.documentElement.scrollHeight,
    viewport_width: window.innerWidth,
  });
})()
"""


class BrowserError(RuntimeError):
    """Chromium could not be started or stopped answering."""


@dataclass
class PageCheck:
    """What the browser saw. ``problems`` is empty when the page is fine."""

    url: str
    title: str | None = None
    page: dict = field(default_factory=dict)
    console: list[dict] = field(default_factory=list)      # {'source', 'level', 'text'}
    requests: list[str] = field(default_factory=list)      # every URL the page asked for (data: shortened)
    screenshot: Path | None = None

    @property
    def images(self) -> list[dict]:
        return self.page.get("images", [])

    @property
    def audio(self) -> list[dict]:
        return self.page.get("audio", [])

    @property
    def errors(self) -> list[dict]:
        return [m for m in self.console if m["level"] in ("error", "assert")]

    @property
    def problems(self) -> list[str]:
        out = []
        for i, im in enumerate(self.images):
            if not im.get("naturalWidth"):
                out.append(f"image {i} ({im.get('src')}) did not load")
        for i, au in enumerate(self.audio):
            dur = au.get("duration")
            if au.get("error") is not None or (au.get("readyState") or 0) < 1 or not dur or dur <= 0:
                out.append(f"audio {i} ({au.get('title')!r}) did not load: readyState={au.get('readyState')} "
                           f"duration={dur} error={au.get('error')}")
        out += [f"console {m['level']} ({m['source']}): {m['text']}" for m in self.errors]
        out += [f"page fetched a non-embedded resource: {u}" for u in self.external_requests]
        return out

    @property
    def external_requests(self) -> list[str]:
        return [u for u in self.requests if not u.startswith("data:") and u != self.url]


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome binary: ``$POCKETVQE_CHROMIUM`` or the first one on ``PATH``."""
    env = os.environ.get("POCKETVQE_CHROMIUM")
    if env:
        return env if os.access(env, os.X_OK) else None
    for name in _CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


class _Pipe:
    """CDP client over fds 3 (commands in) / 4 (replies out) of the browser process."""

    def __init__(self, binary: str, user_data_dir: str, width: int, height: int):
        cmd_r, cmd_w = os.pipe()
        resp_r, resp_w = os.pipe()
        # the child needs them exactly on fds 3 and 4: move our copies out of the way first. Python's
        # own fds are close-on-exec (PEP 446), so close_fds=False leaks nothing but the two dup2'ed ones.
        hi_r = fcntl.fcntl(cmd_r, fcntl.F_DUPFD_CLOEXEC, 10)
        hi_w = fcntl.fcntl(resp_w, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(cmd_r)
        os.close(resp_w)

        def child_fds() -> None:
            os.dup2(hi_r, 3)
            os.dup2(hi_w, 4)

        args = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={user_data_dir}",
                f"--window-size={width},{height}", "about:blank"]
        self._stderr = tempfile.TemporaryFile()
        try:
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=self._stderr, preexec_fn=child_fds, close_fds=False)
        finally:
            os.close(hi_r)
            os.close(hi_w)
        self._out = os.fdopen(cmd_w, "wb", buffering=0)
        self._in = resp_r
        self._next_id = 0
        self._replies: dict[int, dict] = {}
        self._events: queue.Queue = queue.Queue()
        self._cv = threading.Condition()
        self._closed = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        buf = b""
        while True:
            try:
                chunk = os.read(self._in, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                with self._cv:
                    self._closed = True
                    self._cv.notify_all()
                return
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                if "id" in msg:
                    with self._cv:
                        self._replies[msg["id"]] = msg
                        self._cv.notify_all()
                else:
                    self._events.put(msg)

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 30.0) -> dict:
        self._next_id += 1
        mid = self._next_id
        msg: dict[str, Any] = {"id": mid, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        try:
            self._out.write(json.dumps(msg).encode() + b"\0")
        except (BrokenPipeError, OSError) as exc:
            raise BrowserError(f"chromium went away ({exc}); its log:\n{self.stderr_tail()}") from None
        end = time.monotonic() + timeout
        with self._cv:
            while mid not in self._replies:
                left = end - time.monotonic()
                if self._closed or left <= 0:
                    raise BrowserError(f"no answer to {method} within {timeout:.0f} s; chromium log:\n"
                                       f"{self.stderr_tail()}")
                self._cv.wait(left)
            reply = self._replies.pop(mid)
        if "error" in reply:
            raise BrowserError(f"{method} failed: {reply['error']}")
        return reply.get("result", {})

    def events(self) -> list[dict]:
        out = []
        while True:
            try:
                out.append(self._events.get_nowait())
            except queue.Empty:
                return out

    def stderr_tail(self, n: int = 3000) -> str:
        try:
            self._stderr.seek(0)
            return self._stderr.read().decode(errors="replace")[-n:]
        except (OSError, ValueError):
            return ""

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                try:
                    self.send("Browser.close", timeout=5)
                except BrowserError:
                    pass
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=10)
        finally:
            try:
                self._out.close()
            except OSError:
                pass
            self._reader.join(timeout=5)
            try:
                os.close(self._in)
            except OSError:
                pass
            self._stderr.close()


def _wait_loaded(cdp: _Pipe, session: str, timeout: float) -> None:
    """Poll until the navigated document (not the initial about:blank) has fired `load`."""
    end = time.monotonic() + timeout
    expr = "document.readyState + ' ' + location.protocol"
    while True:
        state = cdp.send("Runtime.evaluate", {"expression": expr, "returnByValue": True}, session=session,
                         timeout=timeout)
        if state.get("result", {}).get("value") == "complete file:":
            return
        if time.monotonic() > end:
            raise BrowserError(f"page did not finish loading within {timeout:.0f} s "
                               f"(state: {state.get('result', {}).get('value')}); chromium log:\n{cdp.stderr_tail()}")
        time.sleep(0.05)


def check_page(path: str | os.PathLike, *, screenshot: str | os.PathLike | None = None,
               width: int = 1280, height: int = 900, timeout: float = 30.0,
               chromium: str | None = None) -> PageCheck:
    """Load ``path`` in a fresh headless Chromium profile and report images, audio, console and requests.

    ``screenshot`` writes a full-page PNG. Raises :class:`BrowserError` when Chromium is missing or stuck.
    """
    binary = chromium or find_chromium()
    if not binary:
        raise BrowserError("no chromium binary found: install it (Debian: apt-get install chromium) "
                           "or point POCKETVQE_CHROMIUM at one")
    path = Path(path).resolve()
    url = path.as_uri()
    result = PageCheck(url=url)
    with tempfile.TemporaryDirectory(prefix="pocketvqe-chromium-") as profile:
        cdp = _Pipe(binary, profile, width, height)
        try:
            target = cdp.send("Target.createTarget", {"url": "about:blank"}, timeout=timeout)["targetId"]
            session = cdp.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Page", "Runtime", "Log", "Network"):
                cdp.send(f"{domain}.enable", session=session)
            cdp.send("Emulation.setDeviceMetricsOverride", {"width": width, "height": height,
                                                           "deviceScaleFactor": 1, "mobile": False},
                     session=session)
            nav = cdp.send("Page.navigate", {"url": url}, session=session, timeout=timeout)
            if nav.get("errorText"):
                raise BrowserError(f"chromium could not open {url}: {nav['errorText']}")
            _wait_loaded(cdp, session, timeout)
            probe = _PROBE_JS % {"timeout_ms": int(timeout * 1000 * 0.5)}
            res = cdp.send("Runtime.evaluate", {"expression": probe, "awaitPromise": True,
                                                "returnByValue": True}, session=session, timeout=timeout)
            if "exceptionDetails" in res:
                raise BrowserError(f"page probe failed: {res['exceptionDetails']}")
            result.page = json.loads(res["result"]["value"])
            result.title = result.page.get("title")
            if screenshot is not None:
                full_h = max(int(result.page.get("height") or height), height)
                cdp.send("Emulation.setDeviceMetricsOverride", {"width": width, "height": min(full_h, 16000),
                                                               "deviceScaleFactor": 1, "mobile": False},
                         session=session)
                shot = cdp.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True},
                                session=session, timeout=timeout)
                out = Path(screenshot)
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(base64.b64decode(shot["data"]))
                result.screenshot = out
            time.sleep(0.2)  # late console messages (e.g. media errors) arrive as events
            seen = cdp.events()
        finally:
            cdp.close()
    for ev in seen:
        method, p = ev.get("method"), ev.get("params", {})
        if method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
            result.console.append({"source": "console", "level": p.get("type", "log"), "text": text})
        elif method == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            text = (d.get("exception") or {}).get("description") or d.get("text", "")
            result.console.append({"source": "exception", "level": "error", "text": text})
        elif method == "Log.entryAdded":
            entry = p.get("entry", {})
            result.console.append({"source": entry.get("source", "log"), "level": entry.get("level", "info"),
                                   "text": entry.get("text", "") + (f" ({entry['url']})" if entry.get("url") else "")})
        elif method == "Network.requestWillBeSent":
            u = p.get("request", {}).get("url", "")
            result.requests.append(u[:60] + "…" if u.startswith("data:") and len(u) > 60 else u)
        elif method == "Network.loadingFailed":
            result.console.append({"source": "network", "level": "error",
                                   "text": f"load failed: {p.get('errorText')} ({p.get('type')})"})
    return result
