"""Message signing's settings and seals (``contact_exports_client.signing``): what is refused
before a worker starts, and which stored requests the janitor may send again.

Nothing here registers Celery's signing serializer (that is process-wide); signed messages on a
real worker are tests/integration/test_message_signing_with_real_worker.py.
"""

from __future__ import annotations

import shutil
import time
from functools import partial
from pathlib import Path

import pytest
import redis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from contact_exports_client.ledger import SEAL_FIELD, record_submission
from contact_exports_client.signing import MessageSigning, Seals, seal
from devstack.tls import SigningIdentity, make_signing_identity
from tests.unit.factories import a_job, a_settings
from tests.unit.test_janitor import Sender
from workers.export import janitor
from workers.export.deadletters import rerun
from workers.state.jobs import JobStore


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("signing")


@pytest.fixture(scope="module")
def worker(home: Path) -> SigningIdentity:
    return make_signing_identity(home, "worker")


@pytest.fixture(scope="module")
def stranger(home: Path) -> SigningIdentity:
    return make_signing_identity(home, "stranger")


@pytest.fixture(scope="module")
def trusted(home: Path, worker: SigningIdentity) -> Path:
    folder = home / "trusted"
    folder.mkdir()
    shutil.copy(worker.cert, folder)
    return folder


def signing(identity: SigningIdentity, trusted: Path) -> MessageSigning:
    return MessageSigning(str(identity.key), str(identity.cert), str(trusted))


def test_the_variables_go_together() -> None:
    assert MessageSigning.from_env({}) is None
    with pytest.raises(ValueError, match="set both or neither"):
        MessageSigning.from_env({"MESSAGE_SIGNING_KEY": "/k.pem"})
    caller = MessageSigning.from_env(
        {"MESSAGE_SIGNING_KEY": "/k.pem", "MESSAGE_SIGNING_CERT": "/c.pem"}
    )
    assert caller == MessageSigning("/k.pem", "/c.pem", "/c.pem")  # a caller trusts no one


def test_a_working_signing_has_no_problem(worker: SigningIdentity, trusted: Path) -> None:
    assert signing(worker, trusted).problem() is None


def test_a_worker_that_does_not_trust_itself_is_refused(
    stranger: SigningIdentity, trusted: Path
) -> None:
    problem = signing(stranger, trusted).problem()
    assert problem is not None and "does not hold MESSAGE_SIGNING_CERT" in problem


def test_a_key_that_is_not_its_certificates_is_refused(
    worker: SigningIdentity, stranger: SigningIdentity, trusted: Path
) -> None:
    mixed = MessageSigning(str(stranger.key), str(worker.cert), str(trusted))
    assert mixed.problem() == "MESSAGE_SIGNING_CERT is not the certificate of MESSAGE_SIGNING_KEY"


def test_a_key_celery_cannot_sign_with_is_refused(
    home: Path, worker: SigningIdentity, trusted: Path
) -> None:
    ec_key = home / "ec-key.pem"
    ec_key.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    problem = MessageSigning(str(ec_key), str(worker.cert), str(trusted)).problem()
    assert problem == "MESSAGE_SIGNING_KEY: Celery signs with RSA keys only"


def test_no_trusted_certificate_is_refused(worker: SigningIdentity, home: Path) -> None:
    problem = MessageSigning(str(worker.key), str(worker.cert), str(home / "none*")).problem()
    assert problem is not None and "no certificate at" in problem


def test_the_worker_settings_refuse_a_partial_or_broken_signing(
    worker: SigningIdentity, stranger: SigningIdentity, trusted: Path
) -> None:
    with pytest.raises(ValueError, match="MESSAGE_SIGNING_TRUSTED too"):
        a_settings(message_signing_key=worker.key, message_signing_cert=worker.cert)
    with pytest.raises(ValueError, match="does not hold MESSAGE_SIGNING_CERT"):
        a_settings(
            message_signing_key=stranger.key,
            message_signing_cert=stranger.cert,
            message_signing_trusted=str(trusted),
        )
    settings = a_settings(
        message_signing_key=worker.key,
        message_signing_cert=worker.cert,
        message_signing_trusted=str(trusted),
    )
    assert settings.message_signing == signing(worker, trusted)
    assert a_settings().message_signing is None


def test_a_seal_holds_only_for_its_text_and_a_trusted_signer(
    worker: SigningIdentity, stranger: SigningIdentity, trusted: Path
) -> None:
    seals = Seals(str(trusted))
    text = '{"export": {}, "job_id": "j1"}'
    sealed = seal(signing(worker, trusted), text)
    assert seals.valid(text, sealed)
    assert not seals.valid(text.replace("j1", "j2"), sealed)  # another request
    assert not seals.valid(text, seal(signing(stranger, trusted), text))  # not trusted
    for broken in (None, "", "no-dot", "a.b", sealed + ".x"):
        assert not seals.valid(text, broken)


def test_the_janitor_sends_again_only_what_a_trusted_key_sealed(
    r: redis.Redis,
    worker: SigningIdentity,
    stranger: SigningIdentity,
    trusted: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = JobStore(r)
    kwargs = {"export": {"fields": ["email_address"]}}
    record_submission(r, "sealed", "sealed", kwargs, lambda t: seal(signing(worker, trusted), t))
    record_submission(
        r, "stranger", "stranger", kwargs, lambda t: seal(signing(stranger, trusted), t)
    )
    record_submission(r, "unsealed", "unsealed", kwargs)
    assert store.record("unsealed").get(SEAL_FIELD) is None
    later = time.time() + 61
    monkeypatch.setattr(time, "time", lambda: later)
    sender = Sender()
    sent = janitor.sweep(store, sender, older_than=60, seals=Seals(str(trusted)))
    assert sent == ["sealed"]
    assert [options["task_id"] for _, options in sender.sent] == ["sealed"]
    # A refused record is left out of every later sweep (logged once); without signing, any
    # other stale record goes, sealed or not, as before.
    record_submission(r, "fresh", "fresh", kwargs)
    later += 61
    assert sorted(janitor.sweep(store, Sender(), older_than=60)) == ["fresh", "sealed"]


def test_a_failed_job_is_run_again_only_from_a_sealed_request(
    r: redis.Redis, worker: SigningIdentity, trusted: Path
) -> None:
    """``contact-exports retry`` under signing: it would sign whatever Redis holds."""
    store = JobStore(r)
    sealer = partial(seal, signing(worker, trusted))
    for job_id, sign in (("sealed-run", sealer), ("forged-run", None)):
        store.open(a_job(job_id), {"export": {}, "job_id": job_id}, sign)
        store.fail(job_id, "download", RuntimeError("x"))
    sender = Sender()
    with pytest.raises(PermissionError, match="no seal of a trusted key"):
        rerun(store, sender, "forged-run", Seals(str(trusted)))
    assert store.record("forged-run")["state"] == "failed" and sender.sent == []
    rerun(store, sender, "sealed-run", Seals(str(trusted)))
    assert [options["kwargs"]["job_id"] for _, options in sender.sent] == ["sealed-run"]
