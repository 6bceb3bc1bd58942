//! The audit trail: security events, each written in the same transaction as the
//! change it describes (or alone where nothing else changes, as for a failed login).
//! Never a secret: no password, code, token or key material.

use std::fmt;

use chrono::{DateTime, Utc};

use crate::{EmailAddress, UserId};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditKind {
    /// A registration was received for an address (new, or still waiting for its code).
    Registered,
    /// An address was verified with the code of a registration.
    Verified,
    LoginSucceeded,
    LoginFailed,
    /// Changed by the signed-in user (old password given).
    PasswordChanged,
    /// Set with a reset code.
    PasswordReset,
    /// A spent refresh token was presented again: its session was revoked.
    RefreshReuseDetected,
    /// Signed in with a mailed code instead of a password.
    CodeSignIn,
    /// One session ended by its refresh token.
    Logout,
    /// Every session of the account ended.
    LogoutAll,
    Deactivated,
    Activated,
    /// The signing keys were rotated (`passcode keys rotate` or `activate`).
    KeysRotated,
    /// The account moved to another address (the event keeps the new one).
    EmailChanged,
    /// The account and everything personal of it were erased (kept: this event, with
    /// the account id and no address).
    AccountDeleted,
}

impl AuditKind {
    pub const ALL: [Self; 15] = [
        Self::Registered,
        Self::Verified,
        Self::LoginSucceeded,
        Self::LoginFailed,
        Self::PasswordChanged,
        Self::PasswordReset,
        Self::RefreshReuseDetected,
        Self::CodeSignIn,
        Self::Logout,
        Self::LogoutAll,
        Self::Deactivated,
        Self::Activated,
        Self::KeysRotated,
        Self::AccountDeleted,
        Self::EmailChanged,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Registered => "registered",
            Self::Verified => "verified",
            Self::LoginSucceeded => "login_succeeded",
            Self::LoginFailed => "login_failed",
            Self::PasswordChanged => "password_changed",
            Self::PasswordReset => "password_reset",
            Self::RefreshReuseDetected => "refresh_reuse_detected",
            Self::CodeSignIn => "code_sign_in",
            Self::Logout => "logout",
            Self::LogoutAll => "logout_all",
            Self::Deactivated => "deactivated",
            Self::Activated => "activated",
            Self::KeysRotated => "keys_rotated",
            Self::AccountDeleted => "account_deleted",
            Self::EmailChanged => "email_changed",
        }
    }

    pub fn parse(stored: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == stored)
    }
}

impl fmt::Display for AuditKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who asked: the client address (as computed by the trusted-proxy rules) and the
/// request id. Empty for the command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestContext {
    pub client: Option<String>,
    pub request_id: Option<String>,
    /// The client's `User-Agent`, shortened (sessions show it; the audit trail does not).
    pub user_agent: Option<String>,
}

/// One entry of the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub kind: AuditKind,
    pub at: DateTime<Utc>,
    pub user_id: Option<UserId>,
    pub email: Option<EmailAddress>,
    pub client: Option<String>,
    pub request_id: Option<String>,
}

impl AuditEvent {
    pub fn new(
        kind: AuditKind,
        at: DateTime<Utc>,
        user_id: Option<UserId>,
        email: Option<&EmailAddress>,
        context: &RequestContext,
    ) -> Self {
        Self {
            kind,
            at,
            user_id,
            email: email.cloned(),
            client: context.client.clone(),
            request_id: context.request_id.clone(),
        }
    }

    /// The same actor and time, another kind (an adapter records this one only if
    /// its change happens, as a refresh-token reuse inside `rotate`).
    pub fn with_kind(&self, kind: AuditKind) -> Self {
        Self {
            kind,
            ..self.clone()
        }
    }
}

/// Which events to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub email: Option<EmailAddress>,
    pub since: Option<DateTime<Utc>>,
    pub limit: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_their_stored_names() {
        for kind in AuditKind::ALL {
            assert_eq!(AuditKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(AuditKind::parse("other"), None);
    }
}
