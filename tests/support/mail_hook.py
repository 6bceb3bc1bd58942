"""A mail hook receiver for the tests: an HTTP server on a given port that checks each
POST's Standard Webhooks signature with the `standardwebhooks` library and appends the
verified payload (with its webhook-id) as one JSON line to a file.

    mail_hook.py --port P --secret whsec_... --out FILE --behaviour accept|tempfail:N|reject

accept: 204 to every signed request. tempfail:N: 503 to the first N, then as accept.
reject: 400 to everything. A request whose signature does not verify gets 401 and is
not recorded. The webhook-id of every signed attempt is appended to FILE.attempts.
Prints {"port": P} once listening; exits when stdin closes.
"""

import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--behaviour", default="accept")
    args = parser.parse_args()
    hook = Webhook(args.secret)
    lock = threading.Lock()
    state = {"failures_left": 0}
    if args.behaviour.startswith("tempfail:"):
        state["failures_left"] = int(args.behaviour.split(":", 1)[1])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                payload = hook.verify(body, headers)
            except WebhookVerificationError:
                self.send_response(401)
                self.end_headers()
                return
            with lock:
                with open(args.out + ".attempts", "a") as attempts:
                    attempts.write(headers["webhook-id"] + "\n")
                if args.behaviour == "reject":
                    status = 400
                elif state["failures_left"] > 0:
                    state["failures_left"] -= 1
                    status = 503
                else:
                    status = 204
                    with open(args.out, "a") as out:
                        out.write(json.dumps({"id": headers["webhook-id"], "payload": payload}) + "\n")
            self.send_response(status)
            self.end_headers()

        def log_message(self, *_):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(json.dumps({"port": args.port}), flush=True)
    sys.stdin.read()


if __name__ == "__main__":
    main()
