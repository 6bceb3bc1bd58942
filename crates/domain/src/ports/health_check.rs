//! Readiness of a dependency, for `/health/ready`.

use async_trait::async_trait;

use crate::InfraError;

#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait HealthCheck: Send + Sync {
    /// `Ok` if the dependency answers now; `InfraError::Unavailable` if not.
    async fn check(&self) -> Result<(), InfraError>;
}
