"""The parties of a real federation, one process each: deploy, aggregator, client, verifier.

`ml.parties.federation` plays every party in one process on a dev chain. Here each
party is its own long-running process, possibly on its own machine, that meets
the others only on the chain and in the update store:

* :func:`deploy_job` (``ape run deploy``): job parameters from options and/or a
  YAML/JSON file, the aggregator's sealing key (generated into a 0600 file
  unless given), the initial model blob in the store, the contract, and a
  record in the deployments file (keyed by network) that every other command
  reads.
* :class:`AggregatorParty` (``ape run aggregator``): start a round, wait until
  every active client is in (or the deadline), finalize, repeat.
* :class:`ClientParty` (``ape run client``): register if needed, wait for an
  open round it has not submitted to, train on its own ``.npz``, submit, claim
  its rewards and withdraw them, repeat.
* :class:`VerifierParty` (``ape run verifier``): a committee member; for each proposal,
  re-compute the round with its own key, check the evidence, attest or dispute.
* :func:`split_dataset` (``python -m ml.parties.split``): per-client ``.npz`` files
  and the aggregator's evaluation set, from a dataset and a partition.

Every party takes its state from the chain and the store, so it can be killed
at any point and restarted with the same command: a client never submits twice
to a round (it asks the chain first), an aggregator resumes the open round.
SIGINT/SIGTERM ask a party to finish the step it is in and exit 0; a second
signal abandons the step (safe for the same reason).
"""
from __future__ import annotations

from .lifecycle import (  # noqa: F401 - the package's API
    RACES,
    PartyError,
    Abandoned,
    parse_eth,
    parse_duration,
    Log,
    short,
    fmt_eth,
    Stop,
    chain_now,
    advance_chain_past,
    transient_errors,
    run_until_done,
    user_errors,
    run_party,
    prepare_account,
    ensure_funds,
    load_npz,
    check_data_fits,
)
from .deploy import (  # noqa: F401 - the package's API
    STRATEGIES,
    MAX_UPDATES_PER_ROUND,
    DEFAULT_DEPLOYMENTS,
    DEFAULT_KEY_FILE,
    DEFAULT_STORE,
    DeployConfig,
    read_config_file,
    make_deploy_config,
    Job,
    open_job,
    DeployResult,
    deploy_job,
    admit_clients,
)
from .aggregator import (  # noqa: F401 - the package's API
    Aggregator,
    AggregatorOptions,
    RoundRecord,
    AggregatorParty,
)
from .client import (  # noqa: F401 - the package's API
    TrainConfig,
    SubmitResult,
    RESEAL_ATTEMPTS,
    ClientError,
    Client,
    ClientOptions,
    ClientParty,
)
from .verifier import (  # noqa: F401 - the package's API
    Decision,
    Verifier,
    VerifierOptions,
    VerifierParty,
)
from .split import (  # noqa: F401 - the package's API
    split_dataset,
)
