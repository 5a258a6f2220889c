"""Capture what the real vendor libraries send, into the files next to this one.

    .venv/bin/python tests/proxy/vendors/wire/capture.py

Headless Chromium (Debian's, as the browser tests) loads a page that runs posthog-js,
mixpanel-browser and analytics-next from tests/js/node_modules against this script's own
server on 127.0.0.1, which records every request and answers as the vendor does. Each
request is written as ``<name>.body`` (the bytes as sent) and ``<name>.json`` (method, path,
query, content type). The vendor unit tests read these files; run this again after updating
tests/js. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from playwright.sync_api import sync_playwright

HERE = Path(__file__).resolve().parent
NODE = HERE.parents[2] / "js" / "node_modules"
CHROMIUM = "/usr/bin/chromium"
UA = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
      "Chrome/126.0.0.0 Safari/537.36")
SCRIPTS = {
    "/js/posthog.js": NODE / "posthog-js/dist/array.full.js",
    "/js/mixpanel.js": NODE / "mixpanel-browser/dist/mixpanel.umd.js",
    "/js/segment.js": NODE / "@segment/analytics-next/dist/umd/index.js",
}
ANSWERS = {"/ph/": b'{"status": 1}', "/mp/": b'{"status": 1, "error": null}',
           "/seg/": b'{"success": true}'}
# One page per capture: (file name prefix, script body).
PAGES = {
    "posthog": """
posthog.init('phc_test', {api_host: location.origin + '/ph', advanced_disable_flags: true,
  disable_surveys: true, disable_session_recording: true, autocapture: false,
  disable_external_dependency_loading: true, opt_out_useragent_filter: true,
  person_profiles: 'always'});
posthog.identify('u_42', {email: 'Ann@Example.com', name: 'Ann'});
posthog.capture('signup', {plan: 'pro', email: 'ann@example.com', note: 'call +1 555 010 0000'});
posthog.capture('beacon', {plan: 'pro'}, {transport: 'sendBeacon'});
""",
    "posthog_json": """
posthog.init('phc_test', {api_host: location.origin + '/ph', advanced_disable_flags: true,
  disable_surveys: true, disable_session_recording: true, autocapture: false,
  disable_external_dependency_loading: true, opt_out_useragent_filter: true,
  disable_compression: true, capture_pageview: false});
posthog.capture('signup', {plan: 'pro', email: 'ann@example.com'});
posthog.capture('beacon', {plan: 'pro'}, {transport: 'sendBeacon'});
""",
    "mixpanel": """
mixpanel.init('mp_token', {api_host: location.origin + '/mp', track_pageview: true,
  batch_flush_interval_ms: 300});
mixpanel.identify('u_42');
mixpanel.people.set({$email: 'ann@example.com'});
mixpanel.track('signup', {plan: 'pro', email: 'ann@example.com'});
""",
    "mixpanel_json": """
mixpanel.init('mp_token', {api_host: location.origin + '/mp', api_payload_format: 'json',
  batch_requests: false});
mixpanel.track('signup', {plan: 'pro', email: 'ann@example.com'});
""",
    "segment": """
const [analytics] = [AnalyticsNext.AnalyticsBrowser.load({writeKey: 'wk_test',
  cdnURL: location.origin, cdnSettings: {integrations: {'Segment.io': {apiKey: 'wk_test',
  apiHost: location.host + '/seg/v1', protocol: 'http'}}}})];
analytics.identify('u_42', {email: 'Ann@Example.com', plan: 'pro'});
analytics.page();
analytics.track('signup', {plan: 'pro', email: 'ann@example.com'});
""",
}


def main() -> int:
    got: list[dict[str, Any]] = []
    page = {"name": ""}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, ctype: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _handle(self) -> None:
            n = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(n) if n else b""
            path, _, query = self.path.partition("?")
            if path.startswith("/pages/"):
                name = path[len("/pages/"):]
                head = "".join(f'<script src="{s}"></script>' for s in SCRIPTS)
                html = (f"<!doctype html><html><head><title>Shop</title>{head}</head><body>"
                        f"<script>{PAGES[name]}</script></body></html>")
                self._send(200, "text/html", html.encode())
            elif path in SCRIPTS:
                self._send(200, "application/javascript", SCRIPTS[path].read_bytes())
            elif any(path.startswith(p) for p in ANSWERS):
                got.append({"page": page["name"], "method": self.command, "path": path,
                            "query": query, "content_type": self.headers.get("content-type"),
                            "body": body})
                answer = next(a for p, a in ANSWERS.items() if path.startswith(p))
                self._send(200, "application/json", answer)
            else:
                print("not served:", self.command, self.path, file=sys.stderr)
                self._send(404, "text/plain", b"")

        do_GET = do_POST = _handle

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        for name in PAGES:
            page["name"] = name
            ctx = browser.new_context(user_agent=UA)
            tab = ctx.new_page()
            tab.on("console", lambda m: print(f"{page['name']}: {m.text}", file=sys.stderr))
            tab.goto(f"http://127.0.0.1:{port}/pages/{name}"
                     "?utm_source=news&gclid=abc123&q=ann%40example.com")
            time.sleep(6)
            ctx.close()
        browser.close()
    server.shutdown()
    counts: dict[str, int] = {}
    for old in HERE.glob("*.body"):
        old.unlink()
    for old in HERE.glob("*.json"):
        old.unlink()
    for request in got:
        kind = request["path"].strip("/").replace("/", "_")
        stem = f"{request['page']}_{kind}"
        counts[stem] = counts.get(stem, 0) + 1
        stem = f"{stem}_{counts[stem]}"
        (HERE / f"{stem}.body").write_bytes(request.pop("body"))
        (HERE / f"{stem}.json").write_text(json.dumps(request, indent=1) + "\n")
        print(stem, request["method"], request["path"], request["content_type"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
