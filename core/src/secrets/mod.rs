//! Secrets: envelope encryption (`kms`, `envelope`), the secret store (`store`), masking
//! (`mask`) and session-scoped sealed boxes (`sealed`).

pub mod envelope;
pub mod kms;
pub mod mask;
pub mod sealed;
pub mod store;
pub mod unescape;
