//! The `TokenIssuer` adapter: signs access and refresh tokens and checks them strictly
//! (pinned algorithm, issuer, audience, token type; expiry against the domain's clock).

use chrono::{DateTime, Duration, Utc};
use std::collections::HashMap;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use passcode_domain::ports::{TokenIds, TokenIssuer};
use passcode_domain::{
    InfraError, TokenClaims, TokenError, TokenKind, TokenPair, TokenSubject, UserId,
};
use secrecy::ExposeSecret;
use uuid::Uuid;

use crate::SigningKeySource;
use crate::claims::Claims;

#[derive(Debug, Clone)]
pub struct JwtSettings {
    pub issuer: String,
    pub audience: String,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway: Duration,
}

pub struct JwtIssuer {
    settings: JwtSettings,
    algorithm: Algorithm,
    kid: Option<String>,
    encoding: EncodingKey,
    /// The signing key itself if it is EdDSA (see `Key::ed25519`).
    ed25519: Option<ed25519_dalek::SigningKey>,
    /// By `kid` (`None` for the HS256 secret): each key verifies with its own algorithm only.
    verifiers: HashMap<Option<String>, Verifier>,
    jwks: serde_json::Value,
}

struct Verifier {
    algorithm: Algorithm,
    decoding: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for JwtIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtIssuer")
            .field("algorithm", &self.algorithm)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl JwtIssuer {
    pub fn new(key: SigningKeySource, settings: JwtSettings) -> anyhow::Result<Self> {
        let validation = |algorithm: Algorithm| {
            let mut validation = Validation::new(algorithm);
            // Expiry is checked against the domain's clock below, not the system's.
            validation.validate_exp = false;
            validation.validate_nbf = false;
            validation.set_issuer(&[&settings.issuer]);
            validation.set_audience(&[&settings.audience]);
            validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
            validation
        };
        let set = match key {
            SigningKeySource::Hs256(secret) => {
                let secret = secret.expose_secret().as_bytes();
                anyhow::ensure!(
                    secret.len() >= 32,
                    "the HS256 secret must be at least 32 bytes"
                );
                let verifier = Verifier {
                    algorithm: Algorithm::HS256,
                    decoding: DecodingKey::from_secret(secret)?,
                    validation: validation(Algorithm::HS256),
                };
                return Ok(Self {
                    algorithm: Algorithm::HS256,
                    kid: None,
                    encoding: EncodingKey::from_secret(secret)?,
                    ed25519: None,
                    verifiers: HashMap::from([(None, verifier)]),
                    // A shared secret is never published.
                    jwks: serde_json::json!({ "keys": [] }),
                    settings,
                });
            }
            SigningKeySource::KeySet(set) => set,
        };
        let signer = set.signer();
        let verifiers = set
            .keys()
            .map(|key| {
                let verifier = Verifier {
                    algorithm: key.algorithm,
                    decoding: key.decoding.clone(),
                    validation: validation(key.algorithm),
                };
                (Some(key.kid.clone()), verifier)
            })
            .collect();
        let jwks =
            serde_json::json!({ "keys": set.keys().map(crate::Key::jwk).collect::<Vec<_>>() });
        Ok(Self {
            algorithm: signer.algorithm,
            kid: Some(signer.kid.clone()),
            encoding: signer.encoding.clone(),
            ed25519: signer.ed25519.clone(),
            verifiers,
            jwks,
            settings,
        })
    }

    /// The JWKS document of the public verification keys (empty for HS256).
    pub fn jwks(&self) -> &serde_json::Value {
        &self.jwks
    }

    fn sign(
        &self,
        subject: &TokenSubject,
        kind: TokenKind,
        jti: &str,
        ids: &TokenIds,
    ) -> Result<String, InfraError> {
        let now = ids.issued_at;
        let ttl = match kind {
            TokenKind::Access => self.settings.access_ttl,
            TokenKind::Refresh => self.settings.refresh_ttl,
        };
        let claims = Claims {
            sub: subject.user_id.to_string(),
            email: subject.email.as_str().to_owned(),
            email_verified: subject.email_verified,
            iat: now.timestamp(),
            iat_ms: Some(now.timestamp_millis()),
            sid: Some(ids.session_id.simple().to_string()),
            nbf: now.timestamp(),
            exp: (now + ttl).timestamp(),
            jti: jti.to_owned(),
            iss: self.settings.issuer.clone(),
            aud: self.settings.audience.clone(),
            token_type: kind.as_str().to_owned(),
        };
        let mut header = Header::new(self.algorithm);
        header.kid.clone_from(&self.kid);
        let signed = match &self.ed25519 {
            Some(key) => sign_ed25519(key, &header, &claims).map_err(anyhow::Error::new),
            None => {
                jsonwebtoken::encode(&header, &claims, &self.encoding).map_err(anyhow::Error::new)
            }
        };
        signed.map_err(|e| InfraError::Unexpected(e.context("signing a token")))
    }
}

/// What `jsonwebtoken::encode` writes (the JWS compact serialization of RFC 7515:
/// base64url of the header's JSON, of the claims' JSON, and of the signature over
/// both), with a key expanded once instead of on every call.
fn sign_ed25519(
    key: &ed25519_dalek::SigningKey,
    header: &Header,
    claims: &Claims,
) -> serde_json::Result<String> {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use ed25519_dalek::Signer;
    let header = URL_SAFE_NO_PAD.encode(serde_json::to_vec(header)?);
    let claims = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims)?);
    let message = format!("{header}.{claims}");
    let signature = URL_SAFE_NO_PAD.encode(key.sign(message.as_bytes()).to_bytes());
    Ok(format!("{message}.{signature}"))
}

impl TokenIssuer for JwtIssuer {
    fn issue(&self, subject: &TokenSubject, ids: &TokenIds) -> Result<TokenPair, InfraError> {
        Ok(TokenPair {
            access: self.sign(subject, TokenKind::Access, &ids.access_jti, ids)?,
            refresh: self.sign(subject, TokenKind::Refresh, &ids.refresh_jti, ids)?,
        })
    }

    fn refresh_expiry(&self, issued_at: DateTime<Utc>) -> DateTime<Utc> {
        issued_at + self.settings.refresh_ttl
    }

    fn verify(
        &self,
        token: &str,
        kind: TokenKind,
        now: DateTime<Utc>,
    ) -> Result<TokenClaims, TokenError> {
        self.claims(token, kind, now, Signature::Checked)
    }

    fn read_unverified(
        &self,
        token: &str,
        kind: TokenKind,
        now: DateTime<Utc>,
    ) -> Result<TokenClaims, TokenError> {
        self.claims(token, kind, now, Signature::Unchecked)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Signature {
    Checked,
    Unchecked,
}

impl JwtIssuer {
    /// The claims of `token` if it is one of ours of `kind`: signed by a key of the set
    /// with that key's algorithm (unless `signature` is `Unchecked`), for our issuer and
    /// audience, and valid at `now`.
    fn claims(
        &self,
        token: &str,
        kind: TokenKind,
        now: DateTime<Utc>,
        signature: Signature,
    ) -> Result<TokenClaims, TokenError> {
        if token.len() > 8 * 1024 {
            return Err(TokenError::Invalid);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        // The kid picks the key, and the key fixes the algorithm: no confusion.
        let verifier = self.verifiers.get(&header.kid).ok_or(TokenError::Invalid)?;
        if header.alg != verifier.algorithm {
            return Err(TokenError::Invalid);
        }
        let claims = match signature {
            Signature::Checked => {
                jsonwebtoken::decode::<Claims>(token, &verifier.decoding, &verifier.validation)
                    .map_err(|_| TokenError::Invalid)?
                    .claims
            }
            Signature::Unchecked => {
                jsonwebtoken::dangerous::insecure_decode::<Claims>(token)
                    .map_err(|_| TokenError::Invalid)?
                    .claims
            }
        };
        // Unsigned, nothing else checked them (signed, `validation` did too).
        if claims.iss != self.settings.issuer || claims.aud != self.settings.audience {
            return Err(TokenError::Invalid);
        }
        let leeway = self.settings.leeway.num_seconds();
        let now = now.timestamp();
        if claims.token_type != kind.as_str()
            || claims.exp + leeway <= now
            || claims.nbf - leeway > now
        {
            return Err(TokenError::Invalid);
        }
        let user_id = Uuid::parse_str(&claims.sub).map_err(|_| TokenError::Invalid)?;
        let email = match signature {
            // Ours: written from an `EmailAddress`.
            Signature::Checked => passcode_domain::EmailAddress::from_trusted(claims.email),
            // Anyone's until a store vouches for it.
            Signature::Unchecked => passcode_domain::EmailAddress::parse(&claims.email)
                .map_err(|_| TokenError::Invalid)?,
        };
        Ok(TokenClaims {
            user_id: UserId(user_id),
            email,
            email_verified: claims.email_verified,
            kind,
            jti: claims.jti,
            issued_at: match claims.iat_ms {
                Some(ms) => DateTime::from_timestamp_millis(ms),
                None => DateTime::from_timestamp(claims.iat, 0),
            }
            .ok_or(TokenError::Invalid)?,
            expires_at: DateTime::from_timestamp(claims.exp, 0).ok_or(TokenError::Invalid)?,
            session_id: claims
                .sid
                .as_deref()
                .and_then(|sid| Uuid::parse_str(sid).ok()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use passcode_domain::EmailAddress;
    use secrecy::SecretString;

    fn settings() -> JwtSettings {
        JwtSettings {
            issuer: "passcode".into(),
            audience: "passcode-clients".into(),
            access_ttl: Duration::minutes(5),
            refresh_ttl: Duration::days(1),
            leeway: Duration::seconds(0),
        }
    }

    fn subject() -> TokenSubject {
        TokenSubject {
            user_id: UserId(Uuid::from_u128(5)),
            email: EmailAddress::parse("ada@example.com").unwrap(),
            email_verified: true,
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    fn ids(at: DateTime<Utc>) -> TokenIds {
        TokenIds {
            session_id: Uuid::nil(),
            access_jti: Uuid::new_v4().simple().to_string(),
            refresh_jti: Uuid::new_v4().simple().to_string(),
            issued_at: at,
        }
    }

    #[test]
    fn signing_is_deterministic_for_the_same_ids() {
        let issuer = ed();
        let same = ids(now());
        assert_eq!(
            issuer.issue(&subject(), &same).unwrap(),
            issuer.issue(&subject(), &same).unwrap()
        );
    }

    /// An EdDSA token signed with the key expanded once is the very token
    /// `jsonwebtoken::encode` writes (Ed25519 signatures are deterministic).
    #[test]
    fn eddsa_tokens_are_what_jsonwebtoken_writes() {
        let mut issuer = ed();
        assert!(issuer.ed25519.is_some());
        let same = ids(now());
        let fast = issuer.issue(&subject(), &same).unwrap();
        issuer.ed25519 = None;
        assert_eq!(fast, issuer.issue(&subject(), &same).unwrap());
    }

    /// A key set of one new Ed25519 key.
    fn eddsa_keys() -> SigningKeySource {
        SigningKeySource::KeySet(crate::KeySet::single(
            crate::Key::generate(jsonwebtoken::Algorithm::EdDSA).unwrap(),
        ))
    }

    fn ed() -> JwtIssuer {
        JwtIssuer::new(eddsa_keys(), settings()).unwrap()
    }

    fn payload(token: &str) -> serde_json::Value {
        let part = token.split('.').nth(1).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    }

    #[test]
    fn issued_tokens_carry_the_documented_claims_and_kid() {
        let issuer = ed();
        let pair = issuer.issue(&subject(), &ids(now())).unwrap();
        let claims = payload(&pair.access);
        for name in [
            "sub",
            "email",
            "email_verified",
            "iat",
            "exp",
            "jti",
            "iss",
            "aud",
            "token_type",
        ] {
            assert!(claims.get(name).is_some(), "missing {name}");
        }
        assert_eq!(claims["token_type"], "access");
        assert_eq!(claims["exp"], now().timestamp() + 300);
        assert_eq!(payload(&pair.refresh)["exp"], now().timestamp() + 86_400);
        let header = jsonwebtoken::decode_header(&pair.access).unwrap();
        assert_eq!(header.alg, Algorithm::EdDSA);
        assert_eq!(header.kid.as_deref(), issuer.kid.as_deref());
    }

    #[test]
    fn verify_accepts_own_tokens_of_the_right_kind_only() {
        let issuer = ed();
        let pair = issuer.issue(&subject(), &ids(now())).unwrap();
        let claims = issuer
            .verify(&pair.access, TokenKind::Access, now())
            .unwrap();
        assert_eq!(claims.user_id, subject().user_id);
        assert!(
            issuer
                .verify(&pair.refresh, TokenKind::Refresh, now())
                .is_ok()
        );
        assert!(
            issuer
                .verify(&pair.refresh, TokenKind::Access, now())
                .is_err()
        );
        assert!(
            issuer
                .verify(&pair.access, TokenKind::Refresh, now())
                .is_err()
        );
    }

    #[test]
    fn verified_claims_carry_the_issue_time_to_the_millisecond() {
        let issuer = ed();
        let at = now() + Duration::milliseconds(437);
        let pair = issuer.issue(&subject(), &ids(at)).unwrap();
        let claims = issuer
            .verify(&pair.refresh, TokenKind::Refresh, at)
            .unwrap();
        assert_eq!(claims.issued_at, at);
        assert_eq!(
            payload(&pair.access)["iat"],
            at.timestamp(),
            "iat stays whole seconds"
        );
    }

    #[test]
    fn verify_refuses_expired_and_not_yet_valid_tokens() {
        let issuer = ed();
        let pair = issuer.issue(&subject(), &ids(now())).unwrap();
        assert!(
            issuer
                .verify(
                    &pair.access,
                    TokenKind::Access,
                    now() + Duration::minutes(5)
                )
                .is_err()
        );
        assert!(
            issuer
                .verify(
                    &pair.access,
                    TokenKind::Access,
                    now() - Duration::seconds(1)
                )
                .is_err()
        );
    }

    #[test]
    fn verify_refuses_another_keys_tampered_and_unsigned_tokens() {
        let issuer = ed();
        let other = ed().issue(&subject(), &ids(now())).unwrap();
        assert!(
            issuer
                .verify(&other.access, TokenKind::Access, now())
                .is_err()
        );

        let good = issuer.issue(&subject(), &ids(now())).unwrap().access;
        let mut parts: Vec<String> = good.split('.').map(String::from).collect();
        let mut claims = payload(&good);
        claims["sub"] = serde_json::json!(Uuid::from_u128(6).to_string());
        parts[1] = URL_SAFE_NO_PAD.encode(claims.to_string());
        assert!(
            issuer
                .verify(&parts.join("."), TokenKind::Access, now())
                .is_err()
        );

        let none_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
        let unsigned = format!(
            "{none_header}.{}.",
            URL_SAFE_NO_PAD.encode(payload(&good).to_string())
        );
        assert!(issuer.verify(&unsigned, TokenKind::Access, now()).is_err());
        for garbage in ["", "a.b.c", "not a token", &"x".repeat(10_000)] {
            assert!(issuer.verify(garbage, TokenKind::Access, now()).is_err());
        }
    }

    #[test]
    fn verify_refuses_wrong_issuer_or_audience() {
        let issuer = ed();
        let key = eddsa_keys();
        let mut other = settings();
        other.audience = "someone-else".into();
        let foreign = JwtIssuer::new(key, other)
            .unwrap()
            .issue(&subject(), &ids(now()))
            .unwrap();
        assert!(
            issuer
                .verify(&foreign.access, TokenKind::Access, now())
                .is_err()
        );
    }

    /// Two issuers with one key, the second with `settings` changed by `change`.
    fn same_key(change: impl FnOnce(&mut JwtSettings)) -> (JwtIssuer, JwtIssuer) {
        let key = crate::Key::generate(Algorithm::EdDSA).unwrap();
        let copy = crate::Key::from_pem(key.pem()).unwrap();
        let mut changed = settings();
        change(&mut changed);
        let issuer = |key, settings| {
            JwtIssuer::new(
                SigningKeySource::KeySet(crate::KeySet::single(key)),
                settings,
            )
            .unwrap()
        };
        (issuer(key, settings()), issuer(copy, changed))
    }

    /// What a refresh reads before its store vouches for the token (see
    /// `TokenIssuer::read_unverified`): every check of `verify` but the signature.
    #[test]
    fn read_unverified_checks_all_but_the_signature() {
        let issuer = ed();
        let mut at_ids = ids(now() + Duration::milliseconds(250));
        at_ids.session_id = Uuid::from_u128(9);
        let pair = issuer.issue(&subject(), &at_ids).unwrap();
        let at = at_ids.issued_at;
        let read = issuer
            .read_unverified(&pair.refresh, TokenKind::Refresh, at)
            .unwrap();
        assert_eq!(
            read,
            issuer
                .verify(&pair.refresh, TokenKind::Refresh, at)
                .unwrap(),
            "the same claims, the address included"
        );
        assert_eq!(read.session_id, Some(Uuid::from_u128(9)));

        // Another signature over the same header and claims: read, but not verified.
        let mut parts: Vec<String> = pair.refresh.split('.').map(String::from).collect();
        parts[2] = URL_SAFE_NO_PAD.encode([0u8; 64]);
        let forged = parts.join(".");
        assert!(
            issuer
                .read_unverified(&forged, TokenKind::Refresh, at)
                .is_ok()
        );
        assert!(issuer.verify(&forged, TokenKind::Refresh, at).is_err());

        // Everything else is still refused.
        let refused = |token: &str, kind, at| issuer.read_unverified(token, kind, at).is_err();
        assert!(
            refused(&pair.access, TokenKind::Refresh, at),
            "another kind"
        );
        assert!(
            refused(&pair.refresh, TokenKind::Refresh, at + Duration::days(1)),
            "expired"
        );
        assert!(
            refused(&pair.refresh, TokenKind::Refresh, at - Duration::seconds(1)),
            "not yet valid"
        );
        let another_key = ed().issue(&subject(), &at_ids).unwrap().refresh;
        assert!(refused(&another_key, TokenKind::Refresh, at), "unknown kid");
        for (what, change) in [
            (
                "another audience",
                Box::new(|s: &mut JwtSettings| s.audience = "someone-else".into())
                    as Box<dyn FnOnce(&mut JwtSettings)>,
            ),
            (
                "another issuer",
                Box::new(|s: &mut JwtSettings| s.issuer = "someone-else".into()),
            ),
        ] {
            let (ours, theirs) = same_key(change);
            let foreign = theirs.issue(&subject(), &at_ids).unwrap().refresh;
            assert!(
                ours.read_unverified(&foreign, TokenKind::Refresh, at)
                    .is_err(),
                "{what}"
            );
            assert!(
                ours.verify(&foreign, TokenKind::Refresh, at).is_err(),
                "{what}"
            );
        }
        let mut claims = payload(&pair.refresh);
        claims["email"] = "not an address".into();
        let mut parts: Vec<String> = pair.refresh.split('.').map(String::from).collect();
        parts[1] = URL_SAFE_NO_PAD.encode(claims.to_string());
        assert!(
            refused(&parts.join("."), TokenKind::Refresh, at),
            "a bad address"
        );
        let none_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
        let unsigned = format!("{none_header}.{}.", parts[1]);
        assert!(refused(&unsigned, TokenKind::Refresh, at), "alg none");
        for garbage in ["", "a.b.c", "not a token", &"x".repeat(10_000)] {
            assert!(refused(garbage, TokenKind::Refresh, at));
        }
    }

    #[test]
    fn hs256_round_trips_and_refuses_short_secrets() {
        let secret = SecretString::from("0123456789abcdef0123456789abcdef".to_owned());
        let issuer = JwtIssuer::new(SigningKeySource::Hs256(secret), settings()).unwrap();
        let pair = issuer.issue(&subject(), &ids(now())).unwrap();
        assert!(
            issuer
                .verify(&pair.access, TokenKind::Access, now())
                .is_ok()
        );
        assert_eq!(issuer.jwks()["keys"].as_array().unwrap().len(), 0);
        assert!(
            ed().verify(&pair.access, TokenKind::Access, now()).is_err(),
            "HS token to an EdDSA verifier"
        );
        let short = SecretString::from("short".to_owned());
        assert!(JwtIssuer::new(SigningKeySource::Hs256(short), settings()).is_err());
    }

    #[test]
    fn jwks_publishes_the_public_key_under_its_kid() {
        let issuer = ed();
        let key = &issuer.jwks()["keys"][0];
        assert_eq!(key["kty"], "OKP");
        assert_eq!(key["crv"], "Ed25519");
        assert_eq!(key["kid"].as_str(), issuer.kid.as_deref());
        let decoding = DecodingKey::from_ed_components(key["x"].as_str().unwrap()).unwrap();
        let token = issuer.issue(&subject(), &ids(now())).unwrap().access;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.validate_exp = false;
        validation.set_audience(&["passcode-clients"]);
        assert!(jsonwebtoken::decode::<serde_json::Value>(&token, &decoding, &validation).is_ok());
    }
}

#[cfg(test)]
mod key_set_tests {
    use super::*;
    use crate::{Key, activate, store_key};
    use passcode_domain::EmailAddress;

    fn settings() -> JwtSettings {
        JwtSettings {
            issuer: "passcode".into(),
            audience: "passcode".into(),
            access_ttl: Duration::minutes(5),
            refresh_ttl: Duration::days(1),
            leeway: Duration::seconds(0),
        }
    }

    fn ids() -> TokenIds {
        TokenIds {
            session_id: Uuid::nil(),
            access_jti: "a".into(),
            refresh_jti: "r".into(),
            issued_at: now(),
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    fn subject() -> TokenSubject {
        TokenSubject {
            user_id: UserId(Uuid::from_u128(5)),
            email: EmailAddress::parse("ada@example.com").unwrap(),
            email_verified: true,
        }
    }

    fn issuer(dir: &std::path::Path) -> JwtIssuer {
        JwtIssuer::new(
            SigningKeySource::KeySet(crate::KeySet::load(dir, vec![], None).unwrap()),
            settings(),
        )
        .unwrap()
    }

    #[test]
    fn rotating_keys_keeps_tokens_of_the_old_key_valid() {
        let dir = tempfile::tempdir().unwrap();
        let old = Key::generate(Algorithm::EdDSA).unwrap();
        store_key(dir.path(), &old).unwrap();
        activate(dir.path(), old.kid()).unwrap();
        let before = issuer(dir.path()).issue(&subject(), &ids()).unwrap();

        let new = Key::generate(Algorithm::ES256).unwrap();
        store_key(dir.path(), &new).unwrap();
        activate(dir.path(), new.kid()).unwrap();
        let rotated = issuer(dir.path());
        let after = rotated.issue(&subject(), &ids()).unwrap();
        let header = jsonwebtoken::decode_header(&after.access).unwrap();
        assert_eq!(
            (header.alg, header.kid.as_deref()),
            (Algorithm::ES256, Some(new.kid()))
        );
        assert!(
            rotated
                .verify(&before.access, TokenKind::Access, now())
                .is_ok(),
            "old tokens still verify"
        );
        assert!(
            rotated
                .verify(&after.access, TokenKind::Access, now())
                .is_ok()
        );
        assert_eq!(rotated.jwks()["keys"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn every_algorithm_signs_and_verifies() {
        for algorithm in [Algorithm::EdDSA, Algorithm::ES256, Algorithm::RS256] {
            let dir = tempfile::tempdir().unwrap();
            let key = Key::generate(algorithm).unwrap();
            store_key(dir.path(), &key).unwrap();
            activate(dir.path(), key.kid()).unwrap();
            let issuer = issuer(dir.path());
            let pair = issuer.issue(&subject(), &ids()).unwrap();
            assert!(
                issuer
                    .verify(&pair.access, TokenKind::Access, now())
                    .is_ok(),
                "{algorithm:?}"
            );
            assert_eq!(
                jsonwebtoken::decode_header(&pair.access).unwrap().alg,
                algorithm
            );
        }
    }

    #[test]
    fn a_token_claiming_another_algorithm_for_a_kid_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ed = Key::generate(Algorithm::EdDSA).unwrap();
        let ec = Key::generate(Algorithm::ES256).unwrap();
        store_key(dir.path(), &ed).unwrap();
        store_key(dir.path(), &ec).unwrap();
        activate(dir.path(), ec.kid()).unwrap();
        let issuer = issuer(dir.path());
        // Signed by the ES256 key, but naming the EdDSA key's kid.
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(ed.kid().to_owned());
        let claims = serde_json::json!({
            "sub": Uuid::from_u128(5).to_string(), "email": "ada@example.com", "email_verified": true,
            "iat": now().timestamp(), "nbf": now().timestamp(), "exp": now().timestamp() + 60,
            "jti": "x", "iss": "passcode", "aud": "passcode", "token_type": "access",
        });
        let token = jsonwebtoken::encode(&header, &claims, &ec.encoding).unwrap();
        assert!(issuer.verify(&token, TokenKind::Access, now()).is_err());
    }
}
