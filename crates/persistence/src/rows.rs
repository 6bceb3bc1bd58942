//! Table rows and their translation to domain types, shared by every backend.

use diesel::prelude::*;
use passcode_domain::otp::StoredOtp;
use passcode_domain::{
    CodeHash, EmailAddress, FullName, InfraError, NewUser, OtpPurpose, PasswordHash, Registration,
    User, UserId,
};
use uuid::Uuid;

use crate::schema::{otp_codes, users};
use crate::time::{from_millis, to_millis};

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = users)]
pub(crate) struct UserRow {
    pub id: String,
    pub email: String,
    pub full_name: String,
    pub password_hash: String,
    pub email_verified: bool,
    pub is_active: bool,
    pub created_at: i64,
    pub updated_at: i64,
    pub tokens_valid_after: i64,
}

impl UserRow {
    pub(crate) fn new(user: &NewUser) -> Self {
        Self {
            id: user.id.0.to_string(),
            email: user.email.as_str().to_owned(),
            full_name: user.full_name.as_str().to_owned(),
            password_hash: user.password_hash.as_str().to_owned(),
            email_verified: false,
            is_active: true,
            created_at: to_millis(user.created_at),
            updated_at: to_millis(user.created_at),
            tokens_valid_after: 0,
        }
    }

    pub(crate) fn into_domain(self) -> Result<User, InfraError> {
        let id = Uuid::parse_str(&self.id)
            .map_err(|e| InfraError::Unexpected(anyhow::Error::new(e).context("stored user id")))?;
        Ok(User {
            id: UserId(id),
            email: EmailAddress::from_trusted(self.email),
            full_name: FullName::from_trusted(self.full_name),
            password_hash: PasswordHash::new(self.password_hash),
            email_verified: self.email_verified,
            is_active: self.is_active,
            created_at: from_millis(self.created_at),
            tokens_valid_after: from_millis(self.tokens_valid_after),
        })
    }
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = otp_codes)]
pub(crate) struct OtpRow {
    pub id: String,
    pub email: String,
    pub purpose: String,
    pub code_hash: Vec<u8>,
    pub attempts: i32,
    pub consumed_at: Option<i64>,
    pub created_at: i64,
    pub expires_at: i64,
    pub full_name: Option<String>,
    pub password_hash: Option<String>,
    pub user_id: Option<String>,
}

impl OtpRow {
    pub(crate) fn new(otp: &passcode_domain::otp::NewOtp) -> Self {
        Self {
            id: otp.id.to_string(),
            email: otp.email.as_str().to_owned(),
            purpose: otp.purpose.as_str().to_owned(),
            code_hash: otp.code_hash.as_bytes().to_vec(),
            attempts: 0,
            consumed_at: None,
            created_at: to_millis(otp.created_at),
            expires_at: to_millis(otp.expires_at),
            full_name: otp
                .registration
                .as_ref()
                .map(|r| r.full_name.as_str().to_owned()),
            password_hash: otp
                .registration
                .as_ref()
                .map(|r| r.password_hash.as_str().to_owned()),
            user_id: otp.account.map(|id| id.0.to_string()),
        }
    }

    pub(crate) fn into_domain(self) -> Result<StoredOtp, InfraError> {
        let corrupt =
            |what: &str| InfraError::Unexpected(anyhow::anyhow!("stored code has a bad {what}"));
        Ok(StoredOtp {
            id: Uuid::parse_str(&self.id).map_err(|_| corrupt("id"))?,
            email: EmailAddress::from_trusted(self.email),
            purpose: OtpPurpose::parse(&self.purpose).ok_or_else(|| corrupt("purpose"))?,
            code_hash: CodeHash::from_bytes(self.code_hash),
            expires_at: from_millis(self.expires_at),
            attempts: u32::try_from(self.attempts).unwrap_or(u32::MAX),
            consumed: self.consumed_at.is_some(),
            registration: match (self.full_name, self.password_hash) {
                (Some(name), Some(hash)) => Some(Registration {
                    full_name: FullName::from_trusted(name),
                    password_hash: PasswordHash::new(hash),
                }),
                _ => None,
            },
            account: self
                .user_id
                .map(|id| {
                    Uuid::parse_str(&id)
                        .map(UserId)
                        .map_err(|_| corrupt("account"))
                })
                .transpose()?,
        })
    }
}

pub(crate) fn attempts_limit(max_attempts: u32) -> i32 {
    i32::try_from(max_attempts).unwrap_or(i32::MAX)
}

/// The bounds `acquire_query!` compares a bucket with at `now_ms`: when the last
/// window must have started to still run, how many events it holds, and when the last
/// event must have been for the cooldown to have passed. No cooldown: no condition on
/// `last_at` (requests' clocks need not arrive in order).
pub(crate) fn acquire_bounds(limit: passcode_domain::ports::Limit, now_ms: i64) -> (i64, i32, i64) {
    let cooled_down = if limit.cooldown.is_zero() {
        i64::MAX
    } else {
        now_ms - limit.cooldown.num_milliseconds()
    };
    (
        now_ms - limit.window.num_milliseconds(),
        attempts_limit(limit.limit),
        cooled_down,
    )
}

/// `Throttle::acquire`'s conditional upsert of `key`: counts one event at `now_ms`
/// (a new window if the last one ended at `window_ended`) unless the window is full
/// (`limit` events) or the cooldown has not passed (`last_at` after `cooled_down`).
/// Affects 1 row if counted, 0 if refused. Built with Diesel's query builder rather
/// than written as SQL text, so that both backends keep it prepared: it runs on
/// every guess, login and mail.
macro_rules! acquire_query {
    ($key:expr, $now_ms:expr, $window_ended:expr, $limit:expr, $cooled_down:expr) => {{
        use diesel::dsl::case_when;
        use diesel::query_dsl::methods::FilterDsl as _;
        use diesel::sql_types::{BigInt, Integer};
        use diesel::{BoolExpressionMethods as _, ExpressionMethods as _, IntoSql as _};
        use $crate::schema::rate_limits;
        let now_ms: i64 = $now_ms;
        let window_ended: i64 = $window_ended;
        let window_over = rate_limits::window_start.le(window_ended);
        diesel::insert_into(rate_limits::table)
            .values((
                rate_limits::bucket.eq($key),
                rate_limits::window_start.eq(now_ms),
                rate_limits::count.eq(1),
                rate_limits::last_at.eq(now_ms),
            ))
            .on_conflict(rate_limits::bucket)
            .do_update()
            .set((
                rate_limits::count.eq(case_when(window_over, 1.into_sql::<Integer>())
                    .otherwise(rate_limits::count + 1)),
                rate_limits::window_start.eq(case_when(window_over, now_ms.into_sql::<BigInt>())
                    .otherwise(rate_limits::window_start)),
                rate_limits::last_at.eq(now_ms),
            ))
            .filter(
                window_over
                    .or(rate_limits::count.lt($limit))
                    .and(rate_limits::last_at.le($cooled_down)),
            )
    }};
}
pub(crate) use acquire_query;

/// `Throttle::release`: gives one event of `$key`, counted at `$reserved_at` (ms),
/// back, unless its window began later (that window never counted it).
macro_rules! release_query {
    ($key:expr, $reserved_at:expr) => {{
        use diesel::{ExpressionMethods as _, QueryDsl as _};
        use $crate::schema::rate_limits;
        let reserved_at: i64 = $reserved_at;
        diesel::update(
            rate_limits::table
                .find($key)
                .filter(rate_limits::count.gt(0))
                .filter(rate_limits::window_start.le(reserved_at)),
        )
        .set(rate_limits::count.eq(rate_limits::count - 1))
    }};
}
pub(crate) use release_query;

/// Expires the waiting mail of the codes of (`$email`, `$purpose`) but `$keep`'s: the
/// first half of replacing them (`delete_replaced_codes_query!` the second). `$email`
/// is an address, or an expression of one (`registered_email!`).
macro_rules! expire_replaced_mail_query {
    ($email:expr, $purpose:expr, $keep:expr, $now_ms:expr) => {{
        use diesel::{ExpressionMethods as _, NullableExpressionMethods as _, QueryDsl as _};
        use passcode_domain::ports::OutboxStatus;
        use $crate::schema::{otp_codes, outbox};
        let (purpose, keep, now_ms): (&str, &str, i64) = ($purpose, $keep, $now_ms);
        let doomed = otp_codes::table
            .filter(otp_codes::email.nullable().eq($email))
            .filter(otp_codes::purpose.eq(purpose))
            .filter(otp_codes::id.ne(keep))
            .select(otp_codes::id.nullable());
        diesel::update(
            outbox::table
                .filter(outbox::status.eq(OutboxStatus::Queued.as_str()))
                .filter(outbox::otp_id.eq_any(doomed)),
        )
        .set((
            outbox::status.eq(OutboxStatus::Expired.as_str()),
            outbox::payload.eq(None::<String>),
            outbox::last_error.eq(Some("its code was replaced")),
            outbox::updated_at.eq(now_ms),
        ))
    }};
}
pub(crate) use expire_replaced_mail_query;

/// Deletes the codes of (`$email`, `$purpose`) but `$keep`'s (`$email` as in
/// `expire_replaced_mail_query!`).
macro_rules! delete_replaced_codes_query {
    ($email:expr, $purpose:expr, $keep:expr) => {{
        use diesel::{ExpressionMethods as _, NullableExpressionMethods as _, QueryDsl as _};
        use $crate::schema::otp_codes;
        let (purpose, keep): (&str, &str) = ($purpose, $keep);
        diesel::delete(
            otp_codes::table
                .filter(otp_codes::email.nullable().eq($email))
                .filter(otp_codes::purpose.eq(purpose))
                .filter(otp_codes::id.ne(keep)),
        )
    }};
}
pub(crate) use delete_replaced_codes_query;

/// Account `$user`'s address, as an expression (a scalar subquery): what a
/// registration's completion reads it by, so that its statements need no answer
/// before they are sent (`SpendRows`).
macro_rules! registered_email {
    ($user:expr) => {{
        use diesel::QueryDsl as _;
        use $crate::schema::users;
        let user: &str = $user;
        users::table.find(user).select(users::email).single_value()
    }};
}
pub(crate) use registered_email;

/// Sets account `$user`'s password hash and refuses every token issued before
/// `$cutoff` (`UserRepository::set_password`); marks its address verified if
/// `$verify_email`, and leaves the mark as it is otherwise. 1 row if the account
/// exists.
macro_rules! set_password_query {
    ($user:expr, $hash:expr, $verify_email:expr, $cutoff:expr) => {{
        use diesel::QueryDsl as _;
        use diesel::sql_types::Bool;
        use diesel::{BoolExpressionMethods as _, ExpressionMethods as _, IntoSql as _};
        use $crate::schema::users;
        let (user, hash, verify_email, cutoff): (&str, &str, bool, i64) =
            ($user, $hash, $verify_email, $cutoff);
        diesel::update(users::table.find(user)).set((
            users::password_hash.eq(hash),
            users::tokens_valid_after.eq(cutoff),
            users::updated_at.eq(cutoff),
            users::email_verified.eq(users::email_verified.or(verify_email.into_sql::<Bool>())),
        ))
    }};
}
pub(crate) use set_password_query;

/// Ends every live session of account `$user` but `$keep`'s (a family id; `""` keeps
/// none) at `$now_ms`.
macro_rules! end_sessions_query {
    ($user:expr, $keep:expr, $now_ms:expr) => {{
        use diesel::{ExpressionMethods as _, QueryDsl as _};
        use $crate::schema::sessions;
        let (user, keep, now_ms): (&str, &str, i64) = ($user, $keep, $now_ms);
        diesel::update(
            sessions::table
                .filter(sessions::user_id.eq(user))
                .filter(sessions::family_id.ne(keep))
                .filter(sessions::revoked_at.is_null()),
        )
        .set(sessions::revoked_at.eq(Some(now_ms)))
    }};
}
pub(crate) use end_sessions_query;

/// Ends session `$family` (its family id) at `$now_ms`, if it is live: a logout.
macro_rules! end_family_query {
    ($family:expr, $now_ms:expr) => {{
        use diesel::{ExpressionMethods as _, QueryDsl as _};
        use $crate::schema::sessions;
        let (family, now_ms): (&str, i64) = ($family, $now_ms);
        diesel::update(
            sessions::table
                .find(family)
                .filter(sessions::revoked_at.is_null()),
        )
        .set(sessions::revoked_at.eq(Some(now_ms)))
    }};
}
pub(crate) use end_family_query;

/// Pads `ids` to a power of two in length with repeats of its last: an `IN` list then
/// takes a few shapes (1, 2, 4, 8, ...), each kept prepared (`.cached()`) once per
/// connection, where its every length would be a shape of its own, prepared at each
/// call. A repeated id changes nothing that `IN` matches.
pub(crate) fn pad_to_power_of_two<T: Clone>(ids: &mut Vec<T>) {
    if let Some(last) = ids.last().cloned() {
        ids.resize(ids.len().next_power_of_two(), last);
    }
}

/// An id as a text column stores it.
pub(crate) fn parse_id(id: &str) -> Result<Uuid, InfraError> {
    Uuid::parse_str(id).map_err(|e| InfraError::Unexpected(e.into()))
}

/// What a logout ends: one session (`RefreshTokenStore::revoke_family`) or every
/// session of an account (`revoke_all`).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Ended {
    Family(Uuid),
    Account(passcode_domain::UserId),
}

impl Ended {
    /// The id its statement filters by: the family's, or the account's.
    pub(crate) fn id(self) -> String {
        match self {
            Self::Family(family) => family.to_string(),
            Self::Account(user) => user.0.to_string(),
        }
    }
}

/// Moves account `$change.user` (an `EmailChange`) to `$change.new`, verified, if it
/// still has `$change.old`: 1 row if so; a unique violation if another account has
/// the new address.
macro_rules! move_email_query {
    ($change:expr, $now_ms:expr) => {{
        use diesel::{ExpressionMethods as _, QueryDsl as _};
        use $crate::schema::users;
        let (change, now_ms): (&passcode_domain::ports::EmailChange, i64) = ($change, $now_ms);
        diesel::update(
            users::table
                .find(change.user.0.to_string())
                .filter(users::email.eq(change.old.as_str())),
        )
        .set((
            users::email.eq(change.new.as_str()),
            users::email_verified.eq(true),
            users::updated_at.eq(now_ms),
        ))
    }};
}
pub(crate) use move_email_query;

/// The statements that erase account `$user` of address `$address`, but the limit
/// state keyed by the address (the dialect's `delete_address_limits`) and the event
/// and mail that go with it, in the order they run: the account (1 row if it
/// existed), its sessions, the address's codes, its queued mail, and the address
/// taken off its audit events (they keep the account's id).
macro_rules! erase_queries {
    ($user:expr, $address:expr) => {{
        use diesel::{ExpressionMethods as _, QueryDsl as _};
        use $crate::schema::{audit_events, otp_codes, outbox, sessions, users};
        let (user, address): (&str, &str) = ($user, $address);
        (
            diesel::delete(users::table.find(user)),
            diesel::delete(sessions::table.filter(sessions::user_id.eq(user))),
            diesel::delete(otp_codes::table.filter(otp_codes::email.eq(address))),
            diesel::delete(outbox::table.filter(outbox::recipient.eq(address))),
            diesel::update(audit_events::table.filter(audit_events::email.eq(address)))
                .set(audit_events::email.eq(None::<String>)),
        )
    }};
}
pub(crate) use erase_queries;

/// The limit state keyed by address `$address` of account `$user`, deleted
/// (`DELETE_ADDRESS_LIMITS_SQL`): the statement of the dialects with `RETURNING`.
macro_rules! delete_address_limits_query {
    ($address:expr, $user:expr) => {{
        use diesel::sql_types::Text;
        let (address, user): (&str, &str) = ($address, $user);
        diesel::sql_query($crate::rows::DELETE_ADDRESS_LIMITS_SQL)
            .bind::<Text, _>(address)
            .bind::<Text, _>(format!("guess:{address}:"))
            .bind::<Text, _>(format!("login:{address}:"))
            .bind::<Text, _>(format!("password-check:{user}"))
    }};
}
pub(crate) use delete_address_limits_query;

/// Marks code `$id` spent if it still has `$code_hash`, is unspent, unexpired at
/// `$now_ms` and has at most `$most` tries: 1 row if so. One conditional statement, so
/// the database serialises concurrent spenders on the row and only one still finds it
/// unspent.
macro_rules! spend_code_query {
    ($id:expr, $code_hash:expr, $now_ms:expr, $most:expr) => {{
        use diesel::{ExpressionMethods as _, QueryDsl as _};
        use $crate::schema::otp_codes;
        let (id, code_hash, now_ms, most): (&str, &[u8], i64, i32) =
            ($id, $code_hash, $now_ms, $most);
        diesel::update(
            otp_codes::table
                .filter(otp_codes::id.eq(id))
                .filter(otp_codes::code_hash.eq(code_hash))
                .filter(otp_codes::consumed_at.is_null())
                .filter(otp_codes::expires_at.gt(now_ms))
                .filter(otp_codes::attempts.le(most)),
        )
        .set(otp_codes::consumed_at.eq(Some(now_ms)))
    }};
}
pub(crate) use spend_code_query;

/// Puts `$registration` (`RegistrationRows`) into effect with the spend of code
/// `$code`: its name and password hash on the account, the address verified, if the
/// account is active and still has the address the code was sent to (read inside the
/// statement). 1 row if applied.
macro_rules! apply_registration_query {
    ($code:expr, $registration:expr, $now_ms:expr) => {{
        use diesel::{ExpressionMethods as _, NullableExpressionMethods as _, QueryDsl as _};
        use $crate::schema::{otp_codes, users};
        let (code, registration, now_ms): (&str, &$crate::rows::RegistrationRows, i64) =
            ($code, $registration, $now_ms);
        let sent_to = otp_codes::table
            .find(code)
            .select(otp_codes::email)
            .single_value();
        diesel::update(
            users::table
                .find(&registration.user)
                .filter(users::email.nullable().eq(sent_to))
                .filter(users::is_active.eq(true)),
        )
        .set((
            users::full_name.eq(&registration.full_name),
            users::password_hash.eq(&registration.password_hash),
            users::email_verified.eq(true),
            users::updated_at.eq(now_ms),
        ))
    }};
}
pub(crate) use apply_registration_query;

/// The account's id if it still is as `$signed_for` says (`SignedFor`): active, with
/// that address and verification, and not cutting off tokens issued when the
/// presented one was (`User::accepts_token_issued_at`).
macro_rules! account_as_signed_query {
    ($signed_for:expr) => {{
        use diesel::{ExpressionMethods as _, QueryDsl as _};
        use $crate::schema::users;
        let signed_for: &passcode_domain::ports::SignedFor = $signed_for;
        users::table
            .filter(users::id.eq(signed_for.subject.user_id.0.to_string()))
            .filter(users::is_active.eq(true))
            .filter(users::email.eq(signed_for.subject.email.as_str()))
            .filter(users::email_verified.eq(signed_for.subject.email_verified))
            .filter(
                users::tokens_valid_after
                    .le($crate::time::to_millis(signed_for.presented_issued_at)),
            )
            .select(users::id)
    }};
}
pub(crate) use account_as_signed_query;

/// Rotates session `$successor.family_id` if `$presented` is its live token, the
/// session has not ended, and its account is as `$signed_for` says
/// (`account_as_signed_query!`): the presented token becomes the one it replaced, and
/// `$successor` (with `$ids`) the live one. An UPDATE of one row that affects 1 row if
/// rotated, 0 otherwise (so one of concurrent callers wins); it changes no indexed
/// column, so PostgreSQL updates the row in place (heap-only).
macro_rules! rotate_session_query {
    ($presented:expr, $now_ms:expr, $successor:expr, $ids:expr, $signed_for:expr) => {{
        use diesel::{BoolExpressionMethods as _, ExpressionMethods as _, QueryDsl as _};
        use $crate::schema::session_tokens as sessions;
        let now_ms: i64 = $now_ms;
        let successor: &passcode_domain::ports::NewRefreshToken = $successor;
        let ids: &passcode_domain::ports::TokenIds = $ids;
        let signed_for: &passcode_domain::ports::SignedFor = $signed_for;
        diesel::update(
            sessions::table
                .find(successor.family_id.to_string())
                .filter(sessions::token_hash.eq($presented))
                .filter(sessions::user_id.eq(signed_for.subject.user_id.0.to_string()))
                .filter(sessions::revoked_at.is_null())
                .filter(sessions::expires_at.gt(now_ms))
                .filter(
                    sessions::family_expires_at
                        .is_null()
                        .or(sessions::family_expires_at.gt(now_ms)),
                )
                .filter(diesel::dsl::exists($crate::rows::account_as_signed_query!(
                    signed_for
                ))),
        )
        // MariaDB assigns left to right, each assignment seeing the ones before it:
        // the live token moves to `previous_hash` before it is replaced.
        .set((
            sessions::previous_hash.eq(sessions::token_hash),
            sessions::previous_spent_at.eq(Some(now_ms)),
            sessions::token_hash.eq(Some(&successor.token_hash)),
            sessions::expires_at.eq($crate::time::to_millis(successor.expires_at)),
            sessions::access_jti.eq(Some(&ids.access_jti)),
            sessions::refresh_jti.eq(Some(&ids.refresh_jti)),
            sessions::issued_at.eq(Some($crate::time::to_millis(ids.issued_at))),
            sessions::last_used_at.eq(now_ms),
            sessions::last_client.eq(&successor.origin.client),
            sessions::last_user_agent.eq(&successor.origin.user_agent),
        ))
    }};
}
pub(crate) use rotate_session_query;

/// Starts the session of its first refresh token `$token` (a `NewRefreshToken`): the
/// INSERT of its row.
macro_rules! new_session_query {
    ($token:expr) => {{
        use diesel::ExpressionMethods as _;
        use $crate::schema::sessions;
        use $crate::time::to_millis;
        let token: &passcode_domain::ports::NewRefreshToken = $token;
        let now = to_millis(token.created_at);
        diesel::insert_into(sessions::table).values((
            sessions::family_id.eq(token.family_id.to_string()),
            sessions::user_id.eq(token.user_id.0.to_string()),
            sessions::created_at.eq(now),
            sessions::created_client.eq(&token.origin.client),
            sessions::created_user_agent.eq(&token.origin.user_agent),
            sessions::last_used_at.eq(now),
            sessions::last_client.eq(&token.origin.client),
            sessions::last_user_agent.eq(&token.origin.user_agent),
            sessions::token_hash.eq(Some(&token.token_hash)),
            sessions::expires_at.eq(to_millis(token.expires_at)),
            sessions::family_expires_at.eq(Some(to_millis(token.family_expires_at))),
        ))
    }};
}
pub(crate) use new_session_query;

/// A session's tokens, as a `SessionTokens` row, to decide about a token that did
/// not rotate it.
macro_rules! session_tokens_query {
    ($session:expr) => {{
        use diesel::QueryDsl as _;
        use $crate::schema::session_tokens as sessions;
        let session: uuid::Uuid = $session;
        sessions::table.find(session.to_string()).select((
            sessions::token_hash,
            sessions::expires_at,
            sessions::family_expires_at,
            sessions::revoked_at,
            sessions::previous_hash,
            sessions::previous_spent_at,
            sessions::access_jti,
            sessions::refresh_jti,
            sessions::issued_at,
        ))
    }};
}
pub(crate) use session_tokens_query;

/// The codes of `$email` and `$purpose` that still take a try: unused, unexpired, and
/// under `$max_attempts` tries. A guess counts one try on each of them.
macro_rules! open_codes_query {
    ($email:expr, $purpose:expr, $now:expr, $max_attempts:expr) => {{
        use diesel::{ExpressionMethods as _, QueryDsl as _};
        use $crate::schema::otp_codes;
        let purpose: passcode_domain::OtpPurpose = $purpose;
        otp_codes::table
            .filter(otp_codes::email.eq($email))
            .filter(otp_codes::purpose.eq(purpose.as_str()))
            .filter(otp_codes::consumed_at.is_null())
            .filter(otp_codes::expires_at.gt($crate::time::to_millis($now)))
            .filter(otp_codes::attempts.lt($crate::rows::attempts_limit($max_attempts)))
    }};
}
pub(crate) use open_codes_query;

/// What `session_tokens_query!` reads: the live token's hash and end, the session's
/// end and revocation, the token the live one replaced and when, and the ids and issue
/// time of the live pair.
pub(crate) type SessionTokens = (
    Option<Vec<u8>>,
    i64,
    Option<i64>,
    Option<i64>,
    Option<Vec<u8>>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<i64>,
);

/// `RefreshTokenStore::rotate`'s arguments as one value, which each backend's rotation
/// (stepwise, one statement, one trip) takes as it is.
#[derive(Clone, Copy)]
pub(crate) struct Rotate<'a> {
    pub(crate) presented: &'a [u8],
    pub(crate) now: chrono::DateTime<chrono::Utc>,
    pub(crate) grace: chrono::Duration,
    pub(crate) successor: &'a passcode_domain::ports::NewRefreshToken,
    pub(crate) successor_ids: &'a passcode_domain::ports::TokenIds,
    pub(crate) signed_for: &'a passcode_domain::ports::SignedFor,
}

/// What presenting `rotate.presented` leads to when it did not rotate its session
/// (`row` is `None` if the session is unknown) and the account is as signed for.
pub(crate) fn unrotated(
    row: Option<SessionTokens>,
    rotate: &Rotate<'_>,
) -> passcode_domain::ports::Rotation {
    use passcode_domain::ports::{Rotation, TokenIds};
    let now_ms = to_millis(rotate.now);
    let Some((live, expires, family_ends, None, previous, spent_at, access, refresh, issued)) = row
    else {
        // Unknown or revoked.
        return Rotation::Refused;
    };
    if expires <= now_ms || family_ends.is_some_and(|end| end <= now_ms) || live.is_none() {
        // Ended: whatever token this is, nothing is left to protect.
        return Rotation::Refused;
    }
    if live.as_deref() == Some(rotate.presented) {
        // The live token that did not rotate: its session changed in between.
        return Rotation::Refused;
    }
    if previous.as_deref() == Some(rotate.presented)
        && let Some(spent_at) = spent_at
        && now_ms - spent_at <= rotate.grace.num_milliseconds()
        && let (Some(access_jti), Some(refresh_jti), Some(issued)) = (access, refresh, issued)
    {
        return Rotation::Replayed {
            ids: TokenIds {
                session_id: rotate.successor.family_id,
                access_jti,
                refresh_jti,
                issued_at: from_millis(issued),
            },
        };
    }
    Rotation::Superseded
}

/// Deletes the limit state keyed by an address. Binds: $1 the address, $2 and $3 the
/// prefixes of its per-client guessing and login keys, $4 the account's
/// password-check key (numbered in order of first use, as SQLite needs). Keys: see
/// `AuthService` (`guess:`, `login:`, `send:`).
pub(crate) const DELETE_ADDRESS_LIMITS_SQL: &str = "\
DELETE FROM rate_limits WHERE bucket IN ('guess:' || $1, 'login:' || $1, \
'send:verify_email:' || $1, 'send:reset_password:' || $1) \
OR substr(bucket, 1, length($2)) = $2 OR substr(bucket, 1, length($3)) = $3 OR bucket = $4";

pub(crate) use passcode_domain::ports::limit_name;

/// How long until a denied bucket admits again (at least one second).
pub(crate) fn retry_after(
    limit: passcode_domain::ports::Limit,
    now_ms: i64,
    window_start: i64,
    count: i32,
    last_at: i64,
) -> chrono::Duration {
    let mut wait_ms = 0;
    let cooldown_ends = last_at + limit.cooldown.num_milliseconds();
    if cooldown_ends > now_ms {
        wait_ms = cooldown_ends - now_ms;
    }
    let window_ends = window_start + limit.window.num_milliseconds();
    if count >= attempts_limit(limit.limit) && window_ends > now_ms {
        wait_ms = wait_ms.max(window_ends - now_ms);
    }
    chrono::Duration::milliseconds(wait_ms.max(1_000))
}

/// A new account's first code as rows: the code, its sealed mail and the event that
/// records the registration (`UserRepository::create`).
pub(crate) struct FirstCodeRows {
    pub code: OtpRow,
    pub mail: crate::outbox_rows::NewOutboxRow,
    pub event: AuditRow,
}

/// A spend's writes as rows, owned (SQLite runs them on its writer thread), in the
/// order every backend writes them: `OtpStore::consume`'s without an account change,
/// and `complete_registration`'s.
/// 1. `give_back`'s keys given back, in the order they were reserved in (before the
///    code's row is locked, as a guess locks them);
/// 2. `code` spent (`spend_code_query!`), which must touch 1 row;
/// 3. with a `registration`: put into effect (`apply_registration_query!`), which
///    must touch 1 row; the address's other verification codes deleted with their
///    waiting mail, the address read from the account (`registered_email!`); its
///    event recorded;
/// 4. the session started, with its event.
///
/// Where 2 or 3 touches nothing, all of it is rolled back and the answer is `false`.
/// No statement needs an earlier one's answer, so a backend may send them all at once.
pub(crate) struct SpendRows {
    pub give_back: Vec<String>,
    pub reserved_at: i64,
    pub code: String,
    pub code_hash: Vec<u8>,
    pub most_tries: i32,
    pub now: i64,
    pub registration: Option<RegistrationRows>,
    pub session: Option<(passcode_domain::ports::NewRefreshToken, Option<AuditRow>)>,
}

/// A registration put into effect by its code's spend, on account `user`.
pub(crate) struct RegistrationRows {
    pub user: String,
    pub full_name: String,
    pub password_hash: String,
    pub verified: AuditRow,
}

impl SpendRows {
    /// The rows of `spend`, which must make no account change (the adapter makes
    /// those its own way), with `registration`, if any.
    pub(crate) fn new(
        spend: &passcode_domain::ports::Spend<'_>,
        registration: Option<RegistrationRows>,
    ) -> Result<Self, InfraError> {
        if spend.account.is_some() {
            return Err(InfraError::Unexpected(anyhow::anyhow!(
                "a spend with an account change of its own is not written as SpendRows"
            )));
        }
        Ok(Self {
            give_back: spend.give_back.keys.to_vec(),
            reserved_at: to_millis(spend.give_back.reserved_at),
            code: spend.id.to_string(),
            code_hash: spend.code_hash.as_bytes().to_vec(),
            most_tries: attempts_limit(spend.max_attempts),
            now: to_millis(spend.now),
            registration,
            session: spend
                .session
                .map(|(token, event)| (token.clone(), event.map(AuditRow::new))),
        })
    }
}

impl RegistrationRows {
    pub(crate) fn new(
        user: UserId,
        registration: &Registration,
        verified: &passcode_domain::AuditEvent,
    ) -> Self {
        Self {
            user: user.0.to_string(),
            full_name: registration.full_name.as_str().to_owned(),
            password_hash: registration.password_hash.as_str().to_owned(),
            verified: AuditRow::new(verified),
        }
    }
}

/// A spend's account change (`AccountChange`), its mail sealed for the outbox before
/// its transaction begins.
pub(crate) enum SealedChange<'a> {
    Password(
        passcode_domain::ports::PasswordSet<'a>,
        Option<crate::outbox_rows::NewOutboxRow>,
    ),
    Email(
        &'a passcode_domain::ports::EmailChange,
        &'a passcode_domain::AuditEvent,
        crate::outbox_rows::NewOutboxRow,
    ),
    Delete(
        UserId,
        &'a EmailAddress,
        &'a passcode_domain::AuditEvent,
        crate::outbox_rows::NewOutboxRow,
    ),
}

impl<'a> SealedChange<'a> {
    pub(crate) fn new(
        change: passcode_domain::ports::AccountChange<'a>,
        now: chrono::DateTime<chrono::Utc>,
        key: &crate::cipher::MailKey,
    ) -> Result<Self, InfraError> {
        use passcode_domain::ports::AccountChange;
        let row = |mail| crate::outbox_rows::NewOutboxRow::new(mail, now, None, key, None);
        Ok(match change {
            AccountChange::Password(password) => {
                Self::Password(password, password.notice.map(row).transpose()?)
            }
            AccountChange::Email {
                change,
                notice,
                audit,
            } => Self::Email(change, audit, row(notice)?),
            AccountChange::Delete {
                user,
                email,
                goodbye,
                audit,
            } => Self::Delete(user, email, audit, row(goodbye)?),
        })
    }
}

/// The account a logout's event names, as the statement that wrote the event
/// returns it (`RETURNING user_id`; PostgreSQL's and MariaDB's `logout_named`).
#[derive(diesel::QueryableByName)]
pub(crate) struct LoggedOut {
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub user_id: String,
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = crate::schema::audit_events)]
pub(crate) struct AuditRow {
    pub id: String,
    pub at: i64,
    pub kind: String,
    pub user_id: Option<String>,
    pub email: Option<String>,
    pub client: Option<String>,
    pub request_id: Option<String>,
}

impl AuditRow {
    pub(crate) fn new(event: &passcode_domain::AuditEvent) -> Self {
        Self {
            id: Uuid::new_v4().to_string(),
            at: to_millis(event.at),
            kind: event.kind.as_str().to_owned(),
            user_id: event.user_id.map(|id| id.0.to_string()),
            email: event.email.as_ref().map(|e| e.as_str().to_owned()),
            client: event.client.clone(),
            request_id: event.request_id.clone(),
        }
    }

    /// Binds the row's fields but its account, in that order (`id, at, kind, email,
    /// client, request_id`), to a statement that takes the account from a row it reads
    /// (a logout's event names the account of the session it ended).
    pub(crate) fn bind_but_account<'f, DB>(
        self,
        query: diesel::query_builder::BoxedSqlQuery<'f, DB, diesel::query_builder::SqlQuery>,
    ) -> diesel::query_builder::BoxedSqlQuery<'f, DB, diesel::query_builder::SqlQuery>
    where
        DB: diesel::backend::Backend
            + diesel::sql_types::HasSqlType<diesel::sql_types::Text>
            + diesel::sql_types::HasSqlType<diesel::sql_types::BigInt>,
        String: diesel::serialize::ToSql<diesel::sql_types::Text, DB>,
        i64: diesel::serialize::ToSql<diesel::sql_types::BigInt, DB>,
        Option<String>:
            diesel::serialize::ToSql<diesel::sql_types::Nullable<diesel::sql_types::Text>, DB>,
    {
        use diesel::sql_types::{BigInt, Nullable, Text};
        query
            .bind::<Text, _>(self.id)
            .bind::<BigInt, _>(self.at)
            .bind::<Text, _>(self.kind)
            .bind::<Nullable<Text>, _>(self.email)
            .bind::<Nullable<Text>, _>(self.client)
            .bind::<Nullable<Text>, _>(self.request_id)
    }

    pub(crate) fn into_domain(self) -> Result<passcode_domain::AuditEvent, InfraError> {
        let corrupt =
            |what: &str| InfraError::Unexpected(anyhow::anyhow!("audit event has a bad {what}"));
        Ok(passcode_domain::AuditEvent {
            kind: passcode_domain::AuditKind::parse(&self.kind).ok_or_else(|| corrupt("kind"))?,
            at: from_millis(self.at),
            user_id: self
                .user_id
                .map(|id| {
                    Uuid::parse_str(&id)
                        .map(UserId)
                        .map_err(|_| corrupt("user id"))
                })
                .transpose()?,
            email: self.email.map(EmailAddress::from_trusted),
            client: self.client,
            request_id: self.request_id,
        })
    }
}

/// Why a guess's transaction was rolled back: a budget refused (which one, and until
/// when), or the database failed.
pub(crate) enum Abort {
    Refused(usize, chrono::Duration),
    Query(diesel::result::Error),
}

impl From<diesel::result::Error> for Abort {
    fn from(error: diesel::result::Error) -> Self {
        Self::Query(error)
    }
}

/// A reservation's transaction's outcome as `Throttle::acquire_all` reports it.
pub(crate) fn admissions(
    reserved: Result<(), Abort>,
) -> Result<passcode_domain::ports::Admissions, passcode_domain::InfraError> {
    use passcode_domain::ports::Admissions;
    match reserved {
        Ok(()) => Ok(Admissions::Allowed),
        Err(Abort::Refused(budget, retry_after)) => Ok(Admissions::Denied {
            budget,
            retry_after,
        }),
        Err(Abort::Query(error)) => Err(crate::error::query_error(error)),
    }
}

/// An `Issue`'s send limit as the budgets of a reservation (none, or one).
pub(crate) fn send_budgets(
    issue: &passcode_domain::ports::Issue<'_>,
) -> Vec<(String, passcode_domain::ports::Limit)> {
    issue
        .send
        .iter()
        .map(|(key, limit)| ((*key).to_owned(), *limit))
        .collect()
}

/// A new code's write's outcome (its send limit counted first) as `OtpStore::replace`
/// and `decoy` report it.
pub(crate) fn admission(
    written: Result<(), Abort>,
) -> Result<passcode_domain::ports::Admission, passcode_domain::InfraError> {
    use passcode_domain::ports::Admission;
    match written {
        Ok(()) => Ok(Admission::Allowed),
        Err(Abort::Refused(_, retry_after)) => Ok(Admission::Denied { retry_after }),
        Err(Abort::Query(error)) => Err(crate::error::query_error(error)),
    }
}

/// A guess's transaction's outcome as the port reports it.
pub(crate) fn tries(
    counted: Result<Vec<OtpRow>, Abort>,
) -> Result<passcode_domain::ports::Tries, passcode_domain::InfraError> {
    use passcode_domain::ports::Tries;
    match counted {
        Ok(rows) => Ok(Tries::Counted(
            rows.into_iter()
                .map(OtpRow::into_domain)
                .collect::<Result<_, _>>()?,
        )),
        Err(Abort::Refused(budget, retry_after)) => Ok(Tries::Refused {
            budget,
            retry_after,
        }),
        Err(Abort::Query(error)) => Err(crate::error::query_error(error)),
    }
}
