"""A throwaway certificate authority and the loopback certificates it signs, for serving S3
(``devstack.s3server``, ``devstack.seaweedfs``) and Redis (``devstack.redis_server``) over TLS in
tests: ``ca.pem`` is what a client must trust (``AWS_CA_BUNDLE``, ``REDIS_CA_FILE``),
``server.pem`` and ``server-key.pem`` what the server presents, ``client.pem`` and
``client-key.pem`` what a client presents to a server that asks for one. Made fresh each time
with ``cryptography``; nothing here is secret.

``make_signing_identity`` makes an RSA key and its self-signed certificate, as Celery's message
signing wants them (``contact_exports_client.signing``).
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: Long enough for any test run, short enough that a leaked file is soon worthless.
VALID_FOR = datetime.timedelta(days=2)


@dataclass(frozen=True)
class ServerCertificate:
    """Where ``make_certificates`` wrote the CA, the server's certificate and key, and a client
    certificate and key."""

    ca: Path
    cert: Path
    key: Path
    client_cert: Path
    client_key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _valid(builder: x509.CertificateBuilder) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        builder.serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALID_FOR)
    )


def _authority(name: x509.Name, key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )
    builder = x509.CertificateBuilder().subject_name(name).issuer_name(name)
    return (
        _valid(builder.public_key(key.public_key()))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )


def _leaf(
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    usage: x509.ObjectIdentifier,
) -> x509.Certificate:
    """A certificate for 127.0.0.1 and localhost, for ``usage`` (server or client auth)."""
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.IPv4Address("127.0.0.1"))]
    builder = x509.CertificateBuilder().subject_name(_name("localhost")).issuer_name(issuer)
    return (
        _valid(builder.public_key(key.public_key()))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), False
        )
        .sign(issuer_key, hashes.SHA256())
    )


def _write_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def make_certificates(directory: Path, name: str = "devstack") -> ServerCertificate:
    """A new CA and the server and client certificates it signed, as PEM files in
    ``directory`` (keys unencrypted)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name(f"{name} test CA")
    paths = ServerCertificate(
        ca=directory / "ca.pem",
        cert=directory / "server.pem",
        key=directory / "server-key.pem",
        client_cert=directory / "client.pem",
        client_key=directory / "client-key.pem",
    )
    paths.ca.write_bytes(_authority(ca_name, ca_key).public_bytes(serialization.Encoding.PEM))
    for cert, key_path, usage in (
        (paths.cert, paths.key, ExtendedKeyUsageOID.SERVER_AUTH),
        (paths.client_cert, paths.client_key, ExtendedKeyUsageOID.CLIENT_AUTH),
    ):
        key = ec.generate_private_key(ec.SECP256R1())
        cert.write_bytes(
            _leaf(key, ca_name, ca_key, usage).public_bytes(serialization.Encoding.PEM)
        )
        _write_key(key, key_path)
    return paths


@dataclass(frozen=True)
class SigningIdentity:
    """Where ``make_signing_identity`` wrote a signer's key and certificate."""

    key: Path
    cert: Path


def make_signing_identity(directory: Path, name: str) -> SigningIdentity:
    """An RSA key (Celery signs with RSA only) and its self-signed certificate, as
    ``directory/name-key.pem`` and ``directory/name.pem``."""
    directory.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = _name(name)
    cert = (
        _valid(x509.CertificateBuilder())
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .sign(key, hashes.SHA256())
    )
    identity = SigningIdentity(directory / f"{name}-key.pem", directory / f"{name}.pem")
    identity.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, identity.key)
    return identity
