//! Refresh tokens kept server-side (only a SHA-256 of each), one live token per
//! session (family): every refresh spends the presented token and records its
//! successor, so a spent token presented again reveals theft and revokes the session.

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use crate::ports::GiveBack;
use crate::{AuditEvent, InfraError, TokenSubject, UserId};

/// What makes a token pair: its ids and issue time. Signing is deterministic, so the
/// same ids, time and account give the same tokens again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenIds {
    /// The session (refresh-token family) the pair belongs to (the `sid` claim).
    pub session_id: Uuid,
    pub access_jti: String,
    pub refresh_jti: String,
    pub issued_at: DateTime<Utc>,
}

/// A refresh token to remember.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRefreshToken {
    /// SHA-256 of the token string.
    pub token_hash: Vec<u8>,
    pub family_id: Uuid,
    pub user_id: UserId,
    pub expires_at: DateTime<Utc>,
    /// When it was issued (from the domain's clock): the session's start (`insert`).
    pub created_at: DateTime<Utc>,
    /// When the whole family (the session) ends, however often it is refreshed. A
    /// successor keeps the family's end; the store ignores this field in `rotate`,
    /// and no token refreshes past it, whatever its own `expires_at`.
    pub family_expires_at: DateTime<Utc>,
    /// Who asked: recorded as the session's origin (`insert`) or last use (`rotate`).
    pub origin: crate::RequestContext,
}

/// The account as the presented refresh token names it, for which the successor was
/// signed. A rotation happens only if the account still is so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedFor {
    pub subject: TokenSubject,
    /// When the presented token was issued: refused if the account has cut off tokens
    /// issued before some later time (`User::tokens_valid_after`).
    pub presented_issued_at: DateTime<Utc>,
}

/// What presenting a refresh token led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// It was live: now spent, and `successor` is the family's live token.
    Rotated,
    /// Already spent, within the grace window: the same client refreshing twice at
    /// once. It gets the pair already issued (`ids`).
    Replayed { ids: TokenIds },
    /// Not the session's live token, nor the one it replaced within the grace window,
    /// while the session is live: if the presented token is genuine (signed by this
    /// service), it was spent, and presenting it again reveals theft; the caller checks
    /// its signature and then revokes the session. (The store keeps only the live token
    /// and the one before it, so it cannot tell an earlier genuine token of the session
    /// from a forged one naming it.) Nothing changed.
    Superseded,
    /// Unknown, revoked or expired, or its family (session) reached its end.
    Refused,
    /// The account is not as the successor was signed for (`SignedFor`): gone,
    /// inactive, tokens cut off, or another address or verification. Nothing changed.
    AccountChanged,
}

/// A session (refresh-token family) as its owner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    pub created_client: Option<String>,
    pub created_user_agent: Option<String>,
    pub last_used_at: DateTime<Utc>,
    pub last_client: Option<String>,
    pub last_user_agent: Option<String>,
}

#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait RefreshTokenStore: Send + Sync {
    /// The account's live sessions (a token that can still refresh), newest use first.
    async fn sessions(
        &self,
        user: UserId,
        now: DateTime<Utc>,
    ) -> Result<Vec<SessionInfo>, InfraError>;

    /// Ends session `session` if it is the account's and live, recording `audit`.
    /// `false` if there was nothing to end.
    async fn end_session(
        &self,
        user: UserId,
        session: Uuid,
        now: DateTime<Utc>,
        audit: &AuditEvent,
    ) -> Result<bool, InfraError>;

    /// Ends every session of the account but `keep`, recording `audit`; how many ended.
    async fn end_other_sessions(
        &self,
        user: UserId,
        keep: Uuid,
        now: DateTime<Utc>,
        audit: &AuditEvent,
    ) -> Result<u64, InfraError>;

    /// Remembers a refresh token that starts a family (at login or verification), and
    /// records `audit` with it; in the same transaction, first gives each of
    /// `give_back`'s keys one event back, as `Throttle::release` does: a right password
    /// was no failure.
    async fn insert<'a>(
        &self,
        token: &NewRefreshToken,
        audit: Option<AuditEvent>,
        give_back: GiveBack<'a>,
    ) -> Result<(), InfraError>;

    /// Spends the token of hash `presented`, if it is the live token of session
    /// `successor.family_id`, and makes `successor` (made with `successor_ids`) the
    /// session's live token, in one atomic step: of concurrent callers, one rotates and
    /// the others see it spent. The same step checks the account against `signed_for`
    /// (so a refresh needs no separate read of the account): if it is no longer so,
    /// nothing changes (`AccountChanged`). See [`Rotation`] for the other outcomes.
    async fn rotate(
        &self,
        presented: &[u8],
        now: DateTime<Utc>,
        grace: Duration,
        successor: &NewRefreshToken,
        successor_ids: &TokenIds,
        signed_for: &SignedFor,
    ) -> Result<Rotation, InfraError>;

    /// The session and account of a refresh token, if the session is not revoked:
    /// with `session` (the token's signed `sid`), that session, whichever of its tokens
    /// this is; without (a token from before sessions were named), the session whose
    /// live token it is, found by a scan (such tokens expire).
    async fn family_of(
        &self,
        token_hash: &[u8],
        session: Option<Uuid>,
    ) -> Result<Option<(Uuid, UserId)>, InfraError>;

    /// Revokes one family: none of its tokens refreshes again. Records `audit` with it.
    async fn revoke_family(
        &self,
        family_id: Uuid,
        now: DateTime<Utc>,
        audit: &AuditEvent,
    ) -> Result<(), InfraError>;

    /// Revokes every family of an account, recording `audit` (if any) with it.
    async fn revoke_all(
        &self,
        user_id: UserId,
        now: DateTime<Utc>,
        audit: Option<AuditEvent>,
    ) -> Result<(), InfraError>;

    /// A logout: ends the session of a refresh token, found as `family_of` finds it
    /// (by `token_hash` and `session`), or with `all` every session of its account, and
    /// records `audit` with that account as its `user_id`. The account, or `None` if
    /// that session is not live (then nothing is written). Of logouts racing for one
    /// session, exactly one ends it, records its event and gets the account. The
    /// default reads, then writes ([`logout_by_reading`]), which does not keep that
    /// promise against a racing logout: each backend overrides it, in one step.
    async fn logout(
        &self,
        token_hash: &[u8],
        session: Option<Uuid>,
        all: bool,
        now: DateTime<Utc>,
        audit: AuditEvent,
    ) -> Result<Option<UserId>, InfraError> {
        logout_by_reading(self, token_hash, session, all, now, audit).await
    }
}

/// [`RefreshTokenStore::logout`] as two steps, for any store: `family_of`, then
/// `revoke_family` or `revoke_all`.
pub async fn logout_by_reading<S: RefreshTokenStore + ?Sized>(
    store: &S,
    token_hash: &[u8],
    session: Option<Uuid>,
    all: bool,
    now: DateTime<Utc>,
    audit: AuditEvent,
) -> Result<Option<UserId>, InfraError> {
    let Some((family, user)) = store.family_of(token_hash, session).await? else {
        return Ok(None);
    };
    let audit = AuditEvent {
        user_id: Some(user),
        ..audit
    };
    if all {
        store.revoke_all(user, now, Some(audit)).await?;
    } else {
        store.revoke_family(family, now, &audit).await?;
    }
    Ok(Some(user))
}
