// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @dev Test-only: forces ether into a contract that refuses plain transfers, the way an attacker
/// can (selfdestruct sends its balance without calling the recipient; still true after Cancun).
contract ForceSend {
    /// @notice Sends `msg.value` to `target` without running its code.
    function force(address payable target) external payable {
        selfdestruct(target);
    }
}
