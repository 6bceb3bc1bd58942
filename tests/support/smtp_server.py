"""Real SMTP servers for passcode's tests (aiosmtpd), on loopback.

With --single PORT: one plain server (no TLS, no AUTH) on PORT delivering into
<dir>/single, which a test can stop and start again on the same port, and whose
answers it chooses with --behaviour:
  accept       take every message
  tempfail:N   answer 451 (try again later) to the first N deliveries to each recipient
  reject       answer 550 (permanent) to every message
  stall:S      answer the first RCPT of its life only after S seconds, then as accept
  one-per-connection
               take a message, then close its connection, as servers with a
               per-connection message limit do

Otherwise it starts, in one process:
  - STARTTLS required + AUTH required (as on port 587),
  - implicit TLS + AUTH required (as on port 465),
each delivering into its own Maildir under --dir, with a throwaway CA (trustme)
whose certificate is written to <dir>/ca.pem. Prints one JSON line with the ports,
then serves until its standard input closes (so it dies with the test process).
"""

import argparse
import asyncio
import json
import mailbox
import os
import shutil
import socket
import ssl
import sys

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


# How long a server may take to start: aiosmtpd's default (5 s) was seen to run out
# on a CI machine busy with the rest of the suite.
READY_TIMEOUT = 60.0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Maildir:
    """Delivers each message into a Maildir as it arrived, after X-Peer (the
    client's address and port: one per connection), X-MailFrom and X-RcptTo lines.
    aiosmtpd's own Mailbox handler parses each message and writes it out again:
    half of this server's CPU during the benchmark's register flood, on the cores
    the benchmark measures."""

    def __init__(self, path):
        self.mailbox = mailbox.Maildir(path)

    async def handle_DATA(self, server, session, envelope):
        head = (
            f"X-Peer: {session.peer}\nX-MailFrom: {envelope.mail_from}\n"
            f"X-RcptTo: {', '.join(envelope.rcpt_tos)}\n"
        )
        self.mailbox.add(head.encode() + envelope.content.replace(b"\r\n", b"\n"))
        return "250 OK"


class Chosen(Maildir):
    """A Maildir handler that answers as the test chose."""

    def __init__(self, path, behaviour):
        super().__init__(path)
        self.behaviour = behaviour
        self.failures = {}
        self.stalled = False

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.behaviour.startswith("stall:") and not self.stalled:
            self.stalled = True
            await asyncio.sleep(float(self.behaviour.split(":", 1)[1]))
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.behaviour == "reject":
            return "550 5.7.1 Rejected by the test server"
        if self.behaviour.startswith("tempfail:"):
            limit = int(self.behaviour.split(":", 1)[1])
            key = ",".join(envelope.rcpt_tos)
            if self.failures.get(key, 0) < limit:
                self.failures[key] = self.failures.get(key, 0) + 1
                return "451 4.3.0 Try again later"
        answer = await super().handle_DATA(server, session, envelope)
        if self.behaviour == "one-per-connection":
            # After the answer is written: closing flushes what is buffered.
            asyncio.get_running_loop().call_later(0.01, server.transport.close)
        return answer


def single(args):
    server = Controller(
        Chosen(os.path.join(args.dir, "single"), args.behaviour),
        hostname="127.0.0.1",
        port=args.single,
        ready_timeout=READY_TIMEOUT,
    )
    server.start()
    print(json.dumps({"port": args.single}), flush=True)
    sys.stdin.read()
    server.stop()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", required=True)
    parser.add_argument("--user")
    parser.add_argument("--password")
    parser.add_argument("--single", type=int)
    parser.add_argument("--behaviour", default="accept")
    # Removes --dir once standard input closes: for a server that lives as long as
    # its caller's process, which has no moment left to remove the folder itself.
    parser.add_argument("--remove-dir-on-exit", action="store_true")
    args = parser.parse_args()
    if args.single:
        single(args)
        return

    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    ca_path = os.path.join(args.dir, "ca.pem")
    ca.cert_pem.write_to_path(ca_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == args.user.encode()
            and auth_data.password == args.password.encode()
        )
        # handled=False: aiosmtpd then answers 535 itself (by default it stays silent).
        return AuthResult(success=ok, handled=False)

    starttls_port, implicit_port = free_port(), free_port()
    starttls = Controller(
        Maildir(os.path.join(args.dir, "starttls")),
        hostname="127.0.0.1",
        port=starttls_port,
        ready_timeout=READY_TIMEOUT,
        tls_context=context,
        require_starttls=True,
        authenticator=authenticator,
        auth_required=True,
    )
    implicit = Controller(
        Maildir(os.path.join(args.dir, "implicit")),
        hostname="127.0.0.1",
        port=implicit_port,
        ready_timeout=READY_TIMEOUT,
        ssl_context=context,
        authenticator=authenticator,
        auth_required=True,
        # aiosmtpd cannot see that an implicit-TLS session is encrypted.
        auth_require_tls=False,
    )
    starttls.start()
    implicit.start()
    print(json.dumps({"starttls_port": starttls_port, "implicit_port": implicit_port, "ca": ca_path}), flush=True)
    sys.stdin.read()
    starttls.stop()
    implicit.stop()
    if args.remove_dir_on_exit:
        shutil.rmtree(args.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
