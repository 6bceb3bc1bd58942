"""A third-party verifier: PyJWT, given only passcode's JWKS document, checks a token.

Reads {"jwks", "token", "issuer", "audience"} as JSON on stdin; prints the claims and
exits 0 if the token verifies, exits 1 with the reason otherwise.
"""

import json
import sys

import jwt

request = json.load(sys.stdin)
keys = {key["kid"]: jwt.PyJWK(key) for key in request["jwks"]["keys"]}
try:
    header = jwt.get_unverified_header(request["token"])
    key = keys[header["kid"]]
    claims = jwt.decode(
        request["token"],
        key.key,
        algorithms=[key.algorithm_name],
        issuer=request["issuer"],
        audience=request["audience"],
    )
except Exception as error:  # any failure is a refusal
    print(f"refused: {error!r}", file=sys.stderr)
    sys.exit(1)
print(json.dumps(claims))
