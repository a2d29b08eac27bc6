"""C2PA Content Credentials: a signed manifest inside each MP4, WebP preview and keyframe PNG we write, saying
that a trained model made it, from which uploaded picture, with which software and models.

The EU AI Act (Art. 50(2)) asks that generated images and video be marked as such in a machine-readable way;
C2PA is the open standard readers check (c2patool, contentcredentials.org/verify, c2pa libraries). Signing
uses the CAI's own library (c2pa-python over c2pa-rs) with the operator's certificate chain and key. No
network is used: the signature carries no trusted timestamp, so validators check the certificate against the
time of reading; a timestamp authority (which keeps signatures valid after the certificate expires) is one
argument away, `ta_url` of C2paSignerInfo below.
"""

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import c2pa
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from PIL import Image

from model_core.errors import CredentialsError, InvalidInputError

SOFTWARE_NAME = "paints-undo"
# IPTC's term for media made by a model trained on sampled content: what C2PA readers label "AI-generated".
TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
SIGNABLE_MEDIA_TYPES = ("video/mp4", "image/webp", "image/png")
SOURCE_MEDIA_TYPES = ("image/png", "image/jpeg", "image/webp")

_EC_ALGORITHMS = {"secp256r1": "es256", "secp384r1": "es384", "secp521r1": "es512"}
_MIN_RSA_BITS = 2048  # c2pa-rs refuses shorter RSA keys
# Readers show the thumbnails C2PA can embed, but ours would be dead weight: an animated preview's first
# frame is the blank canvas, and a thumbnail of the uploaded picture would copy it into every file.
_CONTEXT_SETTINGS = {"builder": {"thumbnail": {"enabled": False}}}


@dataclass(frozen=True)
class SourcePicture:
    """The uploaded picture a render started from, recorded as the manifest's ingredient."""

    data: bytes
    media_type: str
    title: str = "uploaded picture"


def _read(path: str | Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise CredentialsError(f"Cannot read the C2PA signing {what} {path}: {error.strerror}.") from None


def _algorithm(key: object, key_path: str | Path) -> str:
    """The C2PA signing algorithm for a private key: ES256/384/512 by curve, Ed25519, or PS256 for RSA."""
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name in _EC_ALGORITHMS:
        return _EC_ALGORITHMS[key.curve.name]
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size >= _MIN_RSA_BITS:
        return "ps256"  # C2PA allows RSA only with PSS padding
    kind = f"{key.curve.name} EC" if isinstance(key, ec.EllipticCurvePrivateKey) else type(key).__name__
    size = f" of {key.key_size} bits" if isinstance(key, rsa.RSAPrivateKey) else ""
    raise CredentialsError(
        f"The C2PA signing key {key_path} is a {kind} key{size}: C2PA signs with ECDSA P-256, P-384 or P-521, "
        f"Ed25519, or RSA of {_MIN_RSA_BITS} bits or more. Issue the signing certificate for such a key."
    )


class ContentCredentials:
    """Signs files with one certificate chain and key; build it with from_pem_files, once per process."""

    def __init__(self, signer: c2pa.Signer, algorithm: str) -> None:
        self._signer = signer
        self.algorithm = algorithm

    @classmethod
    def from_pem_files(cls, cert_path: str | Path, key_path: str | Path) -> "ContentCredentials":
        """Read and check the certificate chain (signing certificate first, then its intermediates) and the
        unencrypted private key, both PEM. Raises CredentialsError saying what is wrong with which file.

        Everything c2pa would refuse at signing time (a CA or self-signed certificate, a missing key usage or
        extended key usage, an expired certificate) is found here, by signing a one-pixel PNG, so a worker
        with bad credentials fails when it starts, not after its first render.
        """
        try:
            chain = x509.load_pem_x509_certificates(_read(cert_path, "certificate chain"))
        except ValueError:
            raise CredentialsError(
                f"The C2PA signing certificate chain {cert_path} holds no PEM certificate: give the signing "
                "certificate, then its intermediate CA certificates, each as a '-----BEGIN CERTIFICATE-----' block."
            ) from None
        try:
            key = serialization.load_pem_private_key(_read(key_path, "key"), password=None)
        except TypeError:  # the key is encrypted
            raise CredentialsError(
                f"The C2PA signing key {key_path} is encrypted: decrypt it "
                f"(openssl pkey -in {key_path} -out KEY.pem) and point to the unencrypted PEM."
            ) from None
        except ValueError:
            raise CredentialsError(
                f"The C2PA signing key {key_path} is not a PEM private key: give the key the signing certificate "
                "was issued for, as a '-----BEGIN PRIVATE KEY-----' (or EC/RSA PRIVATE KEY) block."
            ) from None
        algorithm = _algorithm(key, key_path)
        spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        if chain[0].public_key().public_bytes(*spki) != key.public_key().public_bytes(*spki):
            raise CredentialsError(
                f"The C2PA signing key {key_path} does not belong to the first certificate of {cert_path} "
                f"({chain[0].subject.rfc4514_string()}): give the matching pair, with the signing certificate "
                "first in the chain."
            )
        # c2pa-rs reads PKCS#8 only and plain PEM blocks: re-encode both, so SEC1/PKCS#1 keys and files with
        # text between the blocks (openssl's "Bag Attributes") work too.
        pkcs8 = (serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        info = c2pa.C2paSignerInfo(
            alg=algorithm,
            sign_cert=b"".join(certificate.public_bytes(serialization.Encoding.PEM) for certificate in chain),
            private_key=key.private_bytes(*pkcs8),
            ta_url=None,
        )
        try:
            credentials = cls(c2pa.Signer.from_info(info), algorithm)
            pixel = io.BytesIO()
            Image.new("RGB", (1, 1)).save(pixel, format="PNG")
            source = SourcePicture(pixel.getvalue(), "image/png")
            pixel.seek(0)
            credentials._sign("image/png", pixel, io.BytesIO(), source, software_version="check", models=[])
        except c2pa.C2paError as error:
            raise CredentialsError(
                f"c2pa refuses to sign with {cert_path} and {key_path} ({error}). The signing certificate must be "
                "an X.509 v3 end-entity certificate (not a CA, not self-signed), valid now, with the "
                "digitalSignature key usage and an extended key usage C2PA accepts (emailProtection or "
                "documentSigning, say), issued by a CA whose certificate is not the signing one."
            ) from None
        return credentials

    def _builder(self, source: SourcePicture, software_version: str, models: Sequence[str]) -> c2pa.Builder:
        """A manifest saying a trained model created the file from the source picture."""
        if source.media_type not in SOURCE_MEDIA_TYPES:
            raise InvalidInputError(
                f"The source picture's media type must be one of {', '.join(SOURCE_MEDIA_TYPES)}, "
                f"got {source.media_type!r}."
            )
        software = {"name": SOFTWARE_NAME, "version": software_version}
        created = {
            "action": "c2pa.created",
            "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA,
            "softwareAgent": software,
            # C2PA defines no field for model names; the action's parameters are free-form and every reader
            # that lists actions (c2patool, Reader.json(), the Verify site's details) shows them as they are.
            "parameters": {"ingredientIds": ["source"], "models": list(models)},
        }
        manifest = {
            "claim_generator_info": [software],
            "assertions": [{"label": "c2pa.actions", "data": {"actions": [created]}}],
        }
        builder = c2pa.Builder(manifest, context=c2pa.Context.from_dict(_CONTEXT_SETTINGS))
        # "inputTo", not "parentOf": in C2PA 2.x a parentOf ingredient is an earlier state of this very asset,
        # opened and edited (its claim starts with c2pa.opened, and a c2pa.created claim may not have one),
        # while inputTo is "an input to a computational process, such as an AI/ML model, which led to the
        # creation of this asset": the uploaded picture the models were run on.
        ingredient = {"title": source.title, "relationship": "inputTo", "label": "source"}
        builder.add_ingredient(ingredient, source.media_type, io.BytesIO(source.data))
        return builder

    def _sign(
        self,
        media_type: str,
        source_stream: BinaryIO,
        signed_stream: BinaryIO,
        source: SourcePicture,
        software_version: str,
        models: Sequence[str],
    ) -> None:
        if media_type not in SIGNABLE_MEDIA_TYPES:
            raise InvalidInputError(f"Can sign {', '.join(SIGNABLE_MEDIA_TYPES)} files, got {media_type!r}.")
        with self._builder(source, software_version, models) as builder:
            builder.sign(self._signer, media_type, source_stream, signed_stream)

    def sign(
        self, data: bytes, media_type: str, *, source: SourcePicture, software_version: str, models: Sequence[str]
    ) -> bytes:
        """The file's bytes with a signed C2PA manifest embedded: made by a trained model (the models given,
        run by paints-undo software_version) from the source picture.

        media_type: one of SIGNABLE_MEDIA_TYPES. Raises CredentialsError if c2pa cannot sign (the
        certificate expired since the worker started, say).
        """
        signed = io.BytesIO()
        try:
            self._sign(media_type, io.BytesIO(data), signed, source, software_version, models)
        except c2pa.C2paError as error:
            raise CredentialsError(f"c2pa could not sign the {media_type} file: {error}") from None
        return signed.getvalue()

    def sign_file(
        self, path: str | Path, media_type: str, *, source: SourcePicture, software_version: str, models: Sequence[str]
    ) -> Path:
        """Sign the file at path in place (see sign): the signed file replaces it whole, or it stays as it was."""
        path = Path(path)
        partial = path.with_name(f".{path.name}.signing")
        try:
            # c2pa reads back what it writes: the signed file is opened for writing and reading.
            with open(path, "rb") as unsigned, open(partial, "w+b") as signed:
                self._sign(media_type, unsigned, signed, source, software_version, models)
            os.replace(partial, path)
        except c2pa.C2paError as error:
            partial.unlink(missing_ok=True)
            raise CredentialsError(f"c2pa could not sign {path}: {error}") from None
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        return path
