// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

interface IFederatedLearning {
    function register(bytes32 encryptionKey) external payable;
    function requestExit() external;
    function withdrawStake() external;
    function withdrawRewards() external;
    function claimReward(uint256 roundId) external returns (uint256);
    function submitUpdate(uint256 roundId, bytes32 commitment, uint64 samples, string calldata locator) external;
}

/// @dev Test-only: a client contract that tries to re-enter the target when it
/// receives ether (during withdrawStake or withdrawRewards).
contract ReentrancyAttacker {
    IFederatedLearning public immutable target;
    /// 0 = do nothing, 1 = re-enter withdrawStake, 2 = re-enter withdrawRewards
    uint8 public mode;
    uint256 public reentryAttempts;
    uint256 public reentrySucceeded;
    bytes public lastRevertData;

    constructor(address target_) {
        target = IFederatedLearning(target_);
    }

    function setMode(uint8 mode_) external {
        mode = mode_;
    }

    function register(bytes32 key) external payable {
        target.register{value: msg.value}(key);
    }

    function requestExit() external {
        target.requestExit();
    }

    function submit(uint256 roundId, bytes32 commitment, uint64 samples) external {
        target.submitUpdate(roundId, commitment, samples, "");
    }

    function claim(uint256 roundId) external {
        target.claimReward(roundId);
    }

    function withdrawStake() external {
        target.withdrawStake();
    }

    function withdrawRewards() external {
        target.withdrawRewards();
    }

    receive() external payable {
        if (mode == 0 || reentryAttempts > 0) return;
        reentryAttempts += 1;
        try this.reenter() {
            reentrySucceeded += 1;
        } catch (bytes memory data) {
            lastRevertData = data;
        }
    }

    function reenter() external {
        require(msg.sender == address(this), "only self");
        if (mode == 1) target.withdrawStake();
        else target.withdrawRewards();
    }
}
