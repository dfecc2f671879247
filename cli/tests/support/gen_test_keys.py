#!/usr/bin/env python3
"""Makes throwaway keys and certificates for the codec server's tests.

    gen_test_keys.py jwt DIR   rsa.pem, ec.pem (signing keys) and jwks.json (their public halves)
    gen_test_keys.py tls DIR   ca.pem, server.pem/.key (127.0.0.1, localhost),
                               client.pem/.key (CN worker-1) and rogue.pem/.key (another CA)

Fresh on every run; nothing here is ever committed.
"""

import base64
import datetime
import json
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID


def b64u(n: int, length: int | None = None) -> str:
    raw = n.to_bytes(length or (n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def pem_private(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def jwt(out: Path) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    (out / "rsa.pem").write_bytes(pem_private(rsa_key))
    (out / "ec.pem").write_bytes(pem_private(ec_key))
    rn = rsa_key.public_key().public_numbers()
    en = ec_key.public_key().public_numbers()
    jwks = {
        "keys": [
            {"kty": "RSA", "kid": "rsa-1", "alg": "RS256", "use": "sig", "n": b64u(rn.n), "e": b64u(rn.e)},
            {"kty": "EC", "kid": "ec-1", "alg": "ES256", "use": "sig", "crv": "P-256",
             "x": b64u(en.x, 32), "y": b64u(en.y, 32)},
        ]
    }
    (out / "jwks.json").write_text(json.dumps(jwks))


def cert(subject: str, key, issuer_name, issuer_key, *, ca=False, sans=(), client=False):
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if sans:
        import ipaddress

        entries = []
        for s in sans:
            try:
                entries.append(x509.IPAddress(ipaddress.ip_address(s)))
            except ValueError:
                entries.append(x509.DNSName(s))
        builder = builder.add_extension(x509.SubjectAlternativeName(entries), critical=False)
    if not ca:
        usage = x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH if client else x509.oid.ExtendedKeyUsageOID.SERVER_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return builder.sign(issuer_key or key, hashes.SHA256())


def tls(out: Path) -> None:
    def write(name, c, k):
        (out / f"{name}.pem").write_bytes(c.public_bytes(serialization.Encoding.PEM))
        (out / f"{name}.key").write_bytes(pem_private(k))

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = cert("tcodec test CA", ca_key, None, None, ca=True)
    (out / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    server_key = ec.generate_private_key(ec.SECP256R1())
    write("server", cert("localhost", server_key, ca.subject, ca_key, sans=("127.0.0.1", "localhost")), server_key)
    client_key = ec.generate_private_key(ec.SECP256R1())
    write("client", cert("worker-1", client_key, ca.subject, ca_key, client=True), client_key)
    other_key = ec.generate_private_key(ec.SECP256R1())
    other_ca = cert("someone else's CA", other_key, None, None, ca=True)
    rogue_key = ec.generate_private_key(ec.SECP256R1())
    write("rogue", cert("worker-1", rogue_key, other_ca.subject, other_key, client=True), rogue_key)


if __name__ == "__main__":
    kind, out = sys.argv[1], Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    {"jwt": jwt, "tls": tls}[kind](out)
