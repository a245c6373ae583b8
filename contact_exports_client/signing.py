"""Signed task messages: only callers holding a trusted key can start an export (an option).

Celery's ``auth`` serializer signs each message's body with the sender's RSA key and sends the
id of its certificate (issuer and serial number) with it; a worker verifies the signature against
the certificates it trusts and refuses anything else, unsigned or signed by a stranger. The
workers sign the chain's own steps with their key, so their certificate must be among those they
trust.

A signed message is not the only way work enters: the workers' janitor sends a job again from
its record in Redis when its message was lost, and Redis is writable by more than the trusted
callers. So a record carries a seal, a signature over its stored request made by whoever wrote
it (the caller's helper, or the worker that opened the job from a verified message), and under
signing the janitor sends again only what a trusted key sealed (``seal``, ``Seals``).

Three variables, read alike by the workers, the client helper and the command line:
``MESSAGE_SIGNING_KEY`` and ``MESSAGE_SIGNING_CERT`` (PEM files: an RSA private key and its
certificate) and, on the workers, ``MESSAGE_SIGNING_TRUSTED`` (a directory, or a glob, of the
certificates whose signatures are accepted). Results stay JSON: only what is enqueued is signed.

It sits in the client package, beside ``redis_tls``, because callers sign too and must not
import the worker.
"""

from __future__ import annotations

import base64
import glob
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

from celery import Celery
from celery.exceptions import SecurityError
from celery.security.certificate import Certificate, FSCertStore
from celery.security.key import PrivateKey
from celery.security.utils import get_digest_algorithm
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

MESSAGE_SIGNING_KEY = "MESSAGE_SIGNING_KEY"
MESSAGE_SIGNING_CERT = "MESSAGE_SIGNING_CERT"
MESSAGE_SIGNING_TRUSTED = "MESSAGE_SIGNING_TRUSTED"
#: Celery's name for the signing serializer, and the digest signatures use.
SIGNED = "auth"
DIGEST = "sha256"


@dataclass(frozen=True)
class MessageSigning:
    """Who signs (``key_file``, ``cert_file``) and whom a worker trusts (``trusted``)."""

    key_file: str
    cert_file: str
    #: A directory or a glob of PEM certificates; a caller that only signs may leave it at its
    #: own certificate.
    trusted: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> MessageSigning | None:
        """The variables' signing, None when neither key nor certificate is set; ValueError
        when only one of them is."""
        env = os.environ if environ is None else environ
        key = env.get(MESSAGE_SIGNING_KEY, "").strip()
        cert = env.get(MESSAGE_SIGNING_CERT, "").strip()
        if not key and not cert:
            return None
        if not (key and cert):
            raise ValueError(
                f"{MESSAGE_SIGNING_KEY} and {MESSAGE_SIGNING_CERT} go together: set both or neither"
            )
        return cls(key, cert, env.get(MESSAGE_SIGNING_TRUSTED, "").strip() or cert)

    def trusted_files(self) -> list[str]:
        pattern = os.path.join(self.trusted, "*") if os.path.isdir(self.trusted) else self.trusted
        return sorted(glob.glob(pattern))

    def problem(self) -> str | None:
        """What keeps this signing from working, named for an operator; None when it works.

        Celery would find most of these only at the first message (or never: a worker whose own
        certificate it does not trust refuses every step it sends itself).
        """
        try:
            key = load_pem_private_key(Path(self.key_file).read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as error:
            return f"{MESSAGE_SIGNING_KEY}: cannot read an unencrypted PEM private key ({error})"
        if not isinstance(key, rsa.RSAPrivateKey):
            return f"{MESSAGE_SIGNING_KEY}: Celery signs with RSA keys only"
        try:
            cert = x509.load_pem_x509_certificate(Path(self.cert_file).read_bytes())
        except (OSError, ValueError) as error:
            return f"{MESSAGE_SIGNING_CERT}: cannot read a PEM certificate ({error})"
        if cert.public_key() != key.public_key():
            return f"{MESSAGE_SIGNING_CERT} is not the certificate of {MESSAGE_SIGNING_KEY}"
        trusted = self.trusted_files()
        if not trusted:
            return f"{MESSAGE_SIGNING_TRUSTED}: no certificate at {self.trusted}"
        ours = cert.fingerprint(hashes.SHA256())
        for path in trusted:
            try:
                other = x509.load_pem_x509_certificate(Path(path).read_bytes())
            except (OSError, ValueError) as error:
                return f"{MESSAGE_SIGNING_TRUSTED}: {path} is not a PEM certificate ({error})"
            if other.fingerprint(hashes.SHA256()) == ours:
                return None
        return (
            f"{MESSAGE_SIGNING_TRUSTED} does not hold {MESSAGE_SIGNING_CERT}: every step the "
            "workers send each other would be refused"
        )

    def conf(self) -> dict[str, Any]:
        """Celery settings for signed task messages (results stay JSON)."""
        return {
            "task_serializer": SIGNED,
            "accept_content": [SIGNED],
            "result_serializer": "json",
            "result_accept_content": ["json"],
            "security_key": self.key_file,
            "security_certificate": self.cert_file,
            "security_cert_store": self.trusted,
            "security_digest": DIGEST,
        }


def of_app(app: Celery) -> MessageSigning | None:
    """The signing ``sign_messages`` gave ``app``, if any."""
    conf = app.conf
    if conf.task_serializer != SIGNED or not conf.security_key or not conf.security_certificate:
        return None
    return MessageSigning(
        str(conf.security_key),
        str(conf.security_certificate),
        str(conf.security_cert_store or conf.security_certificate),
    )


@lru_cache(maxsize=4)
def _signer(key_file: str, cert_file: str) -> tuple[PrivateKey, str]:
    """The key and its certificate's id, read once per process: every job's record is sealed."""
    key = PrivateKey(Path(key_file).read_text())
    return key, Certificate(Path(cert_file).read_text()).get_id()


def seal(signing: MessageSigning, text: str) -> str:
    """A signature over ``text`` by ``signing``'s key: ``<certificate id>.<signature>``, each
    base64 (the certificate id is Celery's, as in a signed message)."""
    key, signer = _signer(signing.key_file, signing.cert_file)
    signature = key.sign(text.encode(), get_digest_algorithm(DIGEST))
    return ".".join(base64.b64encode(part).decode() for part in (signer.encode(), signature))


def sealer(signing: MessageSigning | None) -> Callable[[str], str] | None:
    """What seals a stored text where messages are signed; None where they are not."""
    return partial(seal, signing) if signing is not None else None


class Seals:
    """Checks seals against the certificates a worker trusts (read once)."""

    def __init__(self, trusted: str) -> None:
        self._store = FSCertStore(trusted)

    def valid(self, text: str, sealed: str | None) -> bool:
        if not sealed or sealed.count(".") != 1:
            return False
        try:
            signer, signature = (base64.b64decode(part) for part in sealed.split("."))
            self._store[signer.decode()].verify(
                text.encode(), signature, get_digest_algorithm(DIGEST)
            )
        except (SecurityError, ValueError, UnicodeDecodeError):
            return False
        except TypeError:
            # Celery 5.7's Certificate.verify reports a bad signature this way: its
            # reraise_errors catches the ``cryptography.exceptions`` module, not a class.
            return False
        return True


def sign_messages(app: Celery, signing: MessageSigning) -> None:
    """Make ``app`` sign what it sends and accept only signed task messages.

    Celery registers the signing serializer for the whole process (kombu's registry), so one
    process signs with one key. JSON stays enabled for results and events.
    """
    app.conf.update(signing.conf())
    app.setup_security(allowed_serializers={"json"}, digest=DIGEST, serializer="json")
