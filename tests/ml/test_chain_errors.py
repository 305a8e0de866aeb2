"""Reverts reach the user as the contract's custom error by name, even when Ape does not decode them."""
from __future__ import annotations

from ape import project
from eth_abi import encode

from ml.chain import ERROR_HINTS, _decode_with_abi, _revert_data

# The selector written out by hand: keccak256("CommitmentAlreadyUsed(bytes32)")[:4].
COMMITMENT_ALREADY_USED = bytes.fromhex("30c56f31")


def test_undecoded_revert_is_decoded_from_the_contract_abi():
    """Ape can hand back ContractLogicError('b"0\\xc5o1..."') when its address lookup misses: decode it ourselves."""
    data = COMMITMENT_ALREADY_USED + encode(["bytes32"], [b"\x11" * 32])

    class Undecoded(Exception):
        revert_message = repr(data)

    raw = _revert_data(Undecoded(repr(data)))
    assert raw == data
    err = _decode_with_abi("submitUpdate by 0xabc", raw, project.FederatedLearning.contract_type)
    assert err is not None and err.error_name == "CommitmentAlreadyUsed"
    assert err.inputs == {"commitment": b"\x11" * 32}
    assert ERROR_HINTS["CommitmentAlreadyUsed"] in str(err)


def test_hex_revert_data_and_unknown_selector():
    data = COMMITMENT_ALREADY_USED + encode(["bytes32"], [b"\x22" * 32])

    class Hex(Exception):
        revert_message = "0x" + data.hex()

    assert _revert_data(Hex()) == data
    assert _decode_with_abi("x", b"\xde\xad\xbe\xef", project.FederatedLearning.contract_type) is None
    assert _revert_data(Exception("execution reverted")) is None
