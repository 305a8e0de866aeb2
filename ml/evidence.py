"""Evidence of rejections: what the aggregator publishes so that anyone can re-check them.

When the aggregator rejects an update (and the client is slashed), the round's
outcome names the client and a reason code, and the *evidence blob* (its hash in
the outcome) says why. For a reason about the update's content (decode, shape,
non-finite, norm, ...) and for a seal that is invalid although it names its
content key correctly, the evidence discloses that one update's content key K:
anyone can then open exactly that update with
:func:`ml.sealing.open_with_content_key` and re-check the reason, and no other
update is exposed (see the module docstring of :mod:`ml.sealing`). Reasons with
nothing to show (``missing_blob``, ``commitment_mismatch``, or ``cannot_open``
when the rejecting party's own entry does not unwrap) are checked by the
verifiers, who fetch the blob and open it with their own keys.

Everything here is pure: no chain, no store, no I/O. The byte encoding is
canonical (one evidence, one byte string, one keccak-256), and :meth:`Evidence.decode`
refuses anything else.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, NamedTuple

from eth_utils import is_hex_address, keccak, to_checksum_address

from .sealing import (
    KEY_SIZE,
    SealContext,
    SealError,
    SealEvidenceError,
    SealFormatError,
    SealRecipientsError,
    open_with_content_key,
    recipients_of,
    require_recipients,
    unwrap_content_key,
)

__all__ = [
    "REASON_CODES",
    "NO_KEY_REASONS",
    "CONTENT_REASONS",
    "MAX_DETAIL",
    "EVIDENCE_VERSION",
    "reason_code",
    "reason_of",
    "EvidenceFormatError",
    "RejectionEvidence",
    "Evidence",
    "Verdict",
    "Recheck",
    "check_rejection",
    "content_key_for_evidence",
]

REASON_CODES: Final[Mapping[str, int]] = MappingProxyType(
    {
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
)
"""Rejection reason -> the uint8 code recorded on chain. Stable: never renumber, only append.

Covers the aggregator's own reasons (ml.rounds) and every ``InvalidUpdateError``
reason of ml.codec. Code 0 is reserved for "no reason" (not rejected).
"""
_REASONS_BY_CODE: Final[Mapping[int, str]] = MappingProxyType({v: k for k, v in REASON_CODES.items()})

NO_KEY_REASONS: Final = frozenset({"missing_blob", "commitment_mismatch", "missing_reveal", "bad_reveal",
                                   "bad_dealing", "bad_vector"})
"""Reasons that never come with a content key: there is no (right) blob to open."""
CONTENT_REASONS: Final = frozenset({"decode", "shape", "non_finite", "norm", "names", "dtype", "size"})
"""Reasons about an update that opened: the evidence must disclose its content key."""
MAX_DETAIL: Final = 200
"""Longest ``detail`` in characters; :meth:`RejectionEvidence.create` truncates to it."""
EVIDENCE_VERSION: Final = 1


def reason_code(reason: str) -> int:
    """The uint8 code of a rejection reason; ValueError for an unknown one."""
    try:
        return REASON_CODES[reason]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown rejection reason {reason!r}; known: {', '.join(REASON_CODES)}"
        ) from None


def reason_of(code: int) -> str:
    """The rejection reason of a uint8 code; ValueError for an unknown one."""
    if isinstance(code, bool) or not isinstance(code, int) or code not in _REASONS_BY_CODE:
        raise ValueError(f"unknown rejection reason code {code!r}; known: 1..{max(_REASONS_BY_CODE)}")
    return _REASONS_BY_CODE[code]


class EvidenceFormatError(ValueError):
    """An evidence blob is not the canonical encoding of valid evidence."""


# --------------------------------------------------------------------------- records


def _checksum(value: object, what: str) -> str:
    if not isinstance(value, str) or not is_hex_address(value):
        raise ValueError(f"{what} must be a 0x-prefixed 20-byte hex address, got {value!r}")
    return to_checksum_address(value)


@dataclass(frozen=True)
class RejectionEvidence:
    """Why one client's update was rejected, and the key that lets anyone check it.

    ``client`` is normalised to its checksum form. ``content_key`` is the update's
    disclosed content key K, or None when the rejecting party has none to show
    (always for ``missing_blob`` and ``commitment_mismatch``; for ``cannot_open``
    when its own entry does not unwrap). Content reasons require a key.
    ``detail`` is a short human-readable note (at most :data:`MAX_DETAIL` characters).
    """

    client: str
    reason: str
    content_key: bytes | None
    detail: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "client", _checksum(self.client, "client"))
        reason_code(self.reason)
        key = self.content_key
        if key is not None:
            if not isinstance(key, (bytes, bytearray, memoryview)) or len(bytes(key)) != KEY_SIZE:
                raise ValueError(f"content_key must be {KEY_SIZE} bytes or None, got {key!r}")
            object.__setattr__(self, "content_key", bytes(key))
        if self.reason in NO_KEY_REASONS and key is not None:
            raise ValueError(f"a {self.reason} rejection has no content key to disclose")
        if self.reason in CONTENT_REASONS and key is None:
            raise ValueError(
                f"a {self.reason} rejection must disclose the update's content key, "
                "or nobody can re-check it"
            )
        if not isinstance(self.detail, str) or len(self.detail) > MAX_DETAIL:
            raise ValueError(f"detail must be a string of at most {MAX_DETAIL} characters")
        try:
            self.detail.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("detail must be valid Unicode text (no lone surrogates)") from None

    @classmethod
    def create(
        cls, client: str, reason: str, content_key: bytes | None = None, detail: str = ""
    ) -> RejectionEvidence:
        """Like the constructor, but truncates ``detail`` to :data:`MAX_DETAIL` characters."""
        text = " ".join(str(detail).split())  # one line
        text = text.encode("utf-8", "replace").decode("utf-8")
        if len(text) > MAX_DETAIL:
            text = text[: MAX_DETAIL - 1] + "…"
        return cls(client, reason, content_key, text)

    @property
    def code(self) -> int:
        """The reason's uint8 code (:data:`REASON_CODES`)."""
        return REASON_CODES[self.reason]

    def _to_json(self) -> dict[str, Any]:
        return {
            "client": self.client,
            "content_key": None if self.content_key is None else "0x" + self.content_key.hex(),
            "detail": self.detail,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Evidence:
    """Every rejection of one round, sorted by client address (lower-case): one canonical form.

    At most one rejection per client (a client submits one update per round).
    """

    round_id: int
    rejections: tuple[RejectionEvidence, ...] = ()
    # A DP round's noise secret, sealed to the aggregator and the committee (ml.rounds.RoundDP): the
    # verifiers open it to re-derive the noise; the public sees only that it is there.
    dp_secret: bytes | None = None

    def __post_init__(self) -> None:
        if self.dp_secret is not None and (not isinstance(self.dp_secret, (bytes, bytearray)) or not self.dp_secret):
            raise ValueError("dp_secret must be non-empty bytes or None")
        if isinstance(self.round_id, bool) or not isinstance(self.round_id, int) or not (
            0 <= self.round_id < 2**256
        ):
            raise ValueError(f"round_id must be an integer in [0, 2**256), got {self.round_id!r}")
        items = tuple(self.rejections)
        for item in items:
            if not isinstance(item, RejectionEvidence):
                raise ValueError(f"rejections must be RejectionEvidence, not {type(item).__name__}")
        ordered = tuple(sorted(items, key=lambda r: r.client.lower()))
        for first, second in zip(ordered, ordered[1:]):
            if first.client == second.client:
                raise ValueError(f"client {first.client} is rejected more than once")
        object.__setattr__(self, "rejections", ordered)

    def for_client(self, client: str) -> RejectionEvidence | None:
        """The rejection of ``client`` (any case), or None."""
        wanted = _checksum(client, "client")
        return next((r for r in self.rejections if r.client == wanted), None)

    def encode(self) -> bytes:
        """Canonical JSON: sorted keys, no whitespace, lower-case 0x-hex keys, UTF-8."""
        document: dict[str, Any] = {
            "rejections": [r._to_json() for r in self.rejections],
            "round_id": self.round_id,
            "version": EVIDENCE_VERSION,
        }
        if self.dp_secret is not None:  # absent, not null, without DP: older evidence keeps its bytes
            document["dp_secret"] = "0x" + bytes(self.dp_secret).hex()
        return json.dumps(
            document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode("utf-8")

    def hash(self) -> bytes:
        """keccak-256 of :meth:`encode`: what the round's outcome records."""
        return keccak(self.encode())

    @classmethod
    def decode(cls, data: bytes) -> Evidence:
        """Parse an evidence blob; :class:`EvidenceFormatError` unless it is exactly canonical."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise EvidenceFormatError(f"evidence must be bytes, not {type(data).__name__}")
        raw = bytes(data)
        try:
            document = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
        except UnicodeDecodeError:
            raise EvidenceFormatError("evidence is not UTF-8 text") from None
        except ValueError as exc:  # JSONDecodeError, NaN/Infinity, too many digits
            raise EvidenceFormatError(f"evidence is not valid JSON: {exc}") from None
        try:
            evidence = cls._from_json(document)
        except EvidenceFormatError:
            raise
        except ValueError as exc:
            raise EvidenceFormatError(f"evidence is invalid: {exc}") from None
        if evidence.encode() != raw:
            raise EvidenceFormatError(
                "evidence is not in canonical form (sorted keys, no whitespace, checksummed "
                "addresses, lower-case hex, rejections sorted by client, no escaped "
                "non-ASCII); it must be exactly what Evidence.encode() writes"
            )
        return evidence

    @classmethod
    def _from_json(cls, document: object) -> Evidence:
        keys = {"rejections", "round_id", "version"}
        _expect_keys(document, keys | ({"dp_secret"} & set(document)) if isinstance(document, dict) else keys,
                     "evidence")
        assert isinstance(document, dict)
        dp_secret = None
        if "dp_secret" in document:
            raw = document["dp_secret"]
            digits = raw[2:] if isinstance(raw, str) and raw.startswith("0x") else None
            if not digits or len(digits) % 2 or digits != digits.lower():
                raise EvidenceFormatError("evidence 'dp_secret' must be 0x and an even number of lower-case hex digits")
            try:
                dp_secret = bytes.fromhex(digits)
            except ValueError:
                raise EvidenceFormatError("evidence 'dp_secret' is not hex") from None
        if document["version"] != EVIDENCE_VERSION or isinstance(document["version"], bool):
            raise EvidenceFormatError(
                f"evidence has version {document['version']!r}, this code reads version "
                f"{EVIDENCE_VERSION} only"
            )
        if not isinstance(document["rejections"], list):
            raise EvidenceFormatError("evidence 'rejections' must be a list")
        rejections = []
        for i, item in enumerate(document["rejections"]):
            what = f"rejection #{i + 1}"
            _expect_keys(item, {"client", "content_key", "detail", "reason"}, what)
            for name in ("client", "detail", "reason"):
                if not isinstance(item[name], str):
                    raise EvidenceFormatError(f"{what}: '{name}' must be a string")
            rejections.append(
                RejectionEvidence(item["client"], item["reason"], _key_from_hex(item["content_key"], what),
                                  item["detail"])
            )
        return cls(document["round_id"], tuple(rejections), dp_secret)


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not allowed")


def _expect_keys(value: object, keys: set[str], what: str) -> None:
    if not isinstance(value, dict):
        raise EvidenceFormatError(f"{what} must be a JSON object")
    if set(value) != keys:
        missing, extra = sorted(keys - set(value)), sorted(set(value) - keys)
        raise EvidenceFormatError(f"{what} has fields {sorted(value)}: missing {missing}, unexpected {extra}")


def _key_from_hex(value: object, what: str) -> bytes | None:
    if value is None:
        return None
    digits = value[2:] if isinstance(value, str) and value.startswith("0x") else None
    if digits is None or len(digits) != 2 * KEY_SIZE or digits != digits.lower():
        raise EvidenceFormatError(f"{what}: 'content_key' must be null or 0x and {2 * KEY_SIZE} lower-case hex digits")
    try:
        return bytes.fromhex(digits)
    except ValueError:
        raise EvidenceFormatError(f"{what}: 'content_key' is not hex") from None


# --------------------------------------------------------------------------- re-checking


class Verdict(enum.StrEnum):
    """The outcome of re-checking one rejection from public data."""

    CONFIRMED = "confirmed"
    """The evidence proves the rejection, reason included."""
    REFUTED = "refuted"
    """The evidence does not support the rejection (a forged key, a valid update, another reason)."""
    NOT_PUBLIC = "not_public"
    """Nothing public to check: a verifier re-checks it with its own key and its own fetch."""


class Recheck(NamedTuple):
    verdict: Verdict
    explanation: str
    """One line saying what was checked and found."""

    @property
    def confirmed(self) -> bool:
        return self.verdict is Verdict.CONFIRMED


Validate = Callable[[bytes], "str | None"]
"""Decodes and validates an opened update: the rejection reason it deserves, or None if valid."""


def check_rejection(
    evidence: RejectionEvidence,
    blob: bytes | None,
    context: SealContext,
    validate: Validate,
    *,
    recipients: bytes | str | Sequence[bytes | str] | None = None,
) -> Recheck:
    """Re-check one rejection with public data only.

    ``blob`` is the client's sealed update (the caller checks it against the
    commitment on chain), or None if the caller could not get it. ``context`` is
    the update's (chain, contract, round, client). ``validate`` decodes and
    validates an opened update exactly as the aggregator does (same spec, base
    model and norm bound) and returns the reason it fails with, or None.
    ``recipients``, the job's aggregator and verifier keys in the contract's
    order, makes a seal that leaves one out count as ``cannot_open``.

    * With a disclosed key, a content reason is confirmed iff the blob opens
      with it (full check) and ``validate`` returns exactly that reason;
      ``cannot_open`` is confirmed iff the key is the blob's (it reproduces the
      ephemeral public key) and the seal still fails a check (an entry, the
      recipients, the body). A key that is not the blob's is *forged*: refuted.
    * Without a key, ``cannot_open`` is confirmed when the blob is publicly
      malformed or sealed to the wrong recipients; otherwise, and for
      ``missing_blob`` and ``commitment_mismatch``, the verdict is not public.
    """
    if not isinstance(evidence, RejectionEvidence):
        raise TypeError(f"evidence must be a RejectionEvidence, not {type(evidence).__name__}")
    if not isinstance(context, SealContext):
        raise TypeError(f"context must be a SealContext, not {type(context).__name__}")
    if context.client != evidence.client:
        raise ValueError(f"the context is for client {context.client}, the evidence for {evidence.client}")
    reason = evidence.reason
    if reason in NO_KEY_REASONS:
        return Recheck(Verdict.NOT_PUBLIC, f"{reason}: there is no key to show; verifiers fetch the "
                                           "committed blob themselves before they attest")
    if blob is None:
        return Recheck(Verdict.NOT_PUBLIC, f"{reason}: the client's blob is not available to this "
                                           "checker; fetch the blob it committed to and check again")
    if evidence.content_key is None:  # only cannot_open gets here
        try:
            if recipients is None:
                recipients_of(blob)
            else:
                require_recipients(blob, recipients)
        except SealFormatError as exc:
            return Recheck(Verdict.CONFIRMED, f"cannot_open: the blob is not a valid sealed update ({exc})")
        except SealRecipientsError as exc:
            return Recheck(Verdict.CONFIRMED, f"cannot_open: {exc}")
        return Recheck(Verdict.NOT_PUBLIC, "cannot_open without a disclosed key: the rejecting "
                                           "party's own entry does not unwrap; verifiers re-check it "
                                           "with their own keys")
    try:
        plaintext = open_with_content_key(blob, evidence.content_key, context, recipients=recipients)
    except SealFormatError as exc:
        return _invalid_seal(reason, f"the blob is not a valid sealed update ({exc})")
    except SealEvidenceError as exc:
        return Recheck(Verdict.REFUTED, f"{reason}: forged content key, it is not this blob's ({exc})")
    except SealError as exc:
        return _invalid_seal(reason, str(exc))
    if reason == "cannot_open":
        return Recheck(Verdict.REFUTED, "cannot_open: the blob opens with the disclosed key and "
                                        "passes every seal check")
    found_reason = validate(plaintext)
    if found_reason == reason:
        return Recheck(Verdict.CONFIRMED, f"{reason}: the update opens with the disclosed key and "
                                          f"fails validation with {reason}")
    if found_reason is None:
        return Recheck(Verdict.REFUTED, f"{reason}: the update opens with the disclosed key and is valid")
    return Recheck(Verdict.REFUTED, f"{reason}: the update opens with the disclosed key but fails "
                                    f"validation with {found_reason} instead")


def _invalid_seal(reason: str, why: str) -> Recheck:
    if reason == "cannot_open":
        return Recheck(Verdict.CONFIRMED, f"cannot_open: the disclosed key is the blob's and the seal "
                                          f"is invalid: {why}")
    return Recheck(Verdict.REFUTED, f"{reason}: the seal itself is invalid, so the reason would be "
                                    f"cannot_open ({why})")


def content_key_for_evidence(
    blob: bytes,
    private_key: bytes | str,
    context: SealContext,
) -> bytes | None:
    """The content key a rejecting recipient may disclose for ``blob``, or None.

    K is returned only if it is provably this blob's (it reproduces the blob's
    ephemeral public key), so that :func:`check_rejection` can confirm the
    rejection. When this party's entry does not unwrap, or unwraps to a key
    that is not the blob's, there is nothing publicly checkable to show (the
    rejection is ``cannot_open`` with no key, re-checked by the verifiers); a
    key that fails the ephemeral check would look forged to everyone.
    """
    try:
        key = unwrap_content_key(blob, private_key, context)
    except SealError:
        return None
    try:
        open_with_content_key(blob, key, context)
    except SealEvidenceError:
        return None  # not provably the blob's key: disclosing it would look like a forgery
    except SealError:
        pass  # the blob's own key, and the seal is invalid: evidence of exactly that
    return key
