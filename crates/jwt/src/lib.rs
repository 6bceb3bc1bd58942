//! Tokens for passcode: signs and checks access and refresh JWTs with jsonwebtoken,
//! EdDSA (Ed25519) by default or HS256 with a shared secret, and publishes the
//! public key as a JWKS.

mod claims;
mod issuer;
mod keys;

pub use issuer::{JwtIssuer, JwtSettings};
pub use keys::{Ed25519Key, SigningKeySource};
