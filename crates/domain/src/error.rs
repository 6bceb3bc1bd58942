//! Infrastructure failures as the domain sees them: opaque, but split by what a
//! client can do about them (retry later, or nothing: a bug).

/// A port failed for reasons outside the domain.
#[derive(Debug, thiserror::Error)]
pub enum InfraError {
    /// A dependency (database, mail server) is down, overloaded or timed out; retrying later may work.
    #[error("a dependency is unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// Anything else: a bug or a broken invariant.
    #[error("unexpected infrastructure error")]
    Unexpected(#[source] anyhow::Error),
}
