#!/usr/bin/env python3
"""A stand-in OTLP/HTTP collector for load runs: accepts every export, keeps nothing.

Answers POST /v1/traces, /v1/metrics and /v1/logs with an empty protobuf response (a valid
Export*ServiceResponse), so a service exports exactly as it would to a real collector, and
counts what arrived. When it stops (SIGTERM or SIGINT) it writes the counts as JSON to the
file given by --report, so a load run can check that telemetry was really on.

Usage: otlp-sink.py --port 4318 --report sink.json
"""

import argparse
import json
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

counts = {"exports": 0, "bytes": 0}
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if self.path.startswith("/v1/"):
            with lock:
                counts["exports"] += 1
                counts["bytes"] += len(body)
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
        else:
            self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--report", required=True, help="where to write the counts at exit")
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)

    def stop(*_):
        threading.Thread(target=server.shutdown).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.serve_forever()
    with open(args.report, "w") as out:
        json.dump(counts, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
