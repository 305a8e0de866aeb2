// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {Address} from "@openzeppelin/contracts/utils/Address.sol";

/**
 * @title FederatedLearning
 * @notice Neutral referee of one federated-learning job: client registry with
 * stakes, the round lifecycle, each participant's weighted contribution
 * (FedAvg weights are sample counts), rewards (pull payments) and slashing.
 *
 * Model weights never touch the chain: clients store their sealed update off
 * chain and submit only its keccak-256 commitment and sample count; the
 * aggregator publishes the new global model off chain and records its hash.
 * Every round can therefore be re-computed from the recorded commitments.
 *
 * Gas: submitting costs the same whatever the model size; finalizing is
 * O(rejected + excluded), never O(clients); register, claim and withdraw are O(1).
 */
contract FederatedLearning is AccessControl, ReentrancyGuard {
    using Address for address payable;

    /// @notice Role allowed to start, finalize and cancel rounds.
    bytes32 public constant AGGREGATOR_ROLE = keccak256("AGGREGATOR_ROLE");

    /// @notice Basis-point denominator of the slash fraction.
    uint256 public constant BPS = 10_000;

    /// @notice Deployment parameters (fixed for the job, but the aggregator key).
    struct Params {
        uint256 minStake; // wei a client must stake to register and to submit
        uint64 unbondingPeriod; // seconds between requestExit and withdrawStake
        uint64 submissionPeriod; // seconds a round accepts updates
        uint64 gracePeriod; // seconds after the deadline before anyone may cancel
        uint32 quorum; // minimum accepted updates to finalize (>= 1)
        uint32 maxUpdatesPerRound; // 0 = no cap
        uint64 maxSamplesPerUpdate; // cap on the weight one update can claim
        uint16 slashBps; // fraction of the stake a rejected update loses
        uint256 rewardPerRound; // wei allocated to each finalized round (if funded)
        uint256 normBound; // published L2 bound of an update's delta, 1e6 fixed point; 0 = none
        bytes32 modelSpecHash; // keccak of the canonical model spec (the task)
        bytes32 initialModelHash; // keccak of the initial global model blob
        bytes32 aggregatorKey; // X25519 public key updates are sealed to
    }

    enum ClientStatus {
        None,
        Active,
        Exiting
    }

    struct Client {
        uint256 stake;
        bytes32 encryptionKey;
        uint64 exitRequestedAt;
        uint64 lastSubmittedRound;
        ClientStatus status;
    }

    enum Phase {
        None,
        Open,
        Finalized,
        Cancelled
    }

    struct Round {
        bytes32 baseModelHash;
        bytes32 modelHash;
        uint64 startedAt;
        uint64 deadline;
        uint32 submissions;
        uint32 rejected;
        uint32 excluded;
        uint32 claims;
        Phase phase;
        uint256 submittedWeight;
        uint256 acceptedWeight;
        uint256 reward;
        uint256 rewardClaimed;
    }

    enum UpdateStatus {
        None,
        Submitted, // accepted once the round is finalized (unless listed below)
        Rejected,
        Excluded,
        Claimed
    }

    struct Update {
        bytes32 commitment;
        uint64 samples;
        UpdateStatus status;
    }

    Params private _params;

    mapping(address client => Client) private _clients;
    mapping(uint256 roundId => Round) private _rounds;
    mapping(uint256 roundId => mapping(address client => Update)) private _updates;
    mapping(bytes32 commitment => bool) public commitmentUsed;
    mapping(address client => uint256) public owed;
    /// @dev Submitters of an open round that have since requested exit: they no
    /// longer count in `activeClients`, so they must not count as active submissions.
    mapping(uint256 roundId => uint256) private _exitedSubmitters;

    /// @notice The latest round started (0 before the first).
    uint256 public currentRound;
    /// @notice Hash of the latest finalized global model (the initial one before).
    bytes32 public latestModelHash;
    /// @notice Clients whose status is Active.
    uint256 public activeClients;
    /// @notice Sum of all stakes held.
    uint256 public totalStaked;
    /// @notice Rewards credited to clients and not yet withdrawn.
    uint256 public totalOwed;
    /// @notice Rewards allocated to finalized rounds and not yet claimed.
    uint256 public totalAllocated;
    /// @notice Funds available for future rounds (funding, slashes, dust).
    uint256 public rewardPool;

    // ---------------------------------------------------------------- errors

    error InvalidParams(string reason);
    error ZeroAddress();
    error AlreadyRegistered(address client);
    error NotRegistered(address client);
    error NotActive(address client);
    error InsufficientStake(uint256 sent, uint256 minimum);
    error StakeBelowMinimum(uint256 stake, uint256 minimum);
    error ZeroEncryptionKey();
    error ZeroValue();
    error NotExiting(address client);
    error StillUnbonding(uint256 unlockTime);
    error UpdatePending(uint256 roundId);
    error RoundStillOpen(uint256 roundId);
    error RoundNotOpen(uint256 roundId);
    error NotCurrentRound(uint256 roundId, uint256 current);
    error DeadlinePassed(uint256 deadline);
    error DeadlineNotReached(uint256 deadline);
    error GracePeriodNotOver(uint256 cancelTime);
    error AlreadySubmitted(uint256 roundId, address client);
    error ZeroCommitment();
    error CommitmentAlreadyUsed(bytes32 commitment);
    error ZeroSamples();
    error TooManySamples(uint256 samples, uint256 maximum);
    error RoundFull(uint256 maxUpdates);
    error ZeroModelHash();
    error InvalidVerdict(address client);
    error QuorumNotReached(uint256 accepted, uint256 quorum);
    error RoundNotFinalized(uint256 roundId);
    error NothingToClaim(uint256 roundId, address client);
    error NothingOwed(address client);

    // ---------------------------------------------------------------- events

    event ClientRegistered(address indexed client, uint256 stake, bytes32 encryptionKey);
    event StakeToppedUp(address indexed client, uint256 amount, uint256 stake);
    event ExitRequested(address indexed client, uint256 unlockTime);
    event StakeWithdrawn(address indexed client, uint256 amount);
    event RoundStarted(uint256 indexed roundId, bytes32 baseModelHash, uint256 deadline);
    event UpdateSubmitted(
        uint256 indexed roundId, address indexed client, bytes32 commitment, uint256 samples, string locator
    );
    event UpdateRejected(uint256 indexed roundId, address indexed client, uint256 slashed);
    event UpdateExcluded(uint256 indexed roundId, address indexed client);
    event RoundFinalized(
        uint256 indexed roundId,
        bytes32 modelHash,
        uint256 accepted,
        uint256 acceptedWeight,
        uint256 reward,
        string locator
    );
    event RoundCancelled(uint256 indexed roundId, address indexed by);
    event RewardsFunded(address indexed funder, uint256 amount);
    event RewardClaimed(uint256 indexed roundId, address indexed client, uint256 amount);
    event RewardsWithdrawn(address indexed client, uint256 amount);
    event AggregatorKeyChanged(bytes32 key);

    /**
     * @param params job parameters (see {Params})
     * @param admin receives DEFAULT_ADMIN_ROLE (can grant roles, rotate the aggregator key)
     * @param aggregator receives AGGREGATOR_ROLE
     */
    constructor(Params memory params, address admin, address aggregator) {
        if (admin == address(0) || aggregator == address(0)) revert ZeroAddress();
        if (params.quorum == 0) revert InvalidParams("quorum must be at least 1");
        if (params.maxUpdatesPerRound != 0 && params.maxUpdatesPerRound < params.quorum) {
            revert InvalidParams("maxUpdatesPerRound below quorum");
        }
        if (params.slashBps > BPS) revert InvalidParams("slashBps above 10000");
        if (params.submissionPeriod == 0) revert InvalidParams("submissionPeriod is zero");
        if (params.maxSamplesPerUpdate == 0) revert InvalidParams("maxSamplesPerUpdate is zero");
        if (params.minStake == 0) revert InvalidParams("minStake is zero");
        if (params.initialModelHash == bytes32(0)) revert InvalidParams("initialModelHash is zero");
        if (params.aggregatorKey == bytes32(0)) revert InvalidParams("aggregatorKey is zero");
        _params = params;
        latestModelHash = params.initialModelHash;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(AGGREGATOR_ROLE, aggregator);
    }

    // -------------------------------------------------------------- registry

    /**
     * @notice Join the federation with a stake of at least `minStake`.
     * @param encryptionKey the client's X25519 public key (for messages to it)
     */
    function register(bytes32 encryptionKey) external payable {
        Client storage c = _clients[msg.sender];
        if (c.status != ClientStatus.None) revert AlreadyRegistered(msg.sender);
        if (encryptionKey == bytes32(0)) revert ZeroEncryptionKey();
        if (msg.value < _params.minStake) revert InsufficientStake(msg.value, _params.minStake);
        c.stake = msg.value;
        c.encryptionKey = encryptionKey;
        c.exitRequestedAt = 0;
        c.status = ClientStatus.Active;
        totalStaked += msg.value;
        activeClients += 1;
        emit ClientRegistered(msg.sender, msg.value, encryptionKey);
    }

    /// @notice Add to the caller's stake (e.g. after a slash took it below the minimum).
    function topUp() external payable {
        Client storage c = _clients[msg.sender];
        if (c.status != ClientStatus.Active) revert NotActive(msg.sender);
        if (msg.value == 0) revert ZeroValue();
        c.stake += msg.value;
        totalStaked += msg.value;
        emit StakeToppedUp(msg.sender, msg.value, c.stake);
    }

    /// @notice Stop taking part; the stake unlocks after the unbonding period.
    function requestExit() external {
        Client storage c = _clients[msg.sender];
        if (c.status != ClientStatus.Active) revert NotActive(msg.sender);
        c.status = ClientStatus.Exiting;
        c.exitRequestedAt = uint64(block.timestamp);
        activeClients -= 1;
        uint256 r = c.lastSubmittedRound;
        if (r != 0 && _rounds[r].phase == Phase.Open) _exitedSubmitters[r] += 1;
        emit ExitRequested(msg.sender, block.timestamp + _params.unbondingPeriod);
    }

    /**
     * @notice Withdraw the whole stake after the unbonding period, unless an
     * update of the caller's still waits in the open round.
     */
    function withdrawStake() external nonReentrant {
        Client storage c = _clients[msg.sender];
        if (c.status != ClientStatus.Exiting) revert NotExiting(msg.sender);
        uint256 unlockTime = uint256(c.exitRequestedAt) + _params.unbondingPeriod;
        if (block.timestamp < unlockTime) revert StillUnbonding(unlockTime);
        uint256 r = c.lastSubmittedRound;
        if (r != 0 && _rounds[r].phase == Phase.Open) revert UpdatePending(r);
        uint256 amount = c.stake;
        c.stake = 0;
        c.status = ClientStatus.None;
        c.encryptionKey = bytes32(0);
        c.exitRequestedAt = 0;
        totalStaked -= amount;
        emit StakeWithdrawn(msg.sender, amount);
        payable(msg.sender).sendValue(amount);
    }

    // ---------------------------------------------------------------- rounds

    /**
     * @notice Open the next round on the latest finalized model.
     * @return roundId the new round's number (1 for the first)
     */
    function startRound() external onlyRole(AGGREGATOR_ROLE) returns (uint256 roundId) {
        uint256 prev = currentRound;
        if (prev != 0 && _rounds[prev].phase == Phase.Open) revert RoundStillOpen(prev);
        roundId = prev + 1;
        currentRound = roundId;
        Round storage r = _rounds[roundId];
        r.baseModelHash = latestModelHash;
        r.startedAt = uint64(block.timestamp);
        r.deadline = uint64(block.timestamp) + _params.submissionPeriod;
        r.phase = Phase.Open;
        emit RoundStarted(roundId, r.baseModelHash, r.deadline);
    }

    /**
     * @notice Submit the commitment of a sealed update stored off chain.
     * @param roundId the open round (guards against a stale client)
     * @param commitment keccak-256 of the sealed update blob
     * @param samples number of local training samples (the FedAvg weight)
     * @param locator where the blob can be fetched (event data only)
     */
    function submitUpdate(uint256 roundId, bytes32 commitment, uint64 samples, string calldata locator) external {
        Client storage c = _clients[msg.sender];
        if (c.status != ClientStatus.Active) revert NotActive(msg.sender);
        if (c.stake < _params.minStake) revert StakeBelowMinimum(c.stake, _params.minStake);
        if (roundId != currentRound) revert NotCurrentRound(roundId, currentRound);
        Round storage r = _rounds[roundId];
        if (r.phase != Phase.Open) revert RoundNotOpen(roundId);
        if (block.timestamp > r.deadline) revert DeadlinePassed(r.deadline);
        Update storage u = _updates[roundId][msg.sender];
        if (u.status != UpdateStatus.None) revert AlreadySubmitted(roundId, msg.sender);
        if (commitment == bytes32(0)) revert ZeroCommitment();
        if (commitmentUsed[commitment]) revert CommitmentAlreadyUsed(commitment);
        if (samples == 0) revert ZeroSamples();
        if (samples > _params.maxSamplesPerUpdate) revert TooManySamples(samples, _params.maxSamplesPerUpdate);
        uint32 cap = _params.maxUpdatesPerRound;
        if (cap != 0 && r.submissions >= cap) revert RoundFull(cap);

        u.commitment = commitment;
        u.samples = samples;
        u.status = UpdateStatus.Submitted;
        commitmentUsed[commitment] = true;
        c.lastSubmittedRound = uint64(roundId);
        r.submissions += 1;
        r.submittedWeight += samples;
        emit UpdateSubmitted(roundId, msg.sender, commitment, samples, locator);
    }

    /**
     * @notice Close the open round with the new global model.
     * @dev Callable after the deadline, or earlier once every active client
     * (or the cap) has submitted. Rejected updates (provably invalid) lose
     * `slashBps` of their stake to the reward pool; excluded ones (left out by a
     * robust strategy) are neither paid nor slashed. Costs O(rejected + excluded).
     * @param roundId the open round
     * @param modelHash keccak-256 of the new global model blob
     * @param rejected clients whose update was provably invalid
     * @param excluded clients the aggregation strategy left out
     * @param locator where the global model blob can be fetched (event data only)
     */
    function finalizeRound(
        uint256 roundId,
        bytes32 modelHash,
        address[] calldata rejected,
        address[] calldata excluded,
        string calldata locator
    ) external onlyRole(AGGREGATOR_ROLE) {
        Round storage r = _rounds[roundId];
        if (r.phase != Phase.Open) revert RoundNotOpen(roundId);
        if (block.timestamp <= r.deadline && !_allIn(roundId, r)) revert DeadlineNotReached(r.deadline);
        if (modelHash == bytes32(0)) revert ZeroModelHash();
        (uint256 rejectedWeight, uint256 slashed) = _reject(roundId, rejected);
        uint256 weight = r.submittedWeight - rejectedWeight - _exclude(roundId, excluded);
        // Each verdict names a distinct submitted update, so this cannot underflow.
        uint256 accepted = r.submissions - rejected.length - excluded.length;
        if (accepted < _params.quorum) revert QuorumNotReached(accepted, _params.quorum);
        r.modelHash = modelHash;
        r.rejected = uint32(rejected.length);
        r.excluded = uint32(excluded.length);
        r.acceptedWeight = weight;
        r.reward = _allocate(slashed);
        r.phase = Phase.Finalized;
        latestModelHash = modelHash;
        emit RoundFinalized(roundId, modelHash, accepted, weight, r.reward, locator);
    }

    /**
     * @notice Cancel the open round: the aggregator at any time, anyone once the
     * grace period after the deadline is over (so a dead aggregator cannot lock
     * stakes). Nobody is paid or slashed; the model stays where it was.
     * @param roundId the open round
     */
    function cancelRound(uint256 roundId) external {
        Round storage r = _rounds[roundId];
        if (r.phase != Phase.Open) revert RoundNotOpen(roundId);
        if (!hasRole(AGGREGATOR_ROLE, msg.sender)) {
            uint256 cancelTime = uint256(r.deadline) + _params.gracePeriod;
            if (block.timestamp <= cancelTime) revert GracePeriodNotOver(cancelTime);
        }
        r.phase = Phase.Cancelled;
        emit RoundCancelled(roundId, msg.sender);
    }

    // --------------------------------------------------------------- rewards

    /// @notice Add ether to the reward pool (anyone).
    function fundRewards() external payable {
        if (msg.value == 0) revert ZeroValue();
        rewardPool += msg.value;
        emit RewardsFunded(msg.sender, msg.value);
    }

    /**
     * @notice Credit the caller's share of a finalized round's reward:
     * `reward * samples / acceptedWeight`, rounded down. The last claim of a
     * round returns the rounding dust to the pool.
     * @param roundId a finalized round in which the caller's update was accepted
     * @return amount wei credited to `owed[msg.sender]`
     */
    function claimReward(uint256 roundId) external returns (uint256 amount) {
        Round storage r = _rounds[roundId];
        if (r.phase != Phase.Finalized) revert RoundNotFinalized(roundId);
        Update storage u = _updates[roundId][msg.sender];
        if (u.status != UpdateStatus.Submitted) revert NothingToClaim(roundId, msg.sender);
        u.status = UpdateStatus.Claimed;
        amount = Math.mulDiv(r.reward, u.samples, r.acceptedWeight);
        r.rewardClaimed += amount;
        r.claims += 1;
        totalAllocated -= amount;
        owed[msg.sender] += amount;
        totalOwed += amount;
        if (r.claims == r.submissions - r.rejected - r.excluded) {
            uint256 dust = r.reward - r.rewardClaimed;
            if (dust != 0) {
                totalAllocated -= dust;
                rewardPool += dust;
            }
        }
        emit RewardClaimed(roundId, msg.sender, amount);
    }

    /// @notice Send the caller everything it is owed (pull payment).
    function withdrawRewards() external nonReentrant {
        uint256 amount = owed[msg.sender];
        if (amount == 0) revert NothingOwed(msg.sender);
        owed[msg.sender] = 0;
        totalOwed -= amount;
        emit RewardsWithdrawn(msg.sender, amount);
        payable(msg.sender).sendValue(amount);
    }

    // ----------------------------------------------------------------- admin

    /**
     * @notice Rotate the aggregator's sealing key (admin; not while a round is open,
     * since updates in flight are sealed to the old key).
     * @param key the new X25519 public key
     */
    function setAggregatorKey(bytes32 key) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (key == bytes32(0)) revert ZeroEncryptionKey();
        uint256 cur = currentRound;
        if (cur != 0 && _rounds[cur].phase == Phase.Open) revert RoundStillOpen(cur);
        _params.aggregatorKey = key;
        emit AggregatorKeyChanged(key);
    }

    // ----------------------------------------------------------------- views

    /// @notice The job's parameters.
    function params() external view returns (Params memory) {
        return _params;
    }

    /// @notice One round's record.
    function getRound(uint256 roundId) external view returns (Round memory) {
        return _rounds[roundId];
    }

    /// @notice A client's update in a round (status None if it did not submit).
    function getUpdate(uint256 roundId, address client) external view returns (Update memory) {
        return _updates[roundId][client];
    }

    /// @notice A client's registry record.
    function getClient(address client) external view returns (Client memory) {
        return _clients[client];
    }

    /// @notice Wei the client could claim for a round right now (0 if none).
    function claimable(uint256 roundId, address client) external view returns (uint256) {
        Round storage r = _rounds[roundId];
        Update storage u = _updates[roundId][client];
        if (r.phase != Phase.Finalized || u.status != UpdateStatus.Submitted) return 0;
        return Math.mulDiv(r.reward, u.samples, r.acceptedWeight);
    }

    /// @notice Whether the round may be finalized now.
    function canFinalize(uint256 roundId) external view returns (bool) {
        Round storage r = _rounds[roundId];
        return r.phase == Phase.Open && (block.timestamp > r.deadline || _allIn(roundId, r));
    }

    /// @dev Moves the slashed stake to the pool and allocates this round's reward from it.
    function _allocate(uint256 slashed) private returns (uint256 reward) {
        totalStaked -= slashed;
        uint256 pool = rewardPool + slashed;
        reward = Math.min(_params.rewardPerRound, pool);
        rewardPool = pool - reward;
        totalAllocated += reward;
    }

    /// @dev Marks each rejected update and slashes its client; returns their weight and the total slashed.
    function _reject(uint256 roundId, address[] calldata rejected)
        private
        returns (uint256 weight, uint256 slashed)
    {
        uint256 bps = _params.slashBps;
        for (uint256 i = 0; i < rejected.length; ++i) {
            address a = rejected[i];
            Update storage u = _updates[roundId][a];
            if (u.status != UpdateStatus.Submitted) revert InvalidVerdict(a);
            u.status = UpdateStatus.Rejected;
            weight += u.samples;
            Client storage c = _clients[a];
            uint256 amount = Math.mulDiv(c.stake, bps, BPS);
            c.stake -= amount;
            slashed += amount;
            emit UpdateRejected(roundId, a, amount);
        }
    }

    /// @dev Marks each excluded update; returns their weight.
    function _exclude(uint256 roundId, address[] calldata excluded) private returns (uint256 weight) {
        for (uint256 i = 0; i < excluded.length; ++i) {
            address a = excluded[i];
            Update storage u = _updates[roundId][a];
            if (u.status != UpdateStatus.Submitted) revert InvalidVerdict(a);
            u.status = UpdateStatus.Excluded;
            weight += u.samples;
            emit UpdateExcluded(roundId, a);
        }
    }

    /// @dev Every active client has submitted (counting only submitters still active), or the cap is reached.
    function _allIn(uint256 roundId, Round storage r) private view returns (bool) {
        uint32 cap = _params.maxUpdatesPerRound;
        return (r.submissions > 0 && r.submissions - _exitedSubmitters[roundId] >= activeClients)
            || (cap != 0 && r.submissions >= cap);
    }
}
