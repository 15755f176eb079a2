"""The floor: the least a browser can do to show a reading. A static page (no Dash, no React, no
libraries) opens a plain browser ``WebSocket`` to the bridge (``?overlap=1``) and, in
``onmessage``, writes the newest reading of the current run into ``#hr-current-bpm`` and
``#hr-current-time`` with ``textContent``; it reconnects 0.5 s after a close. No table, no
chart, no gap repair. What
hrdash's card costs above this is the cost of Dash (and of the table and chart in the same page).

``python -m benchmarks.peers.floor --port 8054 --bridge ws://127.0.0.1:8765/ws``
"""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from benchmarks.peers._common import parse_args

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>floor</title></head>
<body>
<div id="hr-current-card"><span id="hr-current-bpm">&ndash;</span> bpm
<div id="hr-current-time">waiting</div></div>
<script>
(function () {
  var url = %s;
  var bpm = document.getElementById("hr-current-bpm");
  var when = document.getElementById("hr-current-time");
  var run = null, seq = -1;
  function pad(n, w) { n = String(n); while (n.length < w) n = "0" + n; return n; }
  function clock(ms) {
    var d = new Date(ms);
    return pad(d.getHours(), 2) + ":" + pad(d.getMinutes(), 2) + ":" +
      pad(d.getSeconds(), 2) + "." + pad(d.getMilliseconds(), 3);
  }
  function connect() {
    var ws = new WebSocket(url + (url.indexOf("?") < 0 ? "?" : "&") + "overlap=1");
    ws.onmessage = function (event) {
      var frame = JSON.parse(event.data);
      if (frame.type !== "readings" || !frame.readings || !frame.readings.length) return;
      if (frame.run !== run) { run = frame.run; seq = -1; }
      var newest = frame.readings[frame.readings.length - 1];
      if (newest.seq <= seq) return;
      seq = newest.seq;
      bpm.textContent = String(newest.bpm);
      when.textContent = clock(newest.time);
    };
    ws.onclose = function () { setTimeout(connect, 500); };
  }
  connect();
})();
</script>
</body></html>
"""


def serve(port: int, bridge: str) -> None:
    body = (PAGE % json.dumps(bridge)).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    args = parse_args(__doc__ or "")
    serve(args.port, args.bridge)
