"""The console's self-signed TLS certificate (made with the `cryptography` package)."""

from __future__ import annotations

import datetime
import ipaddress
import socket
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

VALID_DAYS = 825  # the longest that browsers accept for a certificate


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _names(hosts: tuple[str, ...]) -> list[str]:
    names = ["localhost", "127.0.0.1", socket.gethostname(), *hosts]
    return [n for i, n in enumerate(names) if n and n not in names[:i] and n != "0.0.0.0"]


def _covers(cert_path: Path, hosts: tuple[str, ...]) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, x509.ExtensionNotFound):
        return False
    have = {str(v) for v in san.get_values_for_type(x509.IPAddress)}
    have |= set(san.get_values_for_type(x509.DNSName))
    expires = cert.not_valid_after_utc
    fresh = expires > datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)
    return fresh and all(h in have for h in _names(hosts))


def ensure_self_signed(
    cert_path: Path, key_path: Path, hosts: tuple[str, ...], write: Callable[[Path, str, int], None]
) -> None:
    """Make a self-signed certificate for `hosts` (plus localhost and this host's name) unless
    the one there already covers them; the private key is written mode 0600."""
    if key_path.exists() and _covers(cert_path, hosts):
        return
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rover console")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName([_san(h) for h in _names(hosts)]), False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write(key_path, key_pem.decode(), 0o600)
    write(cert_path, cert.public_bytes(serialization.Encoding.PEM).decode(), 0o644)


def fingerprint(cert_path: Path) -> str:
    """The certificate's SHA-256 fingerprint, to compare with what the browser shows."""
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()
