//! Per-client limits on the unauthenticated endpoints.

use crate::InfraError;
use crate::service::{AuthService, Throttled};

impl AuthService {
    /// Counts one request of `client` (an IP address) to `endpoint`.
    pub async fn admit_client(
        &self,
        endpoint: &str,
        client: &str,
    ) -> Result<Result<(), Throttled>, InfraError> {
        self.admit(
            &format!("client:{endpoint}:{client}"),
            self.settings.limits.client_requests,
        )
        .await
    }
}
