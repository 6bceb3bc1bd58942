//! The audit trail's own reads and writes. Events that describe a change are written
//! by the port method making that change, in its transaction; this port writes events
//! that describe no other change (a failed login, a key rotation), lists and purges.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::InfraError;
use crate::audit::{AuditEvent, AuditQuery};

#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait AuditLog: Send + Sync {
    /// Writes `event` on its own.
    async fn record(&self, event: &AuditEvent) -> Result<(), InfraError>;

    /// Events matching `query`, newest first.
    async fn list(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>, InfraError>;

    /// Deletes events older than `before`; returns how many.
    async fn purge_audit(&self, before: DateTime<Utc>) -> Result<u64, InfraError>;
}
