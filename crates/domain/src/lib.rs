//! The pure core of passcode: users, one-time codes and their rules, the use cases,
//! and the ports that adapters implement. No I/O, no wall clock, no framework.

pub mod audit;
pub mod email;
pub mod error;
pub mod otp;
pub mod password;
pub mod ports;
pub mod service;
pub mod tokens;
pub mod user;

pub use audit::{AuditEvent, AuditKind, AuditQuery, RequestContext};
pub use email::{EmailAddress, EmailError};
pub use error::InfraError;
pub use otp::{CodeHash, OtpCode, OtpHasher, OtpPurpose, OtpSettings, Registration};
pub use password::{Password, PasswordError, PasswordHash};
pub use service::{
    AbuseLimits, AuthService, Ports, RegistrationPolicy, ServiceSettings, Throttled,
};
pub use tokens::{TokenClaims, TokenError, TokenKind, TokenPair, TokenSubject};
pub use user::{FullName, FullNameError, NewUser, User, UserId};
