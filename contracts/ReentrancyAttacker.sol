// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

interface IFederatedLearning {
    function register(bytes32 encryptionKey) external payable;
    function requestExit() external;
    function withdrawStake() external;
    function withdrawRewards() external;
    function withdrawTreasury() external returns (uint256);
    function claimReward(uint256 roundId) external returns (uint256);
    function submitUpdate(uint256 roundId, bytes32 commitment, uint64 samples, string calldata locator) external;
}

/// @dev Test-only: a party (client, and in some tests also admin, aggregator and treasury) that,
/// when it receives ether (withdrawStake, withdrawRewards, withdrawTreasury), calls the target
/// once more with arbitrary calldata and value and records whether that re-entry succeeded.
contract ReentrancyAttacker {
    address public target;
    /// Calldata sent to `target` from receive() (empty: receive() only accepts the ether).
    bytes public reentryCall;
    /// Wei attached to the re-entry (taken from this contract's balance).
    uint256 public reentryValue;
    uint256 public reentryAttempts;
    uint256 public reentrySucceeded;
    bytes public lastRevertData;
    bytes public lastReturnData;

    constructor(address target_) {
        target = target_;
    }

    /// @notice Aim at another contract (a job deployed with this contract as its treasury).
    function setTarget(address target_) external {
        target = target_;
    }

    /// @notice Re-enter with `data` (and `value` wei) on the next ether received; empty disables.
    function setReentry(bytes calldata data, uint256 value) external {
        reentryCall = data;
        reentryValue = value;
        reentryAttempts = 0;
        reentrySucceeded = 0;
        delete lastRevertData;
        delete lastReturnData;
    }

    /// @notice Shorthand kept for the first tests: 0 = none, 1 = withdrawStake, 2 = withdrawRewards.
    function setMode(uint8 mode) external {
        if (mode == 0) delete reentryCall;
        else if (mode == 1) reentryCall = abi.encodeCall(IFederatedLearning.withdrawStake, ());
        else reentryCall = abi.encodeCall(IFederatedLearning.withdrawRewards, ());
        reentryValue = 0;
    }

    /// @notice Call the target as this contract (any function, any role it holds); bubbles reverts.
    function exec(bytes calldata data) external payable returns (bytes memory ret) {
        bool ok;
        (ok, ret) = target.call{value: msg.value}(data);
        if (!ok) {
            assembly {
                revert(add(ret, 32), mload(ret))
            }
        }
    }

    function register(bytes32 key) external payable {
        IFederatedLearning(target).register{value: msg.value}(key);
    }

    function requestExit() external {
        IFederatedLearning(target).requestExit();
    }

    function submit(uint256 roundId, bytes32 commitment, uint64 samples) external {
        IFederatedLearning(target).submitUpdate(roundId, commitment, samples, "");
    }

    function claim(uint256 roundId) external {
        IFederatedLearning(target).claimReward(roundId);
    }

    function withdrawStake() external {
        IFederatedLearning(target).withdrawStake();
    }

    function withdrawRewards() external {
        IFederatedLearning(target).withdrawRewards();
    }

    function withdrawTreasury() external {
        IFederatedLearning(target).withdrawTreasury();
    }

    receive() external payable {
        if (reentryCall.length == 0 || reentryAttempts > 0) return;
        reentryAttempts += 1;
        (bool ok, bytes memory ret) = target.call{value: reentryValue}(reentryCall);
        if (ok) {
            reentrySucceeded += 1;
            lastReturnData = ret;
        } else {
            lastRevertData = ret;
        }
    }
}
