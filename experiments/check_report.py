"""Opens a demo `report.html` in headless Chromium and checks every audio element and image loads.

    python experiments/check_report.py runs/demo/report.html

Needs Debian's `chromium` (apt-get install chromium). The report's folder is served on
127.0.0.1 (a random free port); a checker page loads the report in a same-origin iframe, waits
for every <audio> to report `canplaythrough` (or an error) and every <img> to load, and writes
the verdicts into its DOM, which Chromium prints with --dump-dom. Exit code 0 when all load.
Not part of CI (it needs a browser); `make demo` users can run it by hand.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading

CHECKER = """<!doctype html><html><body><pre id="out">pending</pre>
<iframe id="f" src="REPORT" style="width:1200px;height:800px"></iframe>
<script>
const out = document.getElementById('out');
document.getElementById('f').addEventListener('load', () => {
  const doc = document.getElementById('f').contentDocument;
  const audios = [...doc.querySelectorAll('audio')];
  const images = [...doc.querySelectorAll('img')];
  const results = [];
  const waits = audios.map(a => new Promise(resolve => {
    const done = ok => { results.push({kind: 'audio', src: a.getAttribute('src'), ok,
                                       duration: a.duration}); resolve(); };
    if (a.readyState >= 3) return done(true);
    a.addEventListener('canplaythrough', () => done(true), {once: true});
    a.addEventListener('error', () => done(false), {once: true});
    a.load();
  })).concat(images.map(img => new Promise(resolve => {
    const done = ok => { results.push({kind: 'img', src: img.getAttribute('src'), ok,
                                       width: img.naturalWidth}); resolve(); };
    if (img.complete) return done(img.naturalWidth > 0);
    img.addEventListener('load', () => done(img.naturalWidth > 0), {once: true});
    img.addEventListener('error', () => done(false), {once: true});
  })));
  Promise.all(waits).then(() => { out.textContent = 'RESULTS ' + JSON.stringify(results); });
});
</script></body></html>"""


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
  def log_message(self, *args):
    pass


def find_chromium() -> str:
  for name in ("chromium", "chromium-browser", "google-chrome"):
    path = shutil.which(name)
    if path:
      return path
  sys.exit("chromium not found: apt-get install chromium")


def check(report: str, timeout_ms: int = 20000) -> list[dict]:
  folder = os.path.dirname(os.path.abspath(report))
  checker_dir = tempfile.mkdtemp(prefix="check_report_", dir=folder)
  checker = os.path.join(checker_dir, "check.html")
  with open(checker, "w") as f:
    f.write(CHECKER.replace("REPORT", "../" + os.path.basename(report)))
  handler = functools.partial(_QuietHandler, directory=folder)
  server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
  threading.Thread(target=server.serve_forever, daemon=True).start()
  url = f"http://127.0.0.1:{server.server_port}/{os.path.basename(checker_dir)}/check.html"
  try:
    with tempfile.TemporaryDirectory() as profile:
      proc = subprocess.run(
          [find_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", "--autoplay-policy=no-user-gesture-required",
           f"--user-data-dir={profile}", f"--virtual-time-budget={timeout_ms}", "--dump-dom",
           url], capture_output=True, text=True, timeout=120)
  finally:
    server.shutdown()
    shutil.rmtree(checker_dir, ignore_errors=True)
  match = re.search(r"RESULTS (\[.*?\])</pre>", proc.stdout.replace("&quot;", '"'))
  if not match:
    sys.exit(f"the checker page did not finish: {proc.stdout[-500:]} {proc.stderr[-500:]}")
  return json.loads(match.group(1))


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("report", help="path to report.html")
  args = parser.parse_args()
  results = check(args.report)
  bad = [r for r in results if not r["ok"]]
  for r in results:
    print(("ok  " if r["ok"] else "BAD ") + f"{r['kind']:<5} {r['src']}")
  audios = sum(r["kind"] == "audio" for r in results)
  images = sum(r["kind"] == "img" for r in results)
  print(f"{audios} audio element(s), {images} image(s), {len(bad)} failed to load")
  return 1 if bad or not results else 0


if __name__ == "__main__":
  sys.exit(main())
