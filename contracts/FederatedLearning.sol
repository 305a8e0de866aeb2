// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AccessControlDefaultAdminRules} from
    "@openzeppelin/contracts/access/extensions/AccessControlDefaultAdminRules.sol";
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
 * Nobody profits from a verdict: slashed stake goes to a treasury fixed at
 * deployment (or is burned), never to the reward pool. Verdicts do not depend on
 * the quorum: a round with too few accepted updates closes as Failed and its
 * rejections are still slashed.
 *
 * Gas: submitting costs the same whatever the model size; finalizing is
 * O(rejected + excluded), never O(clients), and bounded by a block because a round
 * holds at most MAX_UPDATES_PER_ROUND updates; register, claim and withdraw are O(1).
 */
contract FederatedLearning is AccessControlDefaultAdminRules, ReentrancyGuard {
    using Address for address payable;

    /// @notice Role allowed to start, finalize and cancel rounds.
    bytes32 public constant AGGREGATOR_ROLE = keccak256("AGGREGATOR_ROLE");
    /// @notice Role allowed to admit clients (with a sample allowance) in a permissioned job.
    bytes32 public constant REGISTRAR_ROLE = keccak256("REGISTRAR_ROLE");

    /// @notice Basis-point denominator of the slash fraction.
    uint256 public constant BPS = 10_000;
    /// @notice Most updates a round accepts, so that any verdict list (at most one entry per
    /// update) fits in a block: all of them rejected costs about 17M gas (bench/gas.py).
    uint256 public constant MAX_UPDATES_PER_ROUND = 1000;

    /// @notice Deployment parameters (fixed for the job, but the aggregator key).
    struct Params {
        uint256 minStake; // wei a client must stake to register and to submit
        uint64 unbondingPeriod; // seconds between requestExit and withdrawStake
        uint64 submissionPeriod; // seconds a round accepts updates
        uint64 gracePeriod; // seconds after the deadline before anyone may cancel (> 0)
        uint32 quorum; // minimum accepted updates for a new model (>= 1); below it the round fails
        uint32 maxUpdatesPerRound; // 0 = MAX_UPDATES_PER_ROUND
        uint64 maxSamplesPerUpdate; // cap on the weight one update can claim
        uint16 slashBps; // fraction of the stake a rejected update loses
        uint256 rewardPerRound; // wei allocated to each finalized round (if funded)
        uint256 normBound; // published L2 bound of an update's delta, 1e6 fixed point; 0 = none
        bytes32 modelSpecHash; // keccak of the canonical model spec (the task)
        bytes32 initialModelHash; // keccak of the initial global model blob
        bytes32 aggregatorKey; // X25519 public key updates are sealed to
        address treasury; // receives slashed stake; the zero address burns it
        bool permissioned; // clients need a registrar's admission, and submit at most their allowance
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
        uint64 countedFrom; // first round in which the client counts toward "every client submitted"
        ClientStatus status;
    }

    enum Phase {
        None,
        Open,
        Finalized,
        Failed, // closed below the quorum: rejections slashed, no model, no reward
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
        uint32 eligible; // clients counted toward "all in" (those that could submit at the start)
        uint32 eligibleSubmitted; // how many of them have submitted
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
    /// @notice Whether a client has committed to this blob before (a replay). Per client,
    /// so that copying another client's pending commitment blocks nobody.
    mapping(address client => mapping(bytes32 commitment => bool)) public commitmentUsed;
    mapping(address client => uint256) public owed;
    /// @notice Samples a client may claim per update in a permissioned job (0 = not admitted).
    mapping(address client => uint64) public allowance;

    /// @notice The latest round started (0 before the first).
    uint256 public currentRound;
    /// @notice Hash of the latest finalized global model (the initial one before).
    bytes32 public latestModelHash;
    /// @notice Clients whose status is Active.
    uint256 public activeClients;
    /// @notice Active clients whose stake is at least the minimum (those that can submit).
    uint256 public eligibleClients;
    /// @notice Sum of all stakes held.
    uint256 public totalStaked;
    /// @notice Rewards credited to clients and not yet withdrawn.
    uint256 public totalOwed;
    /// @notice Rewards allocated to finalized rounds and not yet claimed.
    uint256 public totalAllocated;
    /// @notice Funds available for future rounds (funding and rounding dust; never slashes).
    uint256 public rewardPool;
    /// @notice Slashed stake waiting to be sent to the treasury.
    uint256 public treasuryOwed;
    /// @notice Slashed stake burned (a job without treasury): it stays in the contract forever.
    uint256 public totalBurned;

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
    error NotAdmitted(address client);
    error AboveAllowance(uint256 samples, uint256 allowance);
    error NotPermissioned();
    error ModelBelowQuorum(uint256 accepted, uint256 quorum);
    error NoTreasury();
    error ZeroSamples();
    error TooManySamples(uint256 samples, uint256 maximum);
    error RoundFull(uint256 maxUpdates);
    error ZeroModelHash();
    error InvalidVerdict(address client);
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
    event RoundFailed(uint256 indexed roundId, uint256 accepted, uint256 rejected, uint256 excluded);
    event RoundCancelled(uint256 indexed roundId, address indexed by);
    event ClientAdmitted(address indexed client, uint256 allowance);
    event TreasuryWithdrawn(address indexed treasury, uint256 amount);
    event RewardsFunded(address indexed funder, uint256 amount);
    event RewardClaimed(uint256 indexed roundId, address indexed client, uint256 amount);
    event RewardsWithdrawn(address indexed client, uint256 amount);
    event AggregatorKeyChanged(bytes32 key);

    /**
     * @param params job parameters (see {Params})
     * @param admin receives DEFAULT_ADMIN_ROLE (grants roles and rotates the aggregator key between
     * rounds; also REGISTRAR_ROLE in a permissioned job). Transferred in two steps with a delay.
     * @param aggregator receives AGGREGATOR_ROLE
     * @param adminDelay seconds a new admin must wait before accepting the role
     */
    constructor(Params memory params, address admin, address aggregator, uint48 adminDelay)
        AccessControlDefaultAdminRules(adminDelay, admin)
    {
        if (admin == address(0) || aggregator == address(0)) revert ZeroAddress();
        if (params.quorum == 0) revert InvalidParams("quorum must be at least 1");
        if (params.maxUpdatesPerRound > MAX_UPDATES_PER_ROUND) {
            revert InvalidParams("maxUpdatesPerRound above MAX_UPDATES_PER_ROUND");
        }
        if (params.quorum > _cap(params.maxUpdatesPerRound)) revert InvalidParams("maxUpdatesPerRound below quorum");
        if (params.slashBps > BPS) revert InvalidParams("slashBps above 10000");
        if (params.submissionPeriod == 0) revert InvalidParams("submissionPeriod is zero");
        if (params.gracePeriod == 0) revert InvalidParams("gracePeriod is zero");
        if (params.maxSamplesPerUpdate == 0) revert InvalidParams("maxSamplesPerUpdate is zero");
        if (params.minStake == 0) revert InvalidParams("minStake is zero");
        if (params.initialModelHash == bytes32(0)) revert InvalidParams("initialModelHash is zero");
        if (params.aggregatorKey == bytes32(0)) revert InvalidParams("aggregatorKey is zero");
        _params = params;
        latestModelHash = params.initialModelHash;
        _grantRole(AGGREGATOR_ROLE, aggregator);
        if (params.permissioned) _grantRole(REGISTRAR_ROLE, admin);
    }

    // -------------------------------------------------------------- registry

    /**
     * @notice Admit a client to a permissioned job with a sample allowance per update (registrar).
     * @param client the client's address
     * @param samples the most samples one of its updates may claim; 0 revokes the admission
     */
    function admit(address client, uint64 samples) external onlyRole(REGISTRAR_ROLE) {
        if (!_params.permissioned) revert NotPermissioned();
        if (client == address(0)) revert ZeroAddress();
        if (samples > _params.maxSamplesPerUpdate) revert TooManySamples(samples, _params.maxSamplesPerUpdate);
        allowance[client] = samples;
        emit ClientAdmitted(client, samples);
    }

    /**
     * @notice Join the federation with a stake of at least `minStake` (in a permissioned job,
     * once admitted). The client counts toward "every client submitted" from the next round.
     * @param encryptionKey the client's X25519 public key (for messages to it)
     */
    function register(bytes32 encryptionKey) external payable {
        Client storage c = _clients[msg.sender];
        if (c.status != ClientStatus.None) revert AlreadyRegistered(msg.sender);
        if (_params.permissioned && allowance[msg.sender] == 0) revert NotAdmitted(msg.sender);
        if (encryptionKey == bytes32(0)) revert ZeroEncryptionKey();
        if (msg.value < _params.minStake) revert InsufficientStake(msg.value, _params.minStake);
        c.stake = msg.value;
        c.encryptionKey = encryptionKey;
        c.exitRequestedAt = 0;
        c.countedFrom = uint64(currentRound + 1);
        c.status = ClientStatus.Active;
        totalStaked += msg.value;
        activeClients += 1;
        eligibleClients += 1;
        emit ClientRegistered(msg.sender, msg.value, encryptionKey);
    }

    /// @notice Add to the caller's stake (e.g. after a slash took it below the minimum; it then
    /// counts toward "every client submitted" again from the next round).
    function topUp() external payable {
        Client storage c = _clients[msg.sender];
        if (c.status != ClientStatus.Active) revert NotActive(msg.sender);
        if (msg.value == 0) revert ZeroValue();
        uint256 minStake = _params.minStake;
        bool wasBelow = c.stake < minStake;
        c.stake += msg.value;
        totalStaked += msg.value;
        if (wasBelow && c.stake >= minStake) {
            eligibleClients += 1;
            c.countedFrom = uint64(currentRound + 1);
        }
        emit StakeToppedUp(msg.sender, msg.value, c.stake);
    }

    /// @notice Stop taking part; the stake unlocks after the unbonding period.
    function requestExit() external {
        Client storage c = _clients[msg.sender];
        if (c.status != ClientStatus.Active) revert NotActive(msg.sender);
        c.status = ClientStatus.Exiting;
        c.exitRequestedAt = uint64(block.timestamp);
        activeClients -= 1;
        if (c.stake >= _params.minStake) {
            eligibleClients -= 1;
            uint256 cur = currentRound;
            Round storage r = _rounds[cur];
            if (cur != 0 && r.phase == Phase.Open && c.countedFrom <= cur) {
                r.eligible -= 1;
                if (c.lastSubmittedRound == cur) r.eligibleSubmitted -= 1;
            }
        }
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
        c.countedFrom = 0;
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
        r.eligible = uint32(eligibleClients);
        r.phase = Phase.Open;
        emit RoundStarted(roundId, r.baseModelHash, r.deadline);
    }

    /**
     * @notice Submit the commitment of a sealed update stored off chain.
     * @param roundId the open round (guards against a stale client)
     * @param commitment keccak-256 of the sealed update blob (never used by this client before)
     * @param samples number of local training samples (the FedAvg weight); at most the job's cap,
     * and in a permissioned job at most the client's allowance
     * @param locator where the blob can be fetched (event data only; untrusted)
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
        if (commitmentUsed[msg.sender][commitment]) revert CommitmentAlreadyUsed(commitment);
        if (samples == 0) revert ZeroSamples();
        if (samples > _params.maxSamplesPerUpdate) revert TooManySamples(samples, _params.maxSamplesPerUpdate);
        if (_params.permissioned && samples > allowance[msg.sender]) {
            revert AboveAllowance(samples, allowance[msg.sender]);
        }
        uint256 cap = _cap(_params.maxUpdatesPerRound);
        if (r.submissions >= cap) revert RoundFull(cap);

        u.commitment = commitment;
        u.samples = samples;
        u.status = UpdateStatus.Submitted;
        commitmentUsed[msg.sender][commitment] = true;
        c.lastSubmittedRound = uint64(roundId);
        r.submissions += 1;
        if (c.countedFrom <= roundId) r.eligibleSubmitted += 1;
        r.submittedWeight += samples;
        emit UpdateSubmitted(roundId, msg.sender, commitment, samples, locator);
    }

    /**
     * @notice Close the open round with its verdicts and, at or above the quorum, the new model.
     * @dev Callable after the deadline, or earlier once every client that could submit when the
     * round started has submitted (or the cap is reached). Rejected updates (provably invalid)
     * lose `slashBps` of their stake to the treasury; excluded ones (left out by a robust
     * strategy) are neither paid nor slashed. With fewer accepted updates than the quorum the
     * round closes as Failed: the rejections are slashed all the same, but no model is recorded
     * (`modelHash` must be zero) and no reward is allocated. Costs O(rejected + excluded).
     * @param roundId the open round
     * @param modelHash keccak-256 of the new global model blob; zero below the quorum
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
        if (block.timestamp <= r.deadline && !_allIn(r)) revert DeadlineNotReached(r.deadline);
        (uint256 rejectedWeight, uint256 slashed) = _reject(roundId, rejected);
        uint256 weight = r.submittedWeight - rejectedWeight - _exclude(roundId, excluded);
        // Each verdict names a distinct submitted update, so this cannot underflow.
        uint256 accepted = r.submissions - rejected.length - excluded.length;
        r.rejected = uint32(rejected.length);
        r.excluded = uint32(excluded.length);
        _toTreasury(slashed);
        if (accepted < _params.quorum) {
            if (modelHash != bytes32(0)) revert ModelBelowQuorum(accepted, _params.quorum);
            r.phase = Phase.Failed;
            emit RoundFailed(roundId, accepted, rejected.length, excluded.length);
            return;
        }
        if (modelHash == bytes32(0)) revert ZeroModelHash();
        r.modelHash = modelHash;
        r.acceptedWeight = weight;
        r.reward = _allocate();
        r.phase = Phase.Finalized;
        latestModelHash = modelHash;
        emit RoundFinalized(roundId, modelHash, accepted, weight, r.reward, locator);
    }

    /**
     * @notice Cancel the open round: the aggregator at any time, anyone once the
     * grace period after the deadline is over and no outcome was recorded (so a dead
     * aggregator cannot lock stakes). Nobody is paid or slashed; the model stays where it was.
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

    /**
     * @notice Send the slashed stake held for the treasury to it (anyone; pull payment, so a
     * treasury that refuses ether delays only itself).
     * @return amount wei sent
     */
    function withdrawTreasury() external nonReentrant returns (uint256 amount) {
        address treasury = _params.treasury;
        if (treasury == address(0)) revert NoTreasury();
        amount = treasuryOwed;
        if (amount == 0) revert NothingOwed(treasury);
        treasuryOwed = 0;
        emit TreasuryWithdrawn(treasury, amount);
        payable(treasury).sendValue(amount);
    }

    // ----------------------------------------------------------------- admin

    /**
     * @notice Grant a role (its admin; for DEFAULT_ADMIN_ROLE use the two-step transfer).
     * Refused while a round is open, so that nobody changes hands in the middle of a round.
     */
    function grantRole(bytes32 role, address account) public override {
        _requireNoOpenRound();
        super.grantRole(role, account);
    }

    /// @notice Revoke a role (its admin). Refused while a round is open.
    function revokeRole(bytes32 role, address account) public override {
        _requireNoOpenRound();
        super.revokeRole(role, account);
    }

    /**
     * @notice Rotate the aggregator's sealing key (admin; not while a round is open,
     * since updates in flight are sealed to the old key).
     * @param key the new X25519 public key
     */
    function setAggregatorKey(bytes32 key) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (key == bytes32(0)) revert ZeroEncryptionKey();
        _requireNoOpenRound();
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
        return r.phase == Phase.Open && (block.timestamp > r.deadline || _allIn(r));
    }

    /// @dev The effective cap on updates per round.
    function _cap(uint32 maxUpdates) private pure returns (uint256) {
        return maxUpdates == 0 ? MAX_UPDATES_PER_ROUND : maxUpdates;
    }

    function _requireNoOpenRound() private view {
        uint256 cur = currentRound;
        if (cur != 0 && _rounds[cur].phase == Phase.Open) revert RoundStillOpen(cur);
    }

    /// @dev Allocates this round's reward from the pool (funding only: slashes never reach it).
    function _allocate() private returns (uint256 reward) {
        uint256 pool = rewardPool;
        reward = Math.min(_params.rewardPerRound, pool);
        rewardPool = pool - reward;
        totalAllocated += reward;
    }

    /// @dev Moves slashed stake out of the stakes: to the treasury, or burned without one.
    function _toTreasury(uint256 slashed) private {
        if (slashed == 0) return;
        totalStaked -= slashed;
        if (_params.treasury == address(0)) totalBurned += slashed;
        else treasuryOwed += slashed;
    }

    /// @dev Marks each rejected update and slashes its client; returns their weight and the total slashed.
    function _reject(uint256 roundId, address[] calldata rejected)
        private
        returns (uint256 weight, uint256 slashed)
    {
        uint256 bps = _params.slashBps;
        uint256 minStake = _params.minStake;
        for (uint256 i = 0; i < rejected.length; ++i) {
            address a = rejected[i];
            Update storage u = _updates[roundId][a];
            if (u.status != UpdateStatus.Submitted) revert InvalidVerdict(a);
            u.status = UpdateStatus.Rejected;
            weight += u.samples;
            Client storage c = _clients[a];
            uint256 before = c.stake;
            uint256 amount = Math.mulDiv(before, bps, BPS);
            c.stake = before - amount;
            slashed += amount;
            // A client slashed below the minimum can no longer submit: it stops counting as eligible.
            if (c.status == ClientStatus.Active && before >= minStake && before - amount < minStake) {
                eligibleClients -= 1;
            }
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

    /// @dev Every client that could submit when the round started (and still can) has submitted,
    /// or the cap is reached. Late registrations and clients slashed below the minimum do not count.
    function _allIn(Round storage r) private view returns (bool) {
        return (r.submissions > 0 && r.eligibleSubmitted >= r.eligible)
            || r.submissions >= _cap(_params.maxUpdatesPerRound);
    }
}
