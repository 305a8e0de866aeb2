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
 * No single party decides a round: the aggregator only proposes an outcome (the model, the
 * rejected and excluded clients, the hash of the rejection evidence); a committee of k verifiers,
 * fixed at deployment, re-computes it off chain, and m matching attestations apply it, while
 * k - m + 1 disputes fail it and forfeit the aggregator's bond. With k = 0 the job runs in
 * trusted-aggregator mode (a proposal applies at once), for demos: {trustedAggregator} says so.
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
    /// @notice Most verifiers a committee may have.
    uint256 public constant MAX_VERIFIERS = 32;

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
        address treasury; // receives slashed stake and forfeited bonds; the zero address burns them
        bool permissioned; // clients need a registrar's admission, and submit at most their allowance
        uint64 attestationPeriod; // seconds the committee has to attest a proposal before it expires
        uint256 aggregatorBond; // wei the aggregator must have bonded to propose; forfeited on a failed proposal
        // Differential privacy (central, robust mode): the promise every client can read before it trains.
        uint64 dpClip; // L2 clipping norm C of each accepted update's change, 1e6 fixed point; 0 = no DP
        uint64 dpNoise; // noise multiplier z, 1e6 fixed point (noise std z*C/n on the mean of n updates)
        uint64 dpDelta; // target delta, 1e18 fixed point
        uint64 dpBudget; // epsilon budget, 1e6 fixed point; 0 = none
        uint32 dpMaxRounds; // rounds the budget allows (dp-accounting at deploy; anyone re-checks); 0 = unbounded
        bytes32 dpSeedCommitment; // keccak of the aggregator's noise secret, sealed to the committee each round
        // Private mode (secure aggregation): masked updates, public; FedAvg/FedProx only.
        uint8 privacy; // 0 = robust (updates sealed to the aggregator and committee), 1 = private (masked)
        uint64 secClip; // bound of each coordinate of a change, 1e6 fixed point
        uint8 secScaleBits; // fixed-point precision: 2**-secScaleBits per sample
        uint8 secRingBits; // masked vectors live mod 2**secRingBits (16, 32 or 64)
        uint16 secThreshold; // t: shares that recover a dropped participant (>= 2)
        uint64 joinPeriod; // seconds after startRound in which clients join (then the participants are fixed)
        uint64 revealPeriod; // seconds after the deadline in which the survivors reveal their shares
    }

    /// @notice The verifier committee, fixed at deployment (k = verifiers.length, threshold m).
    struct Committee {
        address[] verifiers;
        bytes32[] keys; // each verifier's X25519 public key (updates are sealed to it too)
        uint32 threshold; // m: matching attestations that apply a proposal (0 iff k = 0)
    }

    /**
     * @notice What the aggregator proposes for a round. Its digest ({outcomeDigest}) is what the
     * verifiers attest. Lists are strictly ascending by address (so each names distinct clients).
     */
    struct Outcome {
        bytes32 modelHash; // keccak of the new global model blob; zero when below the quorum
        address[] rejected; // provably invalid updates: slashed
        uint8[] reasons; // one reason code per rejected client (see ml/evidence.py)
        address[] excluded; // left out by a robust strategy: neither paid nor slashed
        bytes32 evidenceHash; // keccak of the evidence blob (per rejection: reason, disclosed key, detail)
        string evidenceLocator; // where the evidence blob is (event data only)
        string modelLocator; // where the model blob is (event data only)
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
        Proposed, // an outcome awaits the committee
        Finalized,
        Failed, // below the quorum (rejections slashed, no model, no reward), or the proposal was disputed
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
        uint64 startBlock; // block of startRound: log readers start here, never at the deploy block
        uint64 closedBlock; // block that finalized, failed or cancelled it: its verdict events are there
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

    /// @notice A proposal awaiting (or past) the committee's votes.
    struct Proposal {
        bytes32 digest;
        bytes32 modelHash;
        address proposer;
        uint64 proposedAt;
        uint64 proposedBlock;
        uint32 attestations;
        uint32 disputes;
    }

    /// @notice A participant of a private round: its round key, its dealing and (once revealed) its reveal.
    struct Join {
        bytes32 roundKey; // per-round X25519 public key (the masks are agreed with it)
        bytes32 dealing; // digest of its public dealing: Shamir shares of its round secret, sealed to each holder
        bytes32 reveal; // keccak of its reveal blob (its self-mask seed, its shares of the dropped); 0 before
    }

    /// @notice A private round's schedule and counts (all zero in robust mode).
    struct PrivateRound {
        uint64 joinDeadline; // joins close then, or once every client eligible at the start has joined
        uint64 revealDeadline; // reveals close then
        uint32 joined;
        uint32 revealed;
    }

    /// @notice What a party needs about a round, read in one call (see roundView).
    struct RoundView {
        uint256 roundId; // the round described (the current one when 0 was asked)
        uint256 currentRound;
        Round round;
        Proposal proposal;
        bool canPropose;
        bytes32 aggregatorKey; // the key updates of this round are sealed to (it may change between rounds)
        uint256 rewardPool;
        Update update; // `who`'s update in the round
        Client client; // `who`'s registry record
        uint256 claimable; // wei `who` could claim for the round now
        uint256 owed; // wei credited to `who` and not yet withdrawn
        PrivateRound priv; // private mode: the schedule and counts
        Join join; // private mode: `who`'s join
    }

    Params private _params;
    address[] private _verifiers;
    mapping(address verifier => bytes32) private _verifierKey;
    uint32 private immutable _threshold;
    /// @dev Private mode (Params.privacy == 1), kept immutable: read on every submission without an SLOAD.
    bool private immutable _privateMode;
    mapping(uint256 roundId => Proposal) private _proposals;
    /// @notice A verifier's vote on a round's proposal: 0 none, 1 attested, 2 disputed.
    mapping(uint256 roundId => mapping(address verifier => uint8)) public voteOf;
    /// @notice Wei each aggregator has bonded.
    mapping(address aggregator => uint256) public bondOf;

    mapping(address client => Client) private _clients;
    mapping(uint256 roundId => Round) private _rounds;
    mapping(uint256 roundId => mapping(address client => Update)) private _updates;
    /// @notice Whether a client has committed to this blob before (a replay). Per client,
    /// so that copying another client's pending commitment blocks nobody.
    mapping(address client => mapping(bytes32 commitment => bool)) public commitmentUsed;
    mapping(address client => uint256) public owed;
    /// @notice Samples a client may claim per update in a permissioned job (0 = not admitted).
    mapping(address client => uint64) public allowance;
    mapping(uint256 roundId => PrivateRound) private _private;
    mapping(uint256 roundId => mapping(address client => Join)) private _joins;

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
    /// @notice Slashed stake and forfeited bonds burned (a job without treasury): locked here forever.
    uint256 public totalBurned;
    /// @notice Sum of all aggregator bonds held.
    uint256 public totalBonded;

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
    error NotVerifier(address account);
    error AlreadyVoted(uint256 roundId, address verifier);
    error DigestMismatch(bytes32 attested, bytes32 proposed);
    error DisputeMatchesProposal(bytes32 digest);
    error NotProposed(uint256 roundId);
    error ProposalExpired(uint256 expiredAt);
    error ProposalNotExpired(uint256 expiresAt);
    error BondTooLow(uint256 bonded, uint256 required);
    error ProposalPending(uint256 roundId);
    error VerdictsNotSorted(address client);
    error ReasonsMismatch(uint256 rejected, uint256 reasons);
    error ZeroReason(address client);
    error ZeroSamples();
    error TooManySamples(uint256 samples, uint256 maximum);
    error RoundFull(uint256 maxUpdates);
    error ZeroModelHash();
    error InvalidVerdict(address client);
    error RoundNotFinalized(uint256 roundId);
    error NothingToClaim(uint256 roundId, address client);
    error NothingOwed(address client);
    error PrivacyBudgetSpent(uint256 maxRounds);
    error NotPrivate();
    error JoinClosed(uint256 joinDeadline);
    error JoinStillOpen(uint256 joinDeadline);
    error AlreadyJoined(uint256 roundId, address client);
    error NotJoined(uint256 roundId, address client);
    error NotEligible(address client);
    error RevealClosed(uint256 revealDeadline);
    error RevealNotOpen(uint256 roundId);
    error AlreadyRevealed(uint256 roundId, address client);

    // ---------------------------------------------------------------- events

    event ClientRegistered(address indexed client, uint256 stake, bytes32 encryptionKey);
    event StakeToppedUp(address indexed client, uint256 amount, uint256 stake);
    event ExitRequested(address indexed client, uint256 unlockTime);
    event StakeWithdrawn(address indexed client, uint256 amount);
    event RoundStarted(uint256 indexed roundId, bytes32 baseModelHash, uint256 deadline);
    event UpdateSubmitted(
        uint256 indexed roundId, address indexed client, bytes32 commitment, uint256 samples, string locator
    );
    event UpdateRejected(
        uint256 indexed roundId, address indexed client, uint256 slashed, uint8 reason, uint256 stakeBefore
    );
    event UpdateExcluded(uint256 indexed roundId, address indexed client);
    event RoundFinalized(
        uint256 indexed roundId, bytes32 modelHash, uint256 accepted, uint256 acceptedWeight, uint256 reward
    );
    event RoundProposed(
        uint256 indexed roundId,
        bytes32 digest,
        bytes32 modelHash,
        address[] rejected,
        uint8[] reasons,
        address[] excluded,
        bytes32 evidenceHash,
        string evidenceLocator,
        string modelLocator
    );
    event RoundAttested(uint256 indexed roundId, address indexed verifier, uint256 attestations);
    event RoundDisputed(uint256 indexed roundId, address indexed verifier, bytes32 digest, uint256 disputes);
    event ProposalRejected(uint256 indexed roundId, address indexed aggregator, uint256 bondForfeited);
    event ProposalExpiredCancelled(uint256 indexed roundId);
    event BondPosted(address indexed aggregator, uint256 amount, uint256 bond);
    event BondWithdrawn(address indexed aggregator, uint256 amount);
    event RoundFailed(uint256 indexed roundId, uint256 accepted, uint256 rejected, uint256 excluded);
    event RoundCancelled(uint256 indexed roundId, address indexed by);
    event ClientAdmitted(address indexed client, uint256 allowance);
    event ClientJoined(
        uint256 indexed roundId, address indexed client, bytes32 roundKey, bytes32 dealing, string locator
    );
    event SharesRevealed(uint256 indexed roundId, address indexed client, bytes32 reveal, string locator);
    event TreasuryWithdrawn(address indexed treasury, uint256 amount);
    event RewardsFunded(address indexed funder, uint256 amount);
    event RewardClaimed(uint256 indexed roundId, address indexed client, uint256 amount);
    event RewardsWithdrawn(address indexed client, uint256 amount);
    event AggregatorKeyChanged(bytes32 key);

    /**
     * @param params job parameters (see {Params})
     * @param admin receives DEFAULT_ADMIN_ROLE (grants roles and rotates the aggregator key between
     * rounds; also REGISTRAR_ROLE in a permissioned job). Transferred in two steps with a delay.
     * @param committee the k verifiers, their X25519 keys and the threshold m (k = 0: trusted aggregator)
     * @param aggregator receives AGGREGATOR_ROLE
     * @param adminDelay seconds a new admin must wait before accepting the role
     */
    constructor(
        Params memory params,
        Committee memory committee,
        address admin,
        address aggregator,
        uint48 adminDelay
    ) AccessControlDefaultAdminRules(adminDelay, admin) {
        if (admin == address(0) || aggregator == address(0)) revert ZeroAddress();
        uint256 k = committee.verifiers.length;
        if (k > MAX_VERIFIERS) revert InvalidParams("more than MAX_VERIFIERS verifiers");
        if (committee.keys.length != k) revert InvalidParams("one key per verifier");
        if (k == 0 ? committee.threshold != 0 : committee.threshold == 0 || committee.threshold > k) {
            revert InvalidParams("threshold must be in 1..k (0 when k = 0)");
        }
        if (k != 0 && params.attestationPeriod == 0) revert InvalidParams("attestationPeriod is zero");
        for (uint256 i = 0; i < k; ++i) {
            address v = committee.verifiers[i];
            if (v == address(0)) revert ZeroAddress();
            if (v == aggregator) revert InvalidParams("the aggregator cannot be a verifier");
            if (committee.keys[i] == bytes32(0)) revert InvalidParams("verifier key is zero");
            if (_verifierKey[v] != bytes32(0)) revert InvalidParams("verifier listed twice");
            _verifierKey[v] = committee.keys[i];
        }
        _verifiers = committee.verifiers;
        _threshold = committee.threshold;
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
        if (params.dpClip == 0) {
            if (params.dpNoise | params.dpDelta | params.dpBudget | params.dpMaxRounds != 0) {
                revert InvalidParams("DP settings without dpClip");
            }
        } else if (params.dpDelta == 0 || params.dpDelta >= 1e18) {
            revert InvalidParams("dpDelta must be in (0, 1e18)");
        } else if ((params.dpNoise == 0) != (params.dpSeedCommitment == bytes32(0))) {
            revert InvalidParams("dpSeedCommitment iff dpNoise");
        } else if ((params.dpBudget == 0) != (params.dpMaxRounds == 0)) {
            revert InvalidParams("dpMaxRounds iff dpBudget");
        }
        if (params.privacy > 1) revert InvalidParams("privacy must be 0 or 1");
        if (params.privacy == 0) {
            if (params.secClip | params.joinPeriod | params.revealPeriod | params.secThreshold | params.secRingBits
                    | params.secScaleBits != 0) revert InvalidParams("private-mode settings without privacy");
        } else {
            uint8 k = params.secRingBits;
            if (k != 16 && k != 32 && k != 64) revert InvalidParams("secRingBits must be 16, 32 or 64");
            if (params.secThreshold < 2) revert InvalidParams("secThreshold below 2");
            if (params.secClip == 0 || params.joinPeriod == 0 || params.revealPeriod == 0) {
                revert InvalidParams("secClip, joinPeriod and revealPeriod must be set");
            }
        }
        _params = params;
        _privateMode = params.privacy == 1;
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
        if (r != 0 && (_rounds[r].phase == Phase.Open || _rounds[r].phase == Phase.Proposed)) revert UpdatePending(r);
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
     * @notice Open the next round on the latest finalized model. In a DP job with an epsilon
     * budget, at most dpMaxRounds rounds ever start (every started round counts: it may publish a model).
     * @return roundId the new round's number (1 for the first)
     */
    function startRound() external onlyRole(AGGREGATOR_ROLE) returns (uint256 roundId) {
        _requireNoOpenRound();
        uint256 maxRounds = _params.dpMaxRounds;
        if (maxRounds != 0 && currentRound >= maxRounds) revert PrivacyBudgetSpent(maxRounds);
        roundId = currentRound + 1;
        currentRound = roundId;
        Round storage r = _rounds[roundId];
        r.baseModelHash = latestModelHash;
        r.startedAt = uint64(block.timestamp);
        r.deadline = uint64(block.timestamp) + _params.joinPeriod + _params.submissionPeriod;
        r.eligible = uint32(eligibleClients);
        r.startBlock = uint64(block.number);
        r.phase = Phase.Open;
        if (_privateMode) {
            PrivateRound storage pr = _private[roundId];
            pr.joinDeadline = uint64(block.timestamp) + _params.joinPeriod;
            pr.revealDeadline = r.deadline + _params.revealPeriod;
        }
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
        if (_privateMode) {
            if (_joins[roundId][msg.sender].roundKey == bytes32(0)) revert NotJoined(roundId, msg.sender);
            if (!_joinClosed(r, _private[roundId])) revert JoinStillOpen(_private[roundId].joinDeadline);
        }

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
     * @notice Join a private round (private mode): publish the per-round X25519 key the pairwise
     * masks are agreed with, and commit to the dealing of Shamir shares of the round secret, each
     * sealed to one holder's registered key. Joins close at the join deadline, or once every client
     * eligible at the start has joined; the participants are then fixed, before anything is revealed.
     * @param roundId the open round
     * @param roundKey the participant's X25519 public key for this round (nonzero)
     * @param dealing digest of its public dealing blob (nonzero)
     * @param locator where the dealing blob can be fetched (event data only; untrusted)
     */
    function joinRound(uint256 roundId, bytes32 roundKey, bytes32 dealing, string calldata locator) external {
        if (!_privateMode) revert NotPrivate();
        Client storage c = _clients[msg.sender];
        if (c.status != ClientStatus.Active) revert NotActive(msg.sender);
        if (c.stake < _params.minStake) revert StakeBelowMinimum(c.stake, _params.minStake);
        if (c.countedFrom > roundId) revert NotEligible(msg.sender);
        if (roundId != currentRound) revert NotCurrentRound(roundId, currentRound);
        Round storage r = _rounds[roundId];
        if (r.phase != Phase.Open) revert RoundNotOpen(roundId);
        PrivateRound storage pr = _private[roundId];
        if (_joinClosed(r, pr)) revert JoinClosed(pr.joinDeadline);
        Join storage j = _joins[roundId][msg.sender];
        if (j.roundKey != bytes32(0)) revert AlreadyJoined(roundId, msg.sender);
        if (roundKey == bytes32(0) || dealing == bytes32(0)) revert ZeroCommitment();
        uint256 cap = _cap(_params.maxUpdatesPerRound);
        if (pr.joined >= cap) revert RoundFull(cap);
        j.roundKey = roundKey;
        j.dealing = dealing;
        pr.joined += 1;
        emit ClientJoined(roundId, msg.sender, roundKey, dealing, locator);
    }

    /**
     * @notice Reveal, as a survivor of a private round, what removes the masks: its own self-mask
     * seed and its shares of each participant the chain counts as dropped (joined, did not submit).
     * Between the close of submissions (the deadline, or every participant submitted) and the
     * reveal deadline. A survivor that does not reveal is rejected and slashed by the outcome.
     * @param roundId the round
     * @param reveal keccak of the reveal blob (nonzero)
     * @param locator where the reveal blob can be fetched (event data only; untrusted)
     */
    function revealShares(uint256 roundId, bytes32 reveal, string calldata locator) external {
        Round storage r = _rounds[roundId];
        PrivateRound storage pr = _private[roundId];
        if (!_privateMode) revert NotPrivate();
        if (_updates[roundId][msg.sender].status != UpdateStatus.Submitted) revert NotJoined(roundId, msg.sender);
        if (r.phase != Phase.Open || !_submissionsClosed(r, pr)) revert RevealNotOpen(roundId);
        if (block.timestamp > pr.revealDeadline) revert RevealClosed(pr.revealDeadline);
        Join storage j = _joins[roundId][msg.sender];
        if (j.reveal != bytes32(0)) revert AlreadyRevealed(roundId, msg.sender);
        if (reveal == bytes32(0)) revert ZeroCommitment();
        j.reveal = reveal;
        pr.revealed += 1;
        emit SharesRevealed(roundId, msg.sender, reveal, locator);
    }

    /**
     * @notice Propose the open round's outcome (aggregator). The verifiers re-compute it off chain
     * and attest or dispute its digest; m attestations apply it. In trusted-aggregator mode
     * (k = 0) it applies at once. Callable after the deadline, or earlier once every client that
     * could submit when the round started has submitted (or the cap is reached). Needs the
     * job's bond (k > 0). Costs O(rejected + excluded).
     * @dev Below the quorum the outcome carries no model (modelHash zero): applied, it fails the
     * round but still slashes its rejections. Verdict lists must be strictly ascending.
     * @param roundId the open round
     * @param outcome the model hash, verdicts, evidence hash and locators (see {Outcome})
     * @return digest what the verifiers attest ({outcomeDigest})
     */
    function proposeRound(uint256 roundId, Outcome calldata outcome)
        external
        onlyRole(AGGREGATOR_ROLE)
        returns (bytes32 digest)
    {
        Round storage r = _rounds[roundId];
        if (r.phase != Phase.Open) revert RoundNotOpen(roundId);
        if (!_canPropose(r, roundId)) revert DeadlineNotReached(_closeTime(r, roundId));
        bool trusted = _verifiers.length == 0;
        if (!trusted && bondOf[msg.sender] < _params.aggregatorBond) {
            revert BondTooLow(bondOf[msg.sender], _params.aggregatorBond);
        }
        _checkVerdicts(roundId, r, outcome);
        digest = outcomeDigest(roundId, outcome);
        Proposal storage p = _proposals[roundId];
        p.digest = digest;
        p.modelHash = outcome.modelHash;
        p.proposer = msg.sender;
        p.proposedAt = uint64(block.timestamp);
        p.proposedBlock = uint64(block.number);
        // Only the digest is kept: the verdict lists come back as calldata with each attestation
        // (storing them would cost ~20k gas per verdict, too much for a full round in one block).
        r.phase = Phase.Proposed;
        _emitProposed(roundId, digest, outcome);
        if (trusted) {
            // Trusted-aggregator mode: applied at once, from calldata.
            _applyVerdicts(roundId, r, outcome.modelHash, outcome.rejected, outcome.reasons, outcome.excluded);
        }
    }

    /**
     * @notice Attest that the proposal's outcome is what the verifier re-computed (verifiers, once
     * per round, within the attestation period). The verifier passes the outcome itself (its
     * locators may be empty: they are not part of the digest); the contract checks its digest
     * against the proposal's. The m-th attestation applies it from calldata: slashes to the
     * treasury, the reward allocated, the new latest model (O(rejected + excluded)).
     * @param roundId the proposed round
     * @param outcome the outcome the verifier computed; its digest must equal the proposal's (else dispute)
     * @return attestations the attestations counted so far, this one included
     */
    function attest(uint256 roundId, Outcome calldata outcome) external returns (uint256 attestations) {
        (Round storage r, Proposal storage p) = _vote(roundId, 1);
        bytes32 digest = outcomeDigest(roundId, outcome);
        if (digest != p.digest) revert DigestMismatch(digest, p.digest);
        uint32 n = p.attestations + 1;
        p.attestations = n;
        emit RoundAttested(roundId, msg.sender, n);
        if (n == _threshold) {
            _applyVerdicts(roundId, r, outcome.modelHash, outcome.rejected, outcome.reasons, outcome.excluded);
        }
        return n;
    }

    /**
     * @notice Dispute the proposal: the verifier re-computed another outcome (verifiers, once per
     * round, within the attestation period). k - m + 1 disputes fail the round (nothing applied)
     * and forfeit the aggregator's bond to the treasury.
     * @param roundId the proposed round
     * @param digest the digest the verifier computed (zero if it could not compute one)
     */
    function dispute(uint256 roundId, bytes32 digest) external {
        (Round storage r, Proposal storage p) = _vote(roundId, 2);
        if (digest == p.digest) revert DisputeMatchesProposal(digest);
        uint32 n = p.disputes + 1;
        p.disputes = n;
        emit RoundDisputed(roundId, msg.sender, digest, n);
        if (n == _verifiers.length - _threshold + 1) {
            r.phase = Phase.Failed;
            r.closedBlock = uint64(block.number);
            address proposer = p.proposer;
            uint256 forfeited = Math.min(bondOf[proposer], _params.aggregatorBond);
            bondOf[proposer] -= forfeited;
            totalBonded -= forfeited;
            _toTreasury(forfeited);
            emit ProposalRejected(roundId, proposer, forfeited);
        }
    }

    /**
     * @notice Cancel a round whose proposal the committee neither applied nor failed within the
     * attestation period (anyone). Nothing is applied and no bond is forfeited.
     * @param roundId the proposed round
     */
    function expireProposal(uint256 roundId) external {
        Round storage r = _rounds[roundId];
        if (r.phase != Phase.Proposed) revert NotProposed(roundId);
        uint256 expiresAt = uint256(_proposals[roundId].proposedAt) + _params.attestationPeriod;
        if (block.timestamp <= expiresAt) revert ProposalNotExpired(expiresAt);
        r.phase = Phase.Cancelled;
        r.closedBlock = uint64(block.number);
        emit ProposalExpiredCancelled(roundId);
        emit RoundCancelled(roundId, msg.sender);
    }

    /**
     * @notice Cancel the open round: the aggregator at any time, anyone once the
     * grace period after the deadline is over. Only while no outcome is proposed (so a dead
     * aggregator cannot lock stakes, and nobody can race a pending verdict). Nobody is paid or
     * slashed; the model stays where it was.
     * @param roundId the open round
     */
    function cancelRound(uint256 roundId) external {
        Round storage r = _rounds[roundId];
        if (r.phase != Phase.Open) revert RoundNotOpen(roundId);
        if (!hasRole(AGGREGATOR_ROLE, msg.sender)) {
            uint256 cancelTime = _closeTime(r, roundId) + _params.gracePeriod;
            if (block.timestamp <= cancelTime) revert GracePeriodNotOver(cancelTime);
        }
        r.phase = Phase.Cancelled;
        r.closedBlock = uint64(block.number);
        emit RoundCancelled(roundId, msg.sender);
    }

    /// @notice Add to the caller's aggregator bond (aggregators; needed to propose when k > 0).
    function postBond() external payable onlyRole(AGGREGATOR_ROLE) {
        if (msg.value == 0) revert ZeroValue();
        uint256 bond = bondOf[msg.sender] + msg.value;
        bondOf[msg.sender] = bond;
        totalBonded += msg.value;
        emit BondPosted(msg.sender, msg.value, bond);
    }

    /**
     * @notice Withdraw (part of) the caller's bond, never while one of its proposals awaits the
     * committee.
     * @param amount wei to withdraw
     */
    function withdrawBond(uint256 amount) external nonReentrant {
        uint256 cur = currentRound;
        if (cur != 0 && _rounds[cur].phase == Phase.Proposed && _proposals[cur].proposer == msg.sender) {
            revert ProposalPending(cur);
        }
        uint256 bond = bondOf[msg.sender];
        if (amount == 0 || amount > bond) revert NothingOwed(msg.sender);
        bondOf[msg.sender] = bond - amount;
        totalBonded -= amount;
        emit BondWithdrawn(msg.sender, amount);
        payable(msg.sender).sendValue(amount);
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
        return _claim(roundId);
    }

    /**
     * @notice Claim the rewards of several finalized rounds in one transaction (credited to `owed`,
     * pulled with {withdrawRewards}), so that a client need not claim between two submissions.
     * Reverts, naming the round, if any of them has nothing to claim for the caller.
     * @param roundIds finalized rounds in which the caller's update was accepted and not yet claimed
     * @return total the wei credited
     */
    function claimRewards(uint256[] calldata roundIds) external returns (uint256 total) {
        for (uint256 i = 0; i < roundIds.length; ++i) {
            total += _claim(roundIds[i]);
        }
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
        if (role == AGGREGATOR_ROLE && _verifierKey[account] != bytes32(0)) {
            revert InvalidParams("the aggregator cannot be a verifier");
        }
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
        return _claimable(roundId, client);
    }

    /// @notice Whether the aggregator may propose the round's outcome now.
    function canPropose(uint256 roundId) external view returns (bool) {
        return _canPropose(_rounds[roundId], roundId);
    }

    /**
     * @notice Everything a client, the aggregator or a verifier needs about a round in one call:
     * the round and its proposal, whether it can be proposed now, the key its updates are sealed
     * to, the reward pool, and `who`'s update, registry record, claimable reward and owed balance.
     * @param roundId The round; 0 means the current round (0 before the first round).
     * @param who The party asking (any address; the zero address for none).
     */
    function roundView(uint256 roundId, address who) external view returns (RoundView memory v) {
        v.currentRound = currentRound;
        v.roundId = roundId == 0 ? v.currentRound : roundId;
        Round storage r = _rounds[v.roundId];
        v.round = r;
        v.proposal = _proposals[v.roundId];
        v.canPropose = _canPropose(r, v.roundId);
        v.aggregatorKey = _params.aggregatorKey;
        v.rewardPool = rewardPool;
        v.update = _updates[v.roundId][who];
        v.client = _clients[who];
        v.claimable = _claimable(v.roundId, who);
        v.owed = owed[who];
        v.priv = _private[v.roundId];
        v.join = _joins[v.roundId][who];
    }

    /// @notice A participant's join of a private round (zero if it did not join).
    function getJoin(uint256 roundId, address client) external view returns (Join memory) {
        return _joins[roundId][client];
    }

    /// @notice The committee: verifier addresses, their X25519 keys, and the threshold m.
    function committee() external view returns (Committee memory c) {
        uint256 k = _verifiers.length;
        c.verifiers = _verifiers;
        c.keys = new bytes32[](k);
        for (uint256 i = 0; i < k; ++i) {
            c.keys[i] = _verifierKey[_verifiers[i]];
        }
        c.threshold = _threshold;
    }

    /// @notice True when the job has no committee: the aggregator's proposals apply at once.
    function trustedAggregator() external view returns (bool) {
        return _verifiers.length == 0;
    }

    /// @notice A round's proposal: digest, model, proposer, time and votes (the verdict lists are
    /// in its RoundProposed event).
    function getProposal(uint256 roundId) external view returns (Proposal memory) {
        return _proposals[roundId];
    }

    /**
     * @notice The digest a verifier attests: keccak of the ABI encoding of the chain id, this
     * contract, the round and the outcome's model hash, verdicts and evidence hash (not the
     * locators, which are only hints).
     */
    function outcomeDigest(uint256 roundId, Outcome calldata o) public view returns (bytes32) {
        return keccak256(
            abi.encode(block.chainid, address(this), roundId, o.modelHash, o.rejected, o.reasons, o.excluded, o.evidenceHash)
        );
    }

    /// @dev The effective cap on updates per round.
    function _cap(uint32 maxUpdates) private pure returns (uint256) {
        return maxUpdates == 0 ? MAX_UPDATES_PER_ROUND : maxUpdates;
    }

    /// @dev Reverts while the current round is open or its proposal awaits the committee.
    function _requireNoOpenRound() private view {
        uint256 cur = currentRound;
        if (cur == 0) return;
        Phase ph = _rounds[cur].phase;
        if (ph == Phase.Open || ph == Phase.Proposed) revert RoundStillOpen(cur);
    }

    /// @dev Checks a verifier's vote (once, in time) on a proposed round and records it.
    function _vote(uint256 roundId, uint8 kind) private returns (Round storage r, Proposal storage p) {
        if (_verifierKey[msg.sender] == bytes32(0)) revert NotVerifier(msg.sender);
        r = _rounds[roundId];
        if (r.phase != Phase.Proposed) revert NotProposed(roundId);
        p = _proposals[roundId];
        uint256 expiresAt = uint256(p.proposedAt) + _params.attestationPeriod;
        if (block.timestamp > expiresAt) revert ProposalExpired(expiresAt);
        if (voteOf[roundId][msg.sender] != 0) revert AlreadyVoted(roundId, msg.sender);
        voteOf[roundId][msg.sender] = kind;
    }

    /// @dev RoundProposed, with the verdict lists (so that anyone can read the outcome from the log).
    function _emitProposed(uint256 roundId, bytes32 digest, Outcome calldata o) private {
        emit RoundProposed(
            roundId, digest, o.modelHash, o.rejected, o.reasons, o.excluded, o.evidenceHash, o.evidenceLocator,
            o.modelLocator
        );
    }

    /// @dev A proposal's verdicts: strictly ascending, disjoint lists of submitted updates; a model
    /// exactly when the accepted updates reach the quorum.
    function _checkVerdicts(uint256 roundId, Round storage r, Outcome calldata o) private view {
        uint256 nr = o.rejected.length;
        uint256 ne = o.excluded.length;
        if (o.reasons.length != nr) revert ReasonsMismatch(nr, o.reasons.length);
        address prev;
        for (uint256 i = 0; i < nr; ++i) {
            address a = o.rejected[i];
            if (i != 0 && a <= prev) revert VerdictsNotSorted(a);
            if (_updates[roundId][a].status != UpdateStatus.Submitted) revert InvalidVerdict(a);
            if (o.reasons[i] == 0) revert ZeroReason(a);
            prev = a;
        }
        uint256 j = 0;
        for (uint256 i = 0; i < ne; ++i) {
            address a = o.excluded[i];
            if (i != 0 && a <= prev) revert VerdictsNotSorted(a);
            if (_updates[roundId][a].status != UpdateStatus.Submitted) revert InvalidVerdict(a);
            while (j < nr && o.rejected[j] < a) ++j;
            if (j < nr && o.rejected[j] == a) revert InvalidVerdict(a); // both rejected and excluded
            prev = a;
        }
        // Each verdict names a distinct submitted update, so this cannot underflow.
        uint256 accepted = r.submissions - nr - ne;
        if (accepted < _params.quorum) {
            if (o.modelHash != bytes32(0)) revert ModelBelowQuorum(accepted, _params.quorum);
        } else if (o.modelHash == bytes32(0)) {
            revert ZeroModelHash();
        }
    }

    /// @dev Applies a proposal's verdicts from calldata (trusted mode at once, else at the m-th attestation).
    function _applyVerdicts(
        uint256 roundId,
        Round storage r,
        bytes32 modelHash,
        address[] calldata rejected,
        uint8[] calldata reasons,
        address[] calldata excluded
    ) private {
        uint256 removed;
        uint256 slashed;
        for (uint256 i = 0; i < rejected.length; ++i) {
            (uint256 w, uint256 amount) = _rejectOne(roundId, rejected[i], reasons[i]);
            removed += w;
            slashed += amount;
        }
        for (uint256 i = 0; i < excluded.length; ++i) {
            removed += _excludeOne(roundId, excluded[i]);
        }
        _close(roundId, r, modelHash, rejected.length, excluded.length, removed, slashed);
    }

    /// @dev The end of applying an outcome: slashes to the treasury, then Final (model, reward)
    /// or, below the quorum, Failed.
    function _close(
        uint256 roundId,
        Round storage r,
        bytes32 modelHash,
        uint256 nr,
        uint256 ne,
        uint256 removedWeight,
        uint256 slashed
    ) private {
        uint256 accepted = r.submissions - nr - ne;
        r.rejected = uint32(nr);
        r.excluded = uint32(ne);
        totalStaked -= slashed;
        _toTreasury(slashed);
        if (accepted < _params.quorum) {
            r.phase = Phase.Failed;
            r.closedBlock = uint64(block.number);
            emit RoundFailed(roundId, accepted, nr, ne);
            return;
        }
        uint256 weight = r.submittedWeight - removedWeight;
        r.modelHash = modelHash;
        r.acceptedWeight = weight;
        r.reward = _allocate();
        r.phase = Phase.Finalized;
        r.closedBlock = uint64(block.number);
        latestModelHash = modelHash;
        emit RoundFinalized(roundId, modelHash, accepted, weight, r.reward);
    }

    /// @dev Credits one round's reward share to the caller (see {claimReward}).
    function _claim(uint256 roundId) private returns (uint256 amount) {
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

    /// @dev Allocates this round's reward from the pool (funding only: slashes never reach it).
    function _allocate() private returns (uint256 reward) {
        uint256 pool = rewardPool;
        reward = Math.min(_params.rewardPerRound, pool);
        rewardPool = pool - reward;
        totalAllocated += reward;
    }

    /// @dev Credits slashed stake or a forfeited bond to the treasury, or burns it without one.
    function _toTreasury(uint256 amount) private {
        if (amount == 0) return;
        if (_params.treasury == address(0)) totalBurned += amount;
        else treasuryOwed += amount;
    }

    /// @dev Marks one rejected update and slashes its client; returns its weight and the slash.
    function _rejectOne(uint256 roundId, address a, uint8 reason) private returns (uint256 weight, uint256 amount) {
        Update storage u = _updates[roundId][a];
        u.status = UpdateStatus.Rejected;
        weight = u.samples;
        Client storage c = _clients[a];
        uint256 before = c.stake;
        amount = Math.mulDiv(before, _params.slashBps, BPS);
        c.stake = before - amount;
        // A client slashed below the minimum can no longer submit: it stops counting as eligible.
        uint256 minStake = _params.minStake;
        if (c.status == ClientStatus.Active && before >= minStake && before - amount < minStake) {
            eligibleClients -= 1;
        }
        emit UpdateRejected(roundId, a, amount, reason, before);
    }

    /// @dev Marks one excluded update; returns its weight.
    function _excludeOne(uint256 roundId, address a) private returns (uint256 weight) {
        Update storage u = _updates[roundId][a];
        u.status = UpdateStatus.Excluded;
        weight = u.samples;
        emit UpdateExcluded(roundId, a);
    }

    /// @dev Every client that could submit when the round started (and still can) has submitted,
    /// or the cap is reached. Late registrations and clients slashed below the minimum do not count.
    function _canPropose(Round storage r, uint256 roundId) private view returns (bool) {
        if (r.phase != Phase.Open) return false;
        if (!_privateMode) return block.timestamp > r.deadline || _allIn(r);
        PrivateRound storage pr = _private[roundId];
        return _submissionsClosed(r, pr) && (block.timestamp > pr.revealDeadline || pr.revealed >= r.submissions);
    }

    /// @dev When the aggregator may propose at the latest without waiting for anyone: the deadline
    /// (robust mode) or the reveal deadline (private mode). The grace period counts from it.
    function _closeTime(Round storage r, uint256 roundId) private view returns (uint256) {
        return _privateMode ? _private[roundId].revealDeadline : r.deadline;
    }

    /// @dev A private round's participants are fixed: the join deadline passed, or every client
    /// eligible at the start joined.
    function _joinClosed(Round storage r, PrivateRound storage pr) private view returns (bool) {
        return block.timestamp > pr.joinDeadline || (pr.joined > 0 && pr.joined >= r.eligible);
    }

    /// @dev A private round takes no more updates: the deadline passed, or every participant submitted.
    function _submissionsClosed(Round storage r, PrivateRound storage pr) private view returns (bool) {
        return block.timestamp > r.deadline || (_joinClosed(r, pr) && r.submissions >= pr.joined);
    }

    function _claimable(uint256 roundId, address client) private view returns (uint256) {
        Round storage r = _rounds[roundId];
        Update storage u = _updates[roundId][client];
        if (r.phase != Phase.Finalized || u.status != UpdateStatus.Submitted) return 0;
        return Math.mulDiv(r.reward, u.samples, r.acceptedWeight);
    }

    function _allIn(Round storage r) private view returns (bool) {
        return (r.submissions > 0 && r.eligibleSubmitted >= r.eligible)
            || r.submissions >= _cap(_params.maxUpdatesPerRound);
    }
}
