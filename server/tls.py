"""HTTPS for owners without a certificate: a self-signed one made with `cryptography`, and its fingerprint.

A self-signed certificate still encrypts; the caller pins or trusts it by its SHA-256 fingerprint, which
the app and `voka-bridge tls fingerprint` show. The private key file is readable by the owner only.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

FOLDER = "tls"  # inside the data folder
CERT_FILE = "cert.pem"
KEY_FILE = "key.pem"
VALID_DAYS = 825  # the longest validity clients accept for a server certificate
RENEW_BEFORE_DAYS = 30


class TlsProblem(Exception):
    """A certificate cannot be made or read; the message says which file and why."""


@dataclass(frozen=True)
class CertificateInfo:
    cert_path: Path
    key_path: Path
    fingerprint: str  # SHA-256, colon-separated upper-case hex, as browsers show it
    names: tuple[str, ...]
    not_after: dt.datetime


def default_names(extra: list[str] | tuple[str, ...] = ()) -> list[str]:
    """localhost, the loopback addresses, this machine's name, and whatever the owner adds."""
    names = ["localhost", "127.0.0.1", "::1", socket.gethostname(), *extra]
    return [n for n in dict.fromkeys(n.strip() for n in names) if n and n not in ("0.0.0.0", "::")]


def _san(names: list[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def generate(folder: Path, names: list[str]) -> CertificateInfo:
    """Write a new P-256 key and a self-signed server certificate for `names` into `folder`."""
    if not names:
        raise TlsProblem("a certificate needs at least one host name or address")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0][:64]),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Voka Bridge (self-signed)")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
        .add_extension(_san(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False, key_agreement=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False),
                       critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    key_path, cert_path = folder / KEY_FILE, folder / CERT_FILE
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    try:
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key_pem)
        os.chmod(key_path, 0o600)
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    except OSError as exc:
        raise TlsProblem(f"cannot write the certificate into {folder}: {exc.strerror}") from None
    return describe(cert_path, key_path)


def describe(cert_path: Path, key_path: Path) -> CertificateInfo:
    """Fingerprint, names and expiry of a PEM certificate (the owner's or a generated one)."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except OSError as exc:
        raise TlsProblem(f"cannot read {cert_path}: {exc.strerror}") from None
    except ValueError:
        raise TlsProblem(f"{cert_path} is not a PEM certificate") from None
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = tuple(str(n.value) for n in san)
    except x509.ExtensionNotFound:
        names = ()
    return CertificateInfo(cert_path, key_path, fingerprint(cert), names, cert.not_valid_after_utc)


def fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def ensure_self_signed(folder: Path, names: list[str]) -> CertificateInfo:
    """The generated certificate in `folder`; made on first use, renewed near expiry or for new names."""
    cert_path, key_path = folder / CERT_FILE, folder / KEY_FILE
    if cert_path.is_file() and key_path.is_file():
        try:
            info = describe(cert_path, key_path)
        except TlsProblem:
            return generate(folder, names)
        fresh = info.not_after - dt.datetime.now(dt.UTC) > dt.timedelta(days=RENEW_BEFORE_DAYS)
        if fresh and set(names) <= set(info.names):
            return info
    return generate(folder, names)
