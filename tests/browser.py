"""Headless Chromium driven over the DevTools protocol, with the standard library only (no websocket package).

    with Browser() as b:
      b.open("file:///tmp/run/report.html")
      b.wait_for("document.body.dataset.status !== 'loading'")
      b.errors            # console.error calls, uncaught exceptions and the browser's own error log entries
      png = b.screenshot(clip)

WebGL runs on SwiftShader (software), so a page's 3D view renders on a machine without a GPU.
"""

import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import urllib.request

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
  """The path of a Chromium (or Chrome) binary on PATH, or None."""
  for name in CANDIDATES:
    path = shutil.which(name)
    if path:
      return path
  return None


class WebSocket:
  """A minimal RFC 6455 client: text frames out (masked), text frames in (reassembling fragments)."""

  def __init__(self, url: str, timeout: float):
    assert url.startswith("ws://"), url
    host_port, path = url[len("ws://") :].split("/", 1)
    host, port = host_port.rsplit(":", 1)
    self.sock = socket.create_connection((host, int(port)), timeout=timeout)
    key = base64.b64encode(os.urandom(16)).decode()
    self.sock.sendall(
      (
        f"GET /{path} HTTP/1.1\r\nHost: {host_port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
      ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
      chunk = self.sock.recv(1)
      if not chunk:
        raise ConnectionError("the browser closed the DevTools connection during the handshake")
      head += chunk
    if b" 101 " not in head.split(b"\r\n", 1)[0]:
      raise ConnectionError(f"DevTools handshake refused: {head[:200]!r}")

  def _read(self, n: int) -> bytes:
    data = b""
    while len(data) < n:
      chunk = self.sock.recv(n - len(data))
      if not chunk:
        raise ConnectionError("the browser closed the DevTools connection")
      data += chunk
    return data

  def send(self, text: str) -> None:
    payload = text.encode()
    n = len(payload)
    if n < 126:
      header = struct.pack("!BB", 0x81, 0x80 | n)
    elif n < 1 << 16:
      header = struct.pack("!BBH", 0x81, 0x80 | 126, n)
    else:
      header = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    self.sock.sendall(header + mask + masked)

  def recv(self) -> str:
    message = b""
    while True:
      b0, b1 = self._read(2)
      n = b1 & 0x7F
      if n == 126:
        (n,) = struct.unpack("!H", self._read(2))
      elif n == 127:
        (n,) = struct.unpack("!Q", self._read(8))
      payload = self._read(n)
      opcode = b0 & 0x0F
      if opcode == 0x8:
        raise ConnectionError("the browser closed the DevTools connection")
      if opcode in (0x9, 0xA):  # ping / pong: the server does not ping here, ignore.
        continue
      message += payload
      if b0 & 0x80:
        return message.decode()

  def close(self) -> None:
    self.sock.close()


class Browser:
  """One headless Chromium with one page, its console errors collected as events arrive."""

  def __init__(self, width: int = 1200, height: int = 900, timeout: float = 60.0):
    self.binary = find_chromium()
    if self.binary is None:
      raise FileNotFoundError(f"no Chromium on PATH (looked for {', '.join(CANDIDATES)})")
    self.width, self.height, self.timeout = width, height, timeout
    self.errors: list[str] = []  # Console errors, exceptions and error log entries, as text.
    self.messages: list[str] = []  # Every console message and log entry, for diagnosis.
    self._id = 0

  def __enter__(self):
    self.profile = tempfile.mkdtemp(prefix="chromium_profile_")
    args = [
      self.binary,
      "--headless",
      "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start.
      "--disable-gpu",
      "--use-angle=swiftshader",  # Software WebGL.
      "--enable-unsafe-swiftshader",
      "--no-first-run",
      "--no-default-browser-check",
      "--disable-extensions",
      "--disable-background-networking",
      "--autoplay-policy=no-user-gesture-required",
      f"--window-size={self.width},{self.height}",
      f"--user-data-dir={self.profile}",
      "--remote-debugging-port=0",
      "about:blank",
    ]
    # Chromium's own log goes to a file: a pipe nobody reads would fill and stall the browser.
    self.log = open(os.path.join(self.profile, "chromium.log"), "w+")
    self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=self.log)
    try:
      self.ws = WebSocket(self._page_url(), self.timeout)
      for domain in ("Page", "Runtime", "Log"):
        self.call(f"{domain}.enable")
      self.call(
        "Emulation.setDeviceMetricsOverride",
        width=self.width,
        height=self.height,
        deviceScaleFactor=1,
        mobile=False,
      )
    except BaseException:
      self.__exit__(None, None, None)
      raise
    return self

  def _page_url(self) -> str:
    """The page target's DevTools websocket, once the browser has written its port."""
    port_file = os.path.join(self.profile, "DevToolsActivePort")
    deadline = time.monotonic() + self.timeout
    while not os.path.exists(port_file) or not open(port_file).read().strip():
      if self.process.poll() is not None:
        self.log.seek(0)
        raise RuntimeError(f"Chromium exited ({self.process.returncode}): {self.log.read()[-2000:]}")
      if time.monotonic() > deadline:
        raise TimeoutError("Chromium did not open its DevTools port")
      time.sleep(0.1)
    port = int(open(port_file).read().split()[0])
    while True:
      targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=self.timeout))
      pages = [t for t in targets if t.get("type") == "page"]
      if pages:
        return pages[0]["webSocketDebuggerUrl"]
      if time.monotonic() > deadline:
        raise TimeoutError("Chromium opened no page")
      time.sleep(0.1)

  def __exit__(self, *exc):
    if getattr(self, "ws", None) is not None:
      self.ws.close()
    self.process.terminate()
    try:
      self.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
      self.process.kill()
      self.process.wait()
    self.log.close()
    shutil.rmtree(self.profile, ignore_errors=True)

  def _event(self, message: dict) -> None:
    method, params = message.get("method"), message.get("params", {})
    if method == "Runtime.consoleAPICalled":
      text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
      self.messages.append(f"console.{params.get('type')}: {text}")
      if params.get("type") in ("error", "assert"):
        self.errors.append(f"console.{params['type']}: {text}")
    elif method == "Runtime.exceptionThrown":
      details = params.get("exceptionDetails", {})
      text = details.get("exception", {}).get("description") or details.get("text", "")
      self.messages.append(f"exception: {text}")
      self.errors.append(f"exception: {text}")
    elif method == "Log.entryAdded":
      entry = params.get("entry", {})
      text = f"{entry.get('source')} {entry.get('level')}: {entry.get('text')} {entry.get('url', '')}".strip()
      self.messages.append(text)
      if entry.get("level") == "error":
        self.errors.append(text)

  def call(self, method: str, **params) -> dict:
    """Sends one DevTools command and returns its result, handling the events that arrive meanwhile."""
    self._id += 1
    self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
    while True:
      message = json.loads(self.ws.recv())
      if message.get("id") == self._id:
        if "error" in message:
          raise RuntimeError(f"{method}: {message['error']}")
        return message.get("result", {})
      self._event(message)

  def open(self, url: str) -> None:
    """Navigates to url and waits for its load event."""
    self.call("Page.navigate", url=url)
    self.wait_for(f"location.href === {json.dumps(url)} && document.readyState === 'complete'")

  def evaluate(self, expression: str):
    """The value of a JavaScript expression in the page (JSON-serialisable values only)."""
    result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
    if "exceptionDetails" in result:
      raise RuntimeError(f"{expression}: {result['exceptionDetails'].get('text')}")
    return result["result"].get("value")

  def wait_for(self, expression: str, timeout: float | None = None) -> None:
    """Polls until the expression is truthy in the page; TimeoutError naming it otherwise."""
    deadline = time.monotonic() + (timeout or self.timeout)
    while True:
      try:
        if self.evaluate(expression):
          return
      except RuntimeError:
        pass  # The page is still loading (no document.body yet).
      if time.monotonic() > deadline:
        raise TimeoutError(f"{expression!r} did not become true in the page; its messages: {self.messages[-20:]}")
      time.sleep(0.2)

  def screenshot(self, clip: dict | None = None) -> bytes:
    """A PNG of the viewport, or of clip {x, y, width, height} in page coordinates."""
    params = {"format": "png", "captureBeyondViewport": clip is not None}
    if clip is not None:
      params["clip"] = {**clip, "scale": 1}
    return base64.b64decode(self.call("Page.captureScreenshot", **params)["data"])
