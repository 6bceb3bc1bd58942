//! Sessions: a login starts a refresh-token family; each refresh rotates it; reuse
//! of a spent token revokes it; logout revokes one family or all of an account's.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::ports::{NewRefreshToken, Rotation, SignedFor, TokenIds};
use crate::service::AuthService;
use crate::service::refresh::RefreshError;
use crate::service::register::subject_of;
use crate::{AuditKind, InfraError, RequestContext, TokenKind, TokenPair, TokenSubject, User};

/// What one rotation attempt came to, as `refresh` acts on it.
enum Step {
    Pair(TokenPair),
    /// Nothing changed; the account is not as the pair was signed for.
    AccountChanged,
    /// Unknown, ended, expired or revoked.
    Refused,
    /// Not the session's live token (`Rotation::Superseded`): reuse, if genuine.
    Superseded,
}

pub(crate) fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

fn new_ids(now: DateTime<Utc>, session_id: Uuid) -> TokenIds {
    TokenIds {
        session_id,
        access_jti: Uuid::new_v4().simple().to_string(),
        refresh_jti: Uuid::new_v4().simple().to_string(),
        issued_at: now,
    }
}

impl AuthService {
    /// Issues the first pair of a new family for `user`, recording `audit` with it and
    /// giving `give_back`'s budgets their event back, in one transaction.
    pub(crate) async fn start_session(
        &self,
        user: &User,
        audit: Option<crate::AuditEvent>,
        origin: &RequestContext,
        give_back: crate::ports::GiveBack<'_>,
    ) -> Result<TokenPair, InfraError> {
        let (pair, token) = self.new_session(user, origin)?;
        self.ports
            .refresh_tokens
            .insert(&token, audit, give_back)
            .await?;
        Ok(pair)
    }

    /// The first pair of a new family for `user`, and the refresh token that starts
    /// the session once stored.
    pub(crate) fn new_session(
        &self,
        user: &User,
        origin: &RequestContext,
    ) -> Result<(TokenPair, NewRefreshToken), InfraError> {
        let family = Uuid::new_v4();
        let ids = new_ids(self.ports.clock.now(), family);
        let pair = self.ports.tokens.issue(&subject_of(user), &ids)?;
        let family_expires_at = ids.issued_at + self.settings.session_max;
        let token = NewRefreshToken {
            token_hash: token_hash(&pair.refresh),
            family_id: family,
            user_id: user.id,
            expires_at: self
                .ports
                .tokens
                .refresh_expiry(ids.issued_at)
                .min(family_expires_at),
            created_at: ids.issued_at,
            family_expires_at,
            origin: origin.clone(),
        };
        Ok((pair, token))
    }

    /// Spends a refresh token for the next pair of its family. The token just replaced,
    /// presented again within the grace window, gets the same next pair; any other
    /// spent token of a live family (genuine, by its signature) revokes the family and
    /// is refused, as is every token of that family from then on.
    pub async fn refresh(
        &self,
        refresh_token: &str,
        context: &RequestContext,
    ) -> Result<TokenPair, RefreshError> {
        let now = self.ports.clock.now();
        // Every check but the signature's: rotation spends a refresh token by the hash
        // of its exact text, which only a token this service signed can match, so a
        // rotation that spends it vouches for the token and its claims. Where none does
        // (refused, or the account changed), the signature is checked before the claims
        // are used any further. (It was a seventh of a refresh's CPU.)
        let claims = self
            .ports
            .tokens
            .read_unverified(refresh_token, TokenKind::Refresh, now)?;
        // The session is named in the token; tokens from before that are looked up.
        let session = match claims.session_id {
            Some(session) => session,
            None => {
                self.ports
                    .tokens
                    .verify(refresh_token, TokenKind::Refresh, now)?;
                match self
                    .ports
                    .refresh_tokens
                    .family_of(&token_hash(refresh_token), None)
                    .await?
                {
                    Some((family, _)) => family,
                    None => return Err(RefreshError::InvalidToken),
                }
            }
        };
        // The next pair is signed for the account as the token names it, and the
        // rotation checks in the same step that the account still is so: no read first.
        let as_named = SignedFor {
            subject: TokenSubject {
                user_id: claims.user_id,
                email: claims.email,
                email_verified: claims.email_verified,
            },
            presented_issued_at: claims.issued_at,
        };
        match self
            .rotate_for(refresh_token, &as_named, session, now, context)
            .await?
        {
            Step::Pair(pair) => return Ok(pair),
            Step::AccountChanged => {}
            refused => {
                // Refused either way; checked so that a token the store does not know
                // takes as long whatever its claims say (the account changed takes it
                // too). A genuine earlier token of a live session was spent: reuse.
                let genuine = self
                    .ports
                    .tokens
                    .verify(refresh_token, TokenKind::Refresh, now)
                    .is_ok();
                if genuine && matches!(refused, Step::Superseded) {
                    self.revoke_reused(&as_named.subject, session, now, context)
                        .await?;
                }
                return Err(RefreshError::InvalidToken);
            }
        }
        // Not vouched for: its claims count only if it is signed.
        let claims = self
            .ports
            .tokens
            .verify(refresh_token, TokenKind::Refresh, now)?;
        // The account changed since: read it, and sign for it as it is now.
        let user = match self.ports.users.find_by_id(claims.user_id).await? {
            Some(user) if user.accepts_token_issued_at(claims.issued_at) => user,
            _ => return Err(RefreshError::InvalidToken),
        };
        let as_it_is = SignedFor {
            subject: subject_of(&user),
            presented_issued_at: claims.issued_at,
        };
        // Changed again in between: refused (the token is still live; a retry works).
        match self
            .rotate_for(refresh_token, &as_it_is, session, now, context)
            .await?
        {
            Step::Pair(pair) => Ok(pair),
            Step::Superseded => {
                self.revoke_reused(&as_it_is.subject, session, now, context)
                    .await?;
                Err(RefreshError::InvalidToken)
            }
            Step::Refused | Step::AccountChanged => Err(RefreshError::InvalidToken),
        }
    }

    /// Revokes `session`: a spent token of it was presented again (theft, or a client
    /// that lost its newer token), so no token of it refreshes from now on.
    async fn revoke_reused(
        &self,
        subject: &TokenSubject,
        session: Uuid,
        now: DateTime<Utc>,
        context: &RequestContext,
    ) -> Result<(), RefreshError> {
        let audit = crate::AuditEvent::new(
            AuditKind::RefreshReuseDetected,
            now,
            Some(subject.user_id),
            Some(&subject.email),
            context,
        );
        self.ports
            .refresh_tokens
            .revoke_family(session, now, &audit)
            .await?;
        metrics::counter!("passcode_refresh_reuse_detected_total").increment(1);
        tracing::warn!(user = %subject.user_id, "a spent refresh token was presented again; its session is revoked");
        Ok(())
    }

    /// One rotation of `refresh_token` for the next pair, signed for `signed_for`.
    async fn rotate_for(
        &self,
        refresh_token: &str,
        signed_for: &SignedFor,
        session: Uuid,
        now: DateTime<Utc>,
        context: &RequestContext,
    ) -> Result<Step, RefreshError> {
        let subject = &signed_for.subject;
        let ids = new_ids(now, session);
        let next = self.ports.tokens.issue(subject, &ids)?;
        let successor = NewRefreshToken {
            token_hash: token_hash(&next.refresh),
            family_id: session, // as the presented token names it
            user_id: subject.user_id,
            // The session keeps its first end; a token lives until the earlier of the two.
            expires_at: self.ports.tokens.refresh_expiry(now),
            created_at: now,
            family_expires_at: now + self.settings.session_max,
            origin: context.clone(),
        };
        let rotation = self
            .ports
            .refresh_tokens
            .rotate(
                &token_hash(refresh_token),
                now,
                self.settings.refresh_grace,
                &successor,
                &ids,
                signed_for,
            )
            .await?;
        Ok(match rotation {
            Rotation::Rotated => Step::Pair(next),
            Rotation::Replayed { ids } => Step::Pair(self.ports.tokens.issue(subject, &ids)?),
            Rotation::Superseded => Step::Superseded,
            Rotation::Refused => Step::Refused,
            Rotation::AccountChanged => Step::AccountChanged,
        })
    }

    /// Revokes the family of `refresh_token`, or with `all` every family of its account.
    pub async fn logout(
        &self,
        refresh_token: &str,
        all: bool,
        context: &RequestContext,
    ) -> Result<(), RefreshError> {
        let now = self.ports.clock.now();
        let claims = self
            .ports
            .tokens
            .verify(refresh_token, TokenKind::Refresh, now)?;
        let kind = if all {
            AuditKind::LogoutAll
        } else {
            AuditKind::Logout
        };
        // The store fills in the account from the session it ends.
        let audit = crate::AuditEvent::new(kind, now, None, None, context);
        self.ports
            .refresh_tokens
            .logout(
                &token_hash(refresh_token),
                claims.session_id,
                all,
                now,
                audit,
            )
            .await?
            .ok_or(RefreshError::InvalidToken)?;
        Ok(())
    }
}

impl AuthService {
    /// Deactivates (or reactivates) the account of `email`: a deactivated account can
    /// neither log in nor refresh, and its sessions are revoked. `false` if there is none.
    pub async fn set_account_active(
        &self,
        email: &crate::EmailAddress,
        active: bool,
    ) -> Result<bool, InfraError> {
        let Some(user) = self.ports.users.find_by_email(email).await? else {
            return Ok(false);
        };
        let now = self.ports.clock.now();
        let kind = if active {
            AuditKind::Activated
        } else {
            AuditKind::Deactivated
        };
        let audit = self.audit_event(kind, Some(&user), &user.email, &RequestContext::default());
        self.ports
            .users
            .set_active(user.id, active, now, &audit)
            .await?;
        if !active {
            self.ports
                .refresh_tokens
                .revoke_all(user.id, now, None)
                .await?;
        }
        Ok(true)
    }
}

/// A session as listed to its owner: the stored facts, and whether it is the caller's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub info: crate::ports::SessionInfo,
    pub current: bool,
}

impl AuthService {
    /// The live sessions of the account behind `access_token`, the caller's marked.
    pub async fn list_sessions(
        &self,
        access_token: &str,
    ) -> Result<Vec<Session>, crate::service::AuthenticateError> {
        let claims = self.check_access_token(access_token)?;
        let user = self.current_user(access_token).await?;
        let sessions = self
            .ports
            .refresh_tokens
            .sessions(user.id, self.ports.clock.now())
            .await?;
        Ok(sessions
            .into_iter()
            .map(|info| Session {
                current: claims.session_id == Some(info.id),
                info,
            })
            .collect())
    }

    /// Ends one session of the caller's account. `false` if it has no such live session.
    pub async fn end_session(
        &self,
        access_token: &str,
        session: Uuid,
        context: &RequestContext,
    ) -> Result<bool, crate::service::AuthenticateError> {
        let user = self.current_user(access_token).await?;
        let now = self.ports.clock.now();
        let audit = self.audit_event(AuditKind::Logout, Some(&user), &user.email, context);
        Ok(self
            .ports
            .refresh_tokens
            .end_session(user.id, session, now, &audit)
            .await?)
    }

    /// Ends every session of the caller's account but the caller's own. How many ended.
    pub async fn end_other_sessions(
        &self,
        access_token: &str,
        context: &RequestContext,
    ) -> Result<u64, crate::service::AuthenticateError> {
        let claims = self.check_access_token(access_token)?;
        let user = self.current_user(access_token).await?;
        // A token from before tokens named their session keeps none: all end.
        let keep = claims.session_id.unwrap_or(Uuid::nil());
        let now = self.ports.clock.now();
        let audit = self.audit_event(AuditKind::LogoutAll, Some(&user), &user.email, context);
        Ok(self
            .ports
            .refresh_tokens
            .end_other_sessions(user.id, keep, now, &audit)
            .await?)
    }
}
