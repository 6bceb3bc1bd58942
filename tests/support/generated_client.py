"""Drives passcode through a client generated (openapi-python-client) from its served
OpenAPI document: one step per call, so that the Rust test can read the mailed code
in between. Prints what the test checks; exits non-zero on any surprise."""

import sys

from passcode_client import AuthenticatedClient, Client
from passcode_client.api.accounts import me, register, validate_otp
from passcode_client.api.tokens import login
from passcode_client.models import LoginRequest, RegisterRequest, ValidateOtpRequest


def main() -> None:
    step, base, email, password = sys.argv[1:5]
    client = Client(base_url=base, raise_on_unexpected_status=True)
    if step == "register":
        response = register.sync_detailed(
            client=client,
            body=RegisterRequest(full_name="Ada Generated", email=email, password=password),
        )
        assert response.status_code == 201, response.content
        print(response.parsed.message)
    elif step == "verify":
        response = validate_otp.sync_detailed(
            client=client,
            body=ValidateOtpRequest(email=email, otp=sys.argv[5], password=password),
        )
        assert response.status_code == 200, response.content
        assert response.parsed.token.access, "a typed token pair"
        print(response.parsed.message)
    elif step == "login":
        response = login.sync_detailed(
            client=client, body=LoginRequest(email=email, password=password)
        )
        assert response.status_code == 200, response.content
        authed = AuthenticatedClient(base_url=base, token=response.parsed.access)
        account = me.sync(client=authed)
        print(account.email, account.full_name, account.email_verified)
    else:
        raise SystemExit(f"unknown step {step}")


if __name__ == "__main__":
    main()
