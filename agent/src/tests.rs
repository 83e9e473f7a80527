//! The agent's own checks.

use super::*;

#[test]
fn a_dead_or_foreign_pid_is_not_an_agent() {
    assert!(!agent_alive(std::process::id()), "this process");
    assert!(!agent_alive(0));
    assert!(!agent_alive(u32::MAX));
}
