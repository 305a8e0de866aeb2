// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @dev Benchmark baseline only: the design this project avoids. Each client
/// writes its whole weight vector (float32 little-endian bytes) into contract
/// storage, as early blockchain-FL prototypes did, so the submission's gas grows
/// with the model size. Compare its submitUpdate gas with FederatedLearning's.
contract NaiveWeightsOnChain {
    struct Update {
        bytes weights;
        uint64 samples;
    }

    uint256 public currentRound = 1;
    mapping(uint256 roundId => mapping(address client => Update)) private _updates;

    event UpdateSubmitted(uint256 indexed roundId, address indexed client, uint256 size, uint256 samples);

    error AlreadySubmitted(uint256 roundId, address client);

    /// @notice Stores the weights themselves on chain.
    function submitUpdate(uint256 roundId, bytes calldata weights, uint64 samples) external {
        Update storage u = _updates[roundId][msg.sender];
        if (u.samples != 0) revert AlreadySubmitted(roundId, msg.sender);
        u.weights = weights;
        u.samples = samples;
        emit UpdateSubmitted(roundId, msg.sender, weights.length, samples);
    }

    /// @notice The stored weights of a client in a round.
    function weightsOf(uint256 roundId, address client) external view returns (bytes memory) {
        return _updates[roundId][client].weights;
    }
}
