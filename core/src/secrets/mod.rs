//! Secrets: envelope encryption (`kms`, `envelope`), the secret store (`store`), masking
//! (`mask`) and session-scoped sealed boxes (`sealed`).

pub mod envelope;
/// Key-encryption keys: re-exported here, where they were first declared, from the bottom
/// layer ([`crate::kms`]) that `config` and `host_api` also use.
pub use crate::kms;
pub mod mask;
pub mod sealed;
pub mod store;
pub mod unescape;
