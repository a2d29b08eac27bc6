"""A throwaway C2PA signing chain for tests: a root CA and an end-entity certificate it issued.

C2PA validators (c2pa-rs' certificate_profile.rs) refuse a signing certificate unless it is X.509 v3,
not a CA, carries an Authority Key Identifier, a digitalSignature key usage without keyCertSign, and
an extended key usage from the C2PA list (emailProtection here; "any" is refused). A self-signed
certificate cannot sign, hence the separate root, which a test trusts through c2pa's
`trust.user_anchors` setting.
"""

import datetime
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey


@dataclass(frozen=True)
class SigningChain:
    """PEM files: `cert` (end-entity certificate, the chain to embed), `key` (its private key, PKCS#8),
    `root` (the CA certificate a verifier must trust)."""

    cert: Path
    key: Path
    root: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "paints-undo tests"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])  # fmt: skip


def make_signing_chain(
    folder: Path, key: PrivateKey | None = None, *, start: datetime.datetime | None = None, days: int = 30
) -> SigningChain:
    """Write root.pem, cert.pem and key.pem into `folder`: a root CA (P-256) and an end-entity certificate
    for `key` (a new P-256 key, ES256, by default), both valid from `start` (an hour ago) for `days` days."""
    folder.mkdir(parents=True, exist_ok=True)
    start = start if start is not None else datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1)
    end = start + datetime.timedelta(days=days)
    root_key = ec.generate_private_key(ec.SECP256R1())
    root_name = _name("paints-undo test root CA")
    root_ski = x509.SubjectKeyIdentifier.from_public_key(root_key.public_key())
    root = (
        x509.CertificateBuilder()
        .subject_name(root_name)
        .issuer_name(root_name)
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(root_ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(root_ski), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    key = key if key is not None else ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("paints-undo test signer"))
        .issuer_name(root_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(root_ski), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    chain = SigningChain(cert=folder / "cert.pem", key=folder / "key.pem", root=folder / "root.pem")
    chain.root.write_bytes(root.public_bytes(serialization.Encoding.PEM))
    chain.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    chain.key.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return chain


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )
