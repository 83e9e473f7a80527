//! Flow records to wait for, shared by the lab tests (`learning.rs`) and
//! the demo (`xtask/src/demo/checks.rs`, which includes this file).

/// Flow records to wait for: of connection `conn`, at least `at_least` at
/// each of `sides` (`egress` at the client, `ingress` at the server; a
/// connection from outside the lab's pods has no egress record).
#[derive(Clone, Copy, Debug)]
pub struct Logged<'a> {
    /// (client, server, port), pods by prefix.
    pub conn: (&'a str, &'a str, u16),
    /// The sides that log it.
    pub sides: &'a [&'a str],
    /// How many records at each side.
    pub at_least: usize,
}

/// Both sides of a connection, one record each.
pub const BOTH: &[&str] = &["egress", "ingress"];
