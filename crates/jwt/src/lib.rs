//! Tokens for passcode: signs and checks access and refresh JWTs with jsonwebtoken:
//! EdDSA (Ed25519) by default, ES256 or RS256, several keys at once (one signs, all
//! verify), or HS256 with a shared secret; and publishes the public keys as a JWKS.

mod claims;
mod issuer;
mod keys;
mod keyset;

pub use issuer::{JwtIssuer, JwtSettings};
pub use keys::SigningKeySource;
pub use keyset::{Key, KeySet, activate, store_key};

/// The algorithm names, for callers that choose one.
pub mod jsonwebtoken_algorithm {
    pub use jsonwebtoken::Algorithm;
}
