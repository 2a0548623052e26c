//! The evidence ledger's building blocks (issue: evidence ledger and
//! auditor export), pure: RFC 6962 Merkle tree hashing with inclusion and
//! consistency proofs ([`merkle`]), and C2SP signed notes and
//! `tlog-checkpoint`s with Ed25519 ([`note`]). No I/O: the log file, its
//! appends and `evidence verify`'s use of it build on these.

pub mod merkle;
pub mod note;
