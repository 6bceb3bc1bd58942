"""Real SMTP servers for passcode's tests (aiosmtpd), on loopback.

Starts, in one process:
  - STARTTLS required + AUTH required (as on port 587),
  - implicit TLS + AUTH required (as on port 465),
each delivering into its own Maildir under --dir, with a throwaway CA (trustme)
whose certificate is written to <dir>/ca.pem. Prints one JSON line with the ports,
then serves until its standard input closes (so it dies with the test process).
"""

import argparse
import json
import os
import socket
import ssl
import sys

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import AuthResult, LoginPassword


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    args = parser.parse_args()

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
        return AuthResult(success=ok)

    starttls_port, implicit_port = free_port(), free_port()
    starttls = Controller(
        Mailbox(os.path.join(args.dir, "starttls")),
        hostname="127.0.0.1",
        port=starttls_port,
        tls_context=context,
        require_starttls=True,
        authenticator=authenticator,
        auth_required=True,
    )
    implicit = Controller(
        Mailbox(os.path.join(args.dir, "implicit")),
        hostname="127.0.0.1",
        port=implicit_port,
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


if __name__ == "__main__":
    main()
