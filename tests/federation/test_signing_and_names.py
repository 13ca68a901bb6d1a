"""Request signatures and released-file names, as properties."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from tre.federation.names import file_name_for, is_file_name
from tre.federation.signing import (
    NONCE,
    SignatureError,
    encode_public_key,
    parse_public_key,
    sign_request,
    verify_request,
)

KEY = Ed25519PrivateKey.generate()


@given(st.text(min_size=1, max_size=400))
def test_any_output_path_becomes_one_safe_segment(path: str) -> None:
    name = file_name_for(path)
    assert is_file_name(name), name
    assert "/" not in name and name not in (".", "..")


def test_names_stay_readable_and_dots_never_pass() -> None:
    assert file_name_for("plots/roc curve.png") == "plots__roc curve.png"
    assert file_name_for("..") == "_."
    assert not is_file_name("..") and not is_file_name("a/b") and is_file_name("summary.csv")


@given(
    st.binary(max_size=2000),
    st.sampled_from(["GET", "POST", "PUT"]),
    st.from_regex(r"/[a-z0-9/]{0,40}", fullmatch=True),
)
def test_a_signature_verifies_only_what_was_signed(body: bytes, method: str, path: str) -> None:
    pub = parse_public_key(encode_public_key(KEY))
    headers = sign_request(KEY, "node-a", method, path, body)
    assert verify_request(pub, headers, method, path, body) == headers[NONCE]
    for changed in ((method, path + "x", body), (method, path, body + b"x"), ("DELETE", path, body)):
        try:
            verify_request(pub, headers, *changed)
        except SignatureError:
            continue
        raise AssertionError(f"{changed} verified")
