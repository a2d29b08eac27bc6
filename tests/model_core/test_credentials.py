"""Content Credentials signed with a throwaway chain and read back with c2pa's own Reader.

What a good file's validation shows: c2pa.Reader without trust settings reports validation_state "Valid" with
exactly one failure, signingCredential.untrusted (our test root is in no trust list; the signature, the
hashes and the certificate profile all pass). With the root as a user trust anchor it reports "Trusted" and
no failure at all. A byte flipped in the media data gives "Invalid" with a hash mismatch code.
"""

import datetime
import io
import json
from pathlib import Path

import c2pa
import numpy as np
import pytest
from c2pa_certs import SigningChain, make_signing_chain
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from mp4 import mp4_boxes, read_mp4
from PIL import Image

from model_core.credentials import TRAINED_ALGORITHMIC_MEDIA, ContentCredentials, SourcePicture
from model_core.errors import CredentialsError, InvalidInputError
from model_core.outputs import keyframe_png, write_preview
from model_core.video import write_mp4

MODELS = ["lllyasviel/paints_undo_single_frame", "lllyasviel/paints_undo_multi_frame"]
TEXT = {"prompt": "1girl, flowers", "undo_step": "400", "keyframe_seed": "7"}
# The media-data marker of each format, and how far past it the payload starts.
PAYLOAD = {"video/mp4": (b"mdat", 4), "image/webp": (b"ANMF", 4 + 4 + 16 + 8), "image/png": (b"IDAT", 4)}
MISMATCH = {"video/mp4": "assertion.bmffHash.mismatch", "image/webp": "assertion.dataHash.mismatch",
            "image/png": "assertion.dataHash.mismatch"}  # fmt: skip


@pytest.fixture(scope="module")
def chain(tmp_path_factory) -> SigningChain:
    return make_signing_chain(tmp_path_factory.mktemp("chain"))


@pytest.fixture(scope="module")
def credentials(chain) -> ContentCredentials:
    return ContentCredentials.from_pem_files(chain.cert, chain.key)


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    t, y, x = np.mgrid[0:6, 0:48, 0:64]
    return np.stack([x * 3 + t * 10, y * 4, 100 + t * 20 + 0 * x], axis=-1).clip(0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def source(frames) -> SourcePicture:
    upload = io.BytesIO()
    Image.fromarray(frames[-1]).save(upload, format="JPEG")
    return SourcePicture(upload.getvalue(), "image/jpeg", title="picture.jpg")


@pytest.fixture(scope="module")
def unsigned(frames, tmp_path_factory) -> dict[str, bytes]:
    """One file of each kind we sign, as the render writes them."""
    folder = tmp_path_factory.mktemp("unsigned")
    return {
        "video/mp4": write_mp4(frames, folder / "video.mp4", fps=4).read_bytes(),
        "image/webp": write_preview(frames, folder / "preview.webp", fps=4).read_bytes(),
        "image/png": keyframe_png(frames[2], TEXT),
    }


def sign(credentials: ContentCredentials, data: bytes, media_type: str, source: SourcePicture) -> bytes:
    return credentials.sign(data, media_type, source=source, software_version="0.1.0", models=MODELS)


def read(data: bytes, media_type: str, trusted_root: Path | None = None) -> dict:
    settings = {"trust": {"user_anchors": trusted_root.read_text()}} if trusted_root else {}
    with c2pa.Reader(media_type, io.BytesIO(data), context=c2pa.Context.from_dict(settings)) as reader:
        return json.loads(reader.json())


def codes(store: dict, kind: str) -> list[str]:
    return [status["code"] for status in store["validation_results"]["activeManifest"][kind]]


MEDIA_TYPES = pytest.mark.parametrize("media_type", list(PAYLOAD))


@MEDIA_TYPES
def test_signed_file_declares_ai_generation_from_the_upload(credentials, unsigned, source, media_type):
    store = read(sign(credentials, unsigned[media_type], media_type, source), media_type)
    manifest = store["manifests"][store["active_manifest"]]
    assert manifest["claim_generator_info"][0]["name"] == "paints-undo"
    assert manifest["claim_generator_info"][0]["version"] == "0.1.0"
    (actions,) = [assertion for assertion in manifest["assertions"] if assertion["label"] == "c2pa.actions.v2"]
    (created,) = actions["data"]["actions"]
    assert created["action"] == "c2pa.created"
    assert created["digitalSourceType"] == TRAINED_ALGORITHMIC_MEDIA
    assert created["softwareAgent"] == {"name": "paints-undo", "version": "0.1.0"}
    assert created["parameters"]["models"] == MODELS
    (ingredient,) = manifest["ingredients"]
    assert ingredient["title"] == "picture.jpg" and ingredient["format"] == "image/jpeg"
    assert ingredient["relationship"] == "inputTo"
    # The action points at that ingredient (by a hashed link to its assertion).
    (link,) = created["parameters"]["ingredients"]
    assert link["url"].endswith(ingredient["label"])
    assert manifest["signature_info"]["common_name"] == "paints-undo test signer"


@MEDIA_TYPES
def test_signature_verifies_and_only_the_throwaway_root_is_untrusted(credentials, chain, unsigned, source, media_type):
    signed = sign(credentials, unsigned[media_type], media_type, source)
    store = read(signed, media_type)
    assert store["validation_state"] == "Valid"
    assert codes(store, "failure") == ["signingCredential.untrusted"]
    assert {"claimSignature.validated", "claimSignature.insideValidity"} <= set(codes(store, "success"))
    trusted = read(signed, media_type, trusted_root=chain.root)
    assert trusted["validation_state"] == "Trusted"
    assert codes(trusted, "failure") == []
    assert "signingCredential.trusted" in codes(trusted, "success")


@MEDIA_TYPES
def test_a_byte_changed_in_the_media_data_fails_validation(credentials, chain, unsigned, source, media_type):
    signed = bytearray(sign(credentials, unsigned[media_type], media_type, source))
    marker, skip = PAYLOAD[media_type]
    signed[signed.index(marker) + skip + 20] ^= 0xFF
    store = read(bytes(signed), media_type, trusted_root=chain.root)
    assert store["validation_state"] == "Invalid"
    assert MISMATCH[media_type] in codes(store, "failure")


def test_signed_video_still_plays_the_same_frames_with_its_index_first(credentials, unsigned, source, tmp_path):
    (tmp_path / "unsigned.mp4").write_bytes(unsigned["video/mp4"])
    (tmp_path / "signed.mp4").write_bytes(sign(credentials, unsigned["video/mp4"], "video/mp4", source))
    boxes = mp4_boxes(tmp_path / "signed.mp4")
    assert boxes.index("moov") < boxes.index("mdat")
    np.testing.assert_array_equal(read_mp4(tmp_path / "signed.mp4")[1], read_mp4(tmp_path / "unsigned.mp4")[1])


def test_signed_preview_is_still_the_same_animation(credentials, unsigned, source):
    before = Image.open(io.BytesIO(unsigned["image/webp"]))
    after = Image.open(io.BytesIO(sign(credentials, unsigned["image/webp"], "image/webp", source)))
    assert after.n_frames == before.n_frames == 6 and after.info["loop"] == 0
    for index in range(6):
        before.seek(index)
        after.seek(index)
        np.testing.assert_array_equal(np.asarray(after.convert("RGB")), np.asarray(before.convert("RGB")))


def test_signed_keyframe_keeps_its_text_and_pixels(credentials, unsigned, frames, source):
    signed = Image.open(io.BytesIO(sign(credentials, unsigned["image/png"], "image/png", source)))
    assert signed.text == TEXT
    np.testing.assert_array_equal(np.asarray(signed), frames[2])


def test_an_upload_with_its_own_credentials_stays_in_the_provenance_chain(credentials, unsigned, source):
    upload = SourcePicture(sign(credentials, unsigned["image/png"], "image/png", source), "image/png")
    store = read(sign(credentials, unsigned["image/png"], "image/png", upload), "image/png")
    (ingredient,) = store["manifests"][store["active_manifest"]]["ingredients"]
    assert ingredient["active_manifest"] in store["manifests"]  # the upload's manifest, carried along
    assert store["manifests"][ingredient["active_manifest"]]["ingredients"][0]["title"] == "picture.jpg"


def test_sign_file_replaces_the_file_and_leaves_no_temp_file(credentials, unsigned, source, tmp_path):
    path = tmp_path / "video.mp4"
    path.write_bytes(unsigned["video/mp4"])
    assert credentials.sign_file(path, "video/mp4", source=source, software_version="0.1.0", models=MODELS) == path
    assert read(path.read_bytes(), "video/mp4")["validation_state"] == "Valid"
    assert list(tmp_path.iterdir()) == [path]


def test_sign_file_that_fails_leaves_the_file_as_it_was(credentials, unsigned, source, tmp_path):
    path = tmp_path / "video.mp4"
    path.write_bytes(unsigned["video/mp4"])
    with pytest.raises(CredentialsError, match="c2pa could not sign .*video.mp4"):
        credentials.sign_file(path, "image/png", source=source, software_version="0.1.0", models=MODELS)
    assert path.read_bytes() == unsigned["video/mp4"]
    assert list(tmp_path.iterdir()) == [path]


def test_unsupported_media_types_are_refused(credentials, unsigned, source):
    with pytest.raises(InvalidInputError, match="Can sign video/mp4, image/webp, image/png files, got 'image/gif'"):
        sign(credentials, unsigned["image/png"], "image/gif", source)
    gif = SourcePicture(b"GIF89a", "image/gif")
    with pytest.raises(InvalidInputError, match="source picture's media type"):
        sign(credentials, unsigned["image/png"], "image/png", gif)


KEYS = [
    ("es384", lambda: ec.generate_private_key(ec.SECP384R1())),
    ("es512", lambda: ec.generate_private_key(ec.SECP521R1())),
    ("ed25519", ed25519.Ed25519PrivateKey.generate),
    ("ps256", lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)),
]  # fmt: skip


@pytest.mark.parametrize(("algorithm", "make_key"), KEYS, ids=[key[0] for key in KEYS])
def test_the_algorithm_follows_the_key(algorithm, make_key, unsigned, source, tmp_path):
    chain = make_signing_chain(tmp_path, make_key())
    credentials = ContentCredentials.from_pem_files(chain.cert, chain.key)
    assert credentials.algorithm == algorithm
    store = read(sign(credentials, unsigned["image/png"], "image/png", source), "image/png", trusted_root=chain.root)
    assert store["validation_state"] == "Trusted"


def test_a_traditional_openssl_key_file_works(chain, tmp_path):
    """`openssl ecparam -genkey` writes SEC1 ("EC PRIVATE KEY"), which c2pa itself does not read."""
    key = serialization.load_pem_private_key(chain.key.read_bytes(), password=None)
    sec1 = tmp_path / "sec1.pem"
    sec1.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    assert ContentCredentials.from_pem_files(chain.cert, sec1).algorithm == "es256"


def bad_files(chain: SigningChain, folder: Path) -> dict[str, tuple[Path, Path, str]]:
    """(certificate path, key path, expected message) for each way the PEM files can be wrong."""
    garbage = folder / "garbage.pem"
    garbage.write_text("not a PEM file\n")
    key = serialization.load_pem_private_key(chain.key.read_bytes(), password=None)
    encrypted = folder / "encrypted.pem"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    other = make_signing_chain(folder / "other")
    secp256k1 = make_signing_chain(folder / "secp256k1", ec.generate_private_key(ec.SECP256K1()))
    small_rsa = make_signing_chain(folder / "rsa1024", rsa.generate_private_key(public_exponent=65537, key_size=1024))
    month_ago = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=60)
    expired = make_signing_chain(folder / "expired", start=month_ago, days=30)
    return {
        "missing certificate": (folder / "nope.pem", chain.key, "Cannot read the C2PA signing certificate chain"),
        "missing key": (chain.cert, folder / "nope.pem", "Cannot read the C2PA signing key .*No such file"),
        "certificate not PEM": (garbage, chain.key, "holds no PEM certificate"),
        "key not PEM": (chain.cert, garbage, "is not a PEM private key"),
        "certificate as key": (chain.cert, chain.cert, "is not a PEM private key"),
        "encrypted key": (chain.cert, encrypted, "is encrypted: decrypt it"),
        "key of another certificate": (chain.cert, other.key, "does not belong to the first certificate"),
        "root first in the chain": (chain.root, chain.key, "does not belong to the first certificate"),
        "secp256k1 key": (secp256k1.cert, secp256k1.key, "secp256k1 EC key: C2PA signs with ECDSA P-256"),
        "1024-bit RSA key": (small_rsa.cert, small_rsa.key, "of 1024 bits: C2PA signs with"),
        "expired certificate": (expired.cert, expired.key, "c2pa refuses to sign .*not valid at time of signing"),
    }


BAD = ["missing certificate", "missing key", "certificate not PEM", "key not PEM", "certificate as key",
       "encrypted key", "key of another certificate", "root first in the chain", "secp256k1 key",
       "1024-bit RSA key", "expired certificate"]  # fmt: skip


@pytest.fixture(scope="module")
def bad(chain, tmp_path_factory) -> dict[str, tuple[Path, Path, str]]:
    return bad_files(chain, tmp_path_factory.mktemp("bad"))


@pytest.mark.parametrize("case", BAD)
def test_bad_pem_files_say_what_is_wrong(bad, case):
    cert_path, key_path, message = bad[case]
    with pytest.raises(CredentialsError, match=message):
        ContentCredentials.from_pem_files(cert_path, key_path)
