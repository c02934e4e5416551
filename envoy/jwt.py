#!/usr/bin/env python3
"""Test JWTs for the end-to-end suite, with the standard library and the openssl CLI.

    jwt.py keygen DIR          RSA key DIR/jwt.key and its JWKS DIR/jwks.json
    jwt.py sign DIR CLAIMS     prints an RS256 token for the JSON CLAIMS
    jwt.py sign-bad DIR CLAIMS prints a token whose signature does not verify
"""
import base64
import json
import subprocess
import sys
from pathlib import Path


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def keygen(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    key = directory / "jwt.key"
    subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
    modulus = subprocess.run(
        ["openssl", "rsa", "-in", str(key), "-noout", "-modulus"], check=True, capture_output=True, text=True
    ).stdout.strip().split("=", 1)[1]
    n = bytes.fromhex(modulus)
    jwks = {"keys": [{"kty": "RSA", "alg": "RS256", "use": "sig", "kid": "cordon-test",
                      "n": b64url(n), "e": b64url((65537).to_bytes(3, "big"))}]}
    (directory / "jwks.json").write_text(json.dumps(jwks))


def sign(directory: Path, claims: dict, corrupt: bool = False) -> str:
    header = {"alg": "RS256", "typ": "JWT", "kid": "cordon-test"}
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    signature = subprocess.run(
        ["openssl", "dgst", "-sha256", "-sign", str(directory / "jwt.key")],
        input=signing_input.encode(), check=True, capture_output=True,
    ).stdout
    if corrupt:
        signature = bytes([signature[0] ^ 0xFF]) + signature[1:]
    return f"{signing_input}.{b64url(signature)}"


def main() -> None:
    command, directory = sys.argv[1], Path(sys.argv[2])
    if command == "keygen":
        keygen(directory)
    elif command in ("sign", "sign-bad"):
        print(sign(directory, json.loads(sys.argv[3]), corrupt=command == "sign-bad"))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
