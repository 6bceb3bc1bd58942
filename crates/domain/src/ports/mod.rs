//! The ports: what the domain needs from the outside world, one small trait each.
//! Adapters implement them; the service holds them as `Arc<dyn Port>`.

mod audit_log;
mod clock;
mod code_generator;
mod health_check;
mod mailer;
mod otp_store;
mod outbox;
mod password_hasher;
mod refresh_tokens;
mod throttle;
mod token_issuer;
mod user_repository;

pub use audit_log::AuditLog;
pub use clock::Clock;
pub use code_generator::CodeGenerator;
pub use health_check::HealthCheck;
pub use mailer::{Mail, MailError, Mailer};
pub use otp_store::{AccountChange, Issue, OtpStore, PasswordSet, Spend, Tries};
pub use outbox::{Outbox, OutboxEntry, OutboxStats, OutboxStatus, QueuedMail};
pub use password_hasher::{HashError, PasswordCheck, PasswordHasher};
pub use refresh_tokens::{
    NewRefreshToken, RefreshTokenStore, Rotation, SessionInfo, SignedFor, TokenIds,
    logout_by_reading,
};
pub use throttle::{Admission, Admissions, GiveBack, Limit, Throttle, limit_name};
pub use token_issuer::TokenIssuer;
pub use user_repository::{CreateUserError, EmailChange, FirstCode, UserRepository};

#[cfg(any(test, feature = "mocks"))]
pub use {
    audit_log::MockAuditLog, clock::MockClock, code_generator::MockCodeGenerator,
    health_check::MockHealthCheck, mailer::MockMailer, otp_store::MockOtpStore, outbox::MockOutbox,
    password_hasher::MockPasswordHasher, refresh_tokens::MockRefreshTokenStore,
    throttle::MockThrottle, token_issuer::MockTokenIssuer, user_repository::MockUserRepository,
};
