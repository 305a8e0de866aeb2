"""Tests for ml.evidence: reason codes, the canonical evidence blob, and the public re-check.

The re-check runs on real sealed blobs (ml.sealing) and real update bytes (ml.codec):
a disclosed content key must confirm exactly the rejection it was published for,
and nothing the aggregator could make up (a random key, another update's key, a
valid update, another reason) may pass.
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml import codec
from ml.evidence import (
    CONTENT_REASONS,
    MAX_DETAIL,
    NO_KEY_REASONS,
    REASON_CODES,
    Evidence,
    EvidenceFormatError,
    Recheck,
    RejectionEvidence,
    Verdict,
    check_rejection,
    content_key_for_evidence,
    reason_code,
    reason_of,
)
from ml.models import ModelSpec, tensor_names, tensor_shapes
from ml.sealing import HEADER_SIZE, SealContext, generate_keypair, seal

CONTRACT = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
ALICE = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
BOB = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
CAROL = "0x90F79bf6EB2c4f870365E785982E1f101E93b906"
KEY_A = bytes(range(32))
KEY_B = bytes(range(32, 64))

AGGREGATOR, VERIFIER_1, VERIFIER_2 = (generate_keypair() for _ in range(3))
COMMITTEE = [AGGREGATOR.public, VERIFIER_1.public, VERIFIER_2.public]
SPEC = ModelSpec("mlp", (4, 4, 1), 3, hidden=(5,))
BOUND = 10.0


def ctx(client: str = ALICE, round_id: int = 7) -> SealContext:
    return SealContext(chain_id=31337, contract=CONTRACT, round_id=round_id, client=client)


def weights(scale: float = 0.01, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(shape) * scale).astype(np.float32) for shape in tensor_shapes(SPEC)]


BASE = [np.zeros(shape, np.float32) for shape in tensor_shapes(SPEC)]


def validate(plaintext: bytes) -> str | None:
    """What the aggregator checks after opening (ml.rounds.collect_updates): the reason, or None."""
    try:
        update = codec.decode(plaintext, SPEC)
        codec.validate(update, SPEC)
    except codec.InvalidUpdateError as exc:
        return exc.reason
    norm = float(np.sqrt(sum(float(np.sum((u.astype(np.float64) - b) ** 2)) for u, b in zip(update, BASE))))
    return None if norm <= BOUND else "norm"


def sealed(update: list[np.ndarray] | bytes, client: str = ALICE, key: bytes | None = None) -> bytes:
    plain = update if isinstance(update, bytes) else codec.encode(update, tensor_names(SPEC))
    return seal(plain, COMMITTEE, ctx(client), content_key=key)


# --------------------------------------------------------------------------- reason codes


def test_reason_codes_are_stable() -> None:
    assert dict(REASON_CODES) == {
        "missing_blob": 1,
        "commitment_mismatch": 2,
        "cannot_open": 3,
        "decode": 4,
        "shape": 5,
        "non_finite": 6,
        "norm": 7,
        "names": 8,
        "dtype": 9,
        "size": 10,
        "missing_reveal": 11,
        "bad_reveal": 12,
        "bad_dealing": 13,
        "bad_vector": 14,
    }
    assert all(0 < code < 256 for code in REASON_CODES.values())
    for reason, code in REASON_CODES.items():
        assert reason_code(reason) == code and reason_of(code) == reason


def test_every_rejection_reason_has_a_code() -> None:
    """The codec's reasons and the aggregator's own (ml.rounds) all map to a code."""
    assert set(codec.REASONS) <= set(REASON_CODES)
    assert {"missing_blob", "commitment_mismatch", "cannot_open", "norm"} <= set(REASON_CODES)
    assert NO_KEY_REASONS | CONTENT_REASONS | {"cannot_open"} == set(REASON_CODES)
    assert not NO_KEY_REASONS & CONTENT_REASONS


@pytest.mark.parametrize("reason", ["", "unknown", "NORM", None, 7])
def test_unknown_reason_is_refused(reason: object) -> None:
    with pytest.raises(ValueError, match="unknown rejection reason"):
        reason_code(reason)  # type: ignore[arg-type]


@pytest.mark.parametrize("code", [0, 15, 255, -1, True, "1"])
def test_unknown_code_is_refused(code: object) -> None:
    with pytest.raises(ValueError, match="unknown rejection reason code"):
        reason_of(code)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- records


def test_rejection_evidence_normalises_and_validates() -> None:
    ev = RejectionEvidence(ALICE.lower(), "norm", bytearray(KEY_A), "L2 norm 12.5 > 10")
    assert ev.client == ALICE and ev.content_key == KEY_A and ev.code == 7
    with pytest.raises(ValueError, match="no content key"):
        RejectionEvidence(ALICE, "missing_blob", KEY_A)
    with pytest.raises(ValueError, match="must disclose"):
        RejectionEvidence(ALICE, "decode", None)
    with pytest.raises(ValueError, match="32 bytes"):
        RejectionEvidence(ALICE, "norm", b"short")
    with pytest.raises(ValueError, match="address"):
        RejectionEvidence("0x1234", "cannot_open", None)
    with pytest.raises(ValueError, match="unknown rejection reason"):
        RejectionEvidence(ALICE, "bad", None)
    with pytest.raises(ValueError, match="at most 200"):
        RejectionEvidence(ALICE, "cannot_open", None, "x" * (MAX_DETAIL + 1))
    with pytest.raises(ValueError, match="surrogates"):
        RejectionEvidence(ALICE, "cannot_open", None, "\ud800")
    assert RejectionEvidence(ALICE, "cannot_open", None).detail == ""


def test_create_truncates_detail_to_one_short_line() -> None:
    ev = RejectionEvidence.create(ALICE, "cannot_open", None, "line one\nline two " + "y" * 500)
    assert len(ev.detail) == MAX_DETAIL and ev.detail.endswith("…") and "\n" not in ev.detail
    assert ev.detail.startswith("line one line two")


def test_evidence_sorts_by_client_and_refuses_duplicates() -> None:
    a = RejectionEvidence(ALICE, "norm", KEY_A)
    b = RejectionEvidence(BOB, "missing_blob", None)
    c = RejectionEvidence(CAROL, "cannot_open", None)
    ev = Evidence(3, (a, b, c))
    assert [r.client.lower() for r in ev.rejections] == sorted(x.lower() for x in (ALICE, BOB, CAROL))
    assert Evidence(3, [c, a, b]) == ev
    assert ev.for_client(BOB.lower()) == b and ev.for_client("0x" + "11" * 20) is None
    with pytest.raises(ValueError, match="more than once"):
        Evidence(3, (a, RejectionEvidence(ALICE.lower(), "cannot_open", None)))
    with pytest.raises(ValueError, match="round_id"):
        Evidence(-1, ())
    with pytest.raises(ValueError, match="RejectionEvidence"):
        Evidence(1, ({"client": ALICE},))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- canonical encoding

FIXED = Evidence(
    7,
    (
        RejectionEvidence(ALICE, "norm", KEY_A, "L2 norm 12.5 above the bound 10"),
        RejectionEvidence(BOB, "missing_blob", None, "not served: ipfs://x-y"),
        RejectionEvidence(CAROL, "cannot_open", KEY_B, "entry 2 of 3 does not wrap the content key — ünïcode"),
    ),
)


def test_encoding_is_canonical_json() -> None:
    data = FIXED.encode()
    assert data.startswith(b'{"rejections":[{"client":"0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC","content_key":null,')
    assert data.endswith(b'"round_id":7,"version":1}')
    assert data == json.dumps(json.loads(data), sort_keys=True, separators=(",", ":"),
                             ensure_ascii=False).encode("utf-8")
    assert "ünïcode".encode() in data  # UTF-8, not \u escapes
    assert b'"content_key":"0x' + KEY_A.hex().encode() + b'"' in data
    assert json.loads(data) == json.loads(json.dumps(json.loads(data), sort_keys=True))


def test_hash_is_stable() -> None:
    """Computed once and pasted: changing the encoding changes every evidence hash on chain."""
    assert FIXED.hash().hex() == "2834133416cb7e43f46def37fa9557d2ffb5f822436a40164c2cbd525179a1d2"
    assert Evidence(0).encode() == b'{"rejections":[],"round_id":0,"version":1}'


def test_decode_round_trip() -> None:
    assert Evidence.decode(FIXED.encode()) == FIXED
    assert Evidence.decode(bytearray(FIXED.encode())) == FIXED
    assert Evidence.decode(Evidence(0).encode()) == Evidence(0)


def _mutated(change) -> bytes:
    document = json.loads(FIXED.encode())
    change(document)
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


_DOCUMENT = json.loads(FIXED.encode())
_UNSORTED_KEYS = json.dumps(  # the same fields in insertion order, not sorted
    {"version": 1, "round_id": _DOCUMENT["round_id"], "rejections": _DOCUMENT["rejections"]},
    separators=(",", ":"), ensure_ascii=False,
).encode()


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (FIXED.encode() + b"\n", "canonical"),
        (json.dumps(json.loads(FIXED.encode()), ensure_ascii=False).encode(), "canonical"),  # whitespace
        (_UNSORTED_KEYS, "canonical"),
        (json.dumps(json.loads(FIXED.encode()), sort_keys=True, separators=(",", ":")).encode(), "canonical"),
        (FIXED.encode().replace(ALICE.encode(), ALICE.lower().encode()), "canonical"),
        (_mutated(lambda d: d["rejections"].reverse()), "canonical"),
        (_mutated(lambda d: d["rejections"][1].update(content_key="0x" + KEY_A.hex().upper())), "lower-case hex"),
        (_mutated(lambda d: d["rejections"][1].update(content_key="0x" + "zz" * 32)), "not hex"),
        (_mutated(lambda d: d["rejections"][1].update(content_key=KEY_A.hex())), "0x and 64"),
        (_mutated(lambda d: d["rejections"][0].update(extra=1)), "unexpected \\['extra'\\]"),
        (_mutated(lambda d: d["rejections"][0].pop("detail")), "missing \\['detail'\\]"),
        (_mutated(lambda d: d["rejections"][0].update(reason="slow")), "unknown rejection reason"),
        (_mutated(lambda d: d["rejections"][0].update(detail=3)), "'detail' must be a string"),
        (_mutated(lambda d: d.update(version=2)), "version 2"),
        (_mutated(lambda d: d.update(version=True)), "version True"),
        (_mutated(lambda d: d.update(round_id=7.0)), "round_id"),
        (_mutated(lambda d: d.update(round_id="7")), "round_id"),
        (_mutated(lambda d: d.update(rejections={})), "must be a list"),
        (_mutated(lambda d: d["rejections"].append(d["rejections"][0])), "more than once"),
        (b'{"rejections":[],"round_id":NaN,"version":1}', "NaN is not allowed"),
        (b'{"rejections":[],"round_id":0,"round_id":0,"version":1}', "canonical"),
        (b"[1]", "JSON object"),
        (b"\xff\xfe", "not UTF-8"),
        (b"{", "not valid JSON"),
        (b"", "not valid JSON"),
    ],
)
def test_decode_refuses_non_canonical_or_invalid_input(data: bytes, match: str) -> None:
    with pytest.raises(EvidenceFormatError, match=match):
        Evidence.decode(data)


def test_decode_refuses_non_bytes() -> None:
    with pytest.raises(EvidenceFormatError, match="bytes"):
        Evidence.decode(FIXED.encode().decode())  # type: ignore[arg-type]


_ADDRESSES = st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex())
_REJECTION = st.builds(
    lambda client, reason, key, detail: RejectionEvidence(
        client, reason, None if reason in NO_KEY_REASONS or (reason == "cannot_open" and key is None) else key or KEY_A,
        detail),
    _ADDRESSES,
    st.sampled_from(sorted(REASON_CODES)),
    st.one_of(st.none(), st.binary(min_size=32, max_size=32)),
    st.text(max_size=MAX_DETAIL).filter(lambda t: not any(0xD800 <= ord(c) <= 0xDFFF for c in t)),
)


@settings(max_examples=60, deadline=None)
@given(round_id=st.integers(0, 2**256 - 1),
       rejections=st.lists(_REJECTION, max_size=6, unique_by=lambda r: r.client))
def test_any_evidence_round_trips_byte_for_byte(round_id: int, rejections: list[RejectionEvidence]) -> None:
    ev = Evidence(round_id, tuple(rejections))
    data = ev.encode()
    back = Evidence.decode(data)
    assert back == ev and back.encode() == data and back.hash() == ev.hash()
    assert Evidence(round_id, tuple(reversed(rejections))).encode() == data  # order-independent


# --------------------------------------------------------------------------- the public re-check


def test_content_rejections_are_confirmed_with_the_disclosed_key() -> None:
    cases = {
        "norm": codec.encode(weights(scale=50.0), tensor_names(SPEC)),
        "non_finite": codec.encode([np.full_like(w, np.nan) for w in weights()], tensor_names(SPEC)),
        "decode": b"not safetensors at all",
        "shape": codec.encode([w.reshape(-1) for w in weights()], tensor_names(SPEC)),
    }
    for reason, plain in cases.items():
        assert validate(plain) == reason  # the fixture really fails that way
        blob = sealed(plain)
        key = content_key_for_evidence(blob, AGGREGATOR.private, ctx())
        assert key is not None
        result = check_rejection(RejectionEvidence(ALICE, reason, key), blob, ctx(), validate, recipients=COMMITTEE)
        assert isinstance(result, Recheck) and result.verdict is Verdict.CONFIRMED and result.confirmed, result
        assert result.explanation.startswith(reason)


def test_a_valid_update_or_another_reason_is_refuted() -> None:
    blob = sealed(weights())
    key = content_key_for_evidence(blob, VERIFIER_2.private, ctx())
    result = check_rejection(RejectionEvidence(ALICE, "norm", key), blob, ctx(), validate)
    assert result.verdict is Verdict.REFUTED and "is valid" in result.explanation
    nan = sealed(codec.encode([np.full_like(w, np.inf) for w in weights()], tensor_names(SPEC)))
    key = content_key_for_evidence(nan, AGGREGATOR.private, ctx())
    result = check_rejection(RejectionEvidence(ALICE, "norm", key), nan, ctx(), validate)
    assert result.verdict is Verdict.REFUTED and "non_finite instead" in result.explanation
    result = check_rejection(RejectionEvidence(ALICE, "cannot_open", key), nan, ctx(), validate)
    assert result.verdict is Verdict.REFUTED and "opens with the disclosed key" in result.explanation


@pytest.mark.parametrize("reason", ["norm", "cannot_open"])
def test_a_forged_key_is_refuted_as_forged(reason: str) -> None:
    blob = sealed(weights(scale=50.0))
    for forged in (os.urandom(32), KEY_A):
        result = check_rejection(RejectionEvidence(ALICE, reason, forged), blob, ctx(), validate)
        assert result.verdict is Verdict.REFUTED and "forged" in result.explanation, result


def test_a_key_opens_exactly_its_update() -> None:
    """The key of one bad update of a client does not confirm anything about its other updates."""
    bad = sealed(weights(scale=50.0), key=KEY_A)
    good = sealed(weights(), key=KEY_B)
    assert check_rejection(RejectionEvidence(ALICE, "norm", KEY_A), bad, ctx(), validate).confirmed
    result = check_rejection(RejectionEvidence(ALICE, "norm", KEY_A), good, ctx(), validate)
    assert result.verdict is Verdict.REFUTED and "forged" in result.explanation
    # Nor an update of another client, or of another round, sealed with the same key bytes.
    bob = sealed(weights(scale=50.0), client=BOB, key=KEY_A)
    assert check_rejection(RejectionEvidence(BOB, "norm", KEY_A), bob, ctx(BOB), validate).confirmed
    other_round = seal(codec.encode(weights(scale=50.0), tensor_names(SPEC)), COMMITTEE, ctx(round_id=8),
                       content_key=KEY_A)
    result = check_rejection(RejectionEvidence(ALICE, "norm", KEY_A), other_round, ctx(), validate)
    assert result.verdict is Verdict.REFUTED and "forged" in result.explanation  # checked as round 7
    with pytest.raises(ValueError, match="context is for client"):
        check_rejection(RejectionEvidence(ALICE, "norm", KEY_A), bob, ctx(BOB), validate)


def test_a_bad_seal_with_the_blobs_own_key_confirms_cannot_open() -> None:
    """A verifier's entry wraps garbage: the aggregator's K is the blob's, so the public can see the bad entry."""
    blob = bytearray(sealed(weights(), key=KEY_A))
    blob[HEADER_SIZE + 80 * 2 + 40] ^= 1  # VERIFIER_2's wrapped key
    blob = bytes(blob)
    key = content_key_for_evidence(blob, AGGREGATOR.private, ctx())
    assert key == KEY_A
    result = check_rejection(RejectionEvidence(ALICE, "cannot_open", key), blob, ctx(), validate)
    assert result.confirmed and "entry 3 of 3" in result.explanation
    # The same K cannot pass this blob off as a content rejection.
    result = check_rejection(RejectionEvidence(ALICE, "norm", key), blob, ctx(), validate)
    assert result.verdict is Verdict.REFUTED and "would be cannot_open" in result.explanation
    # VERIFIER_2 has nothing to disclose: its own entry does not unwrap.
    assert content_key_for_evidence(blob, VERIFIER_2.private, ctx()) is None


def test_without_a_key_only_public_facts_are_confirmed() -> None:
    garbage = os.urandom(256)
    no_key = RejectionEvidence(ALICE, "cannot_open", None)
    assert check_rejection(no_key, garbage, ctx(), validate).confirmed
    short = seal(b"x", COMMITTEE[:2], ctx())  # a verifier left out
    assert content_key_for_evidence(short, VERIFIER_2.private, ctx()) is None
    result = check_rejection(no_key, short, ctx(), validate, recipients=COMMITTEE)
    assert result.confirmed and "missing 0x" in result.explanation
    # With the right recipients and no key, nothing public can be said.
    result = check_rejection(no_key, sealed(weights()), ctx(), validate, recipients=COMMITTEE)
    assert result.verdict is Verdict.NOT_PUBLIC and "own keys" in result.explanation
    # Recipients are checked with a key too.
    key = content_key_for_evidence(short, AGGREGATOR.private, ctx())
    assert key is not None
    assert check_rejection(RejectionEvidence(ALICE, "cannot_open", key), short, ctx(), validate,
                           recipients=COMMITTEE).confirmed
    assert not check_rejection(RejectionEvidence(ALICE, "cannot_open", key), short, ctx(), validate).confirmed


@pytest.mark.parametrize("reason", sorted(NO_KEY_REASONS))
def test_reasons_without_a_key_are_not_public(reason: str) -> None:
    result = check_rejection(RejectionEvidence(ALICE, reason, None), None, ctx(), validate)
    assert result.verdict is Verdict.NOT_PUBLIC and result.explanation.startswith(reason)
    assert not result.confirmed


def test_an_unavailable_blob_is_not_public() -> None:
    result = check_rejection(RejectionEvidence(ALICE, "norm", KEY_A), None, ctx(), validate)
    assert result.verdict is Verdict.NOT_PUBLIC and "not available" in result.explanation


def test_content_key_for_evidence_withholds_keys_that_would_look_forged() -> None:
    from tests.ml.test_sealing import hand_seal  # noqa: PLC0415 - the by-hand construction lives there

    plain = codec.encode(weights(), tensor_names(SPEC))
    # The aggregator's entry wraps another key than the one the ephemeral key came from.
    blob = hand_seal(plain, COMMITTEE, ctx(), KEY_A, wrapped_keys={0: KEY_B})
    assert content_key_for_evidence(blob, AGGREGATOR.private, ctx()) is None
    assert content_key_for_evidence(blob, VERIFIER_1.private, ctx()) == KEY_A  # a verifier can show it
    result = check_rejection(RejectionEvidence(ALICE, "cannot_open", KEY_A), blob, ctx(), validate)
    assert result.confirmed and "entry 1 of 3" in result.explanation
    # Had the aggregator disclosed what it unwrapped, everyone would call it forged.
    result = check_rejection(RejectionEvidence(ALICE, "cannot_open", KEY_B), blob, ctx(), validate)
    assert result.verdict is Verdict.REFUTED and "forged" in result.explanation
    assert content_key_for_evidence(blob, generate_keypair().private, ctx()) is None  # not a recipient


def test_check_rejection_refuses_wrong_types() -> None:
    with pytest.raises(TypeError):
        check_rejection({"client": ALICE}, b"", ctx(), validate)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        check_rejection(RejectionEvidence(ALICE, "cannot_open", None), b"", dataclasses.asdict(ctx()), validate)  # type: ignore[arg-type]
