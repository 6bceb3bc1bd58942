//! A token attack corpus against the running service: every forged, stale or misused
//! token is refused with 401, and a standard JOSE library accepts passcode's tokens
//! given only the published JWKS.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::helpers::{Cli, TestApp, json_of, spawn_app, unique_email};

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

fn decode_part(token: &str, index: usize) -> Value {
    let part = token.split('.').nth(index).expect("part");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64")).expect("json")
}

/// The service's own signing key, as an attacker who stole nothing would not have it:
/// used here only to make tokens that are well signed but wrong in one claim.
fn own_key(app: &TestApp) -> EncodingKey {
    let pem =
        std::fs::read_to_string(app.data_dir.path().join("jwt-ed25519.pem")).expect("key file");
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("PEM body");
    EncodingKey::from_ed_der(&der)
}

fn sign(app: &TestApp, header_kid: Option<String>, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = header_kid;
    jsonwebtoken::encode(&header, claims, &own_key(app)).expect("sign")
}

async fn me_status(app: &TestApp, token: &str) -> u16 {
    let response = app
        .client
        .get(app.url("/api/accounts/me/"))
        .bearer_auth(token)
        .send()
        .await
        .expect("request");
    response.status().as_u16()
}

#[tokio::test]
async fn forged_stale_and_misused_tokens_are_all_refused() {
    let app = spawn_app().await;
    let tokens = app.verified_user(&unique_email()).await;
    let access = tokens["access"].as_str().expect("access").to_owned();
    let refresh = tokens["refresh"].as_str().expect("refresh").to_owned();
    let header = decode_part(&access, 0);
    let claims = decode_part(&access, 1);
    let kid = header["kid"].as_str().map(str::to_owned);
    assert_eq!(
        me_status(&app, &access).await,
        200,
        "the genuine token works"
    );

    let now = chrono::Utc::now().timestamp();
    let with = |name: &str, value: Value| {
        let mut c = claims.clone();
        c[name] = value;
        c
    };
    let jwks = json_of(
        app.client
            .get(app.url("/.well-known/jwks.json"))
            .send()
            .await
            .expect("jwks"),
        200,
    )
    .await;
    let public_x = jwks["keys"][0]["x"].as_str().expect("x").to_owned();

    let mut corpus: Vec<(&str, String)> = vec![
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(&json!({"alg": "none", "typ": "JWT"})),
                b64(&claims)
            ),
        ),
        (
            "alg none, upper case",
            format!("{}.{}.", b64(&json!({"alg": "NONE"})), b64(&claims)),
        ),
        (
            "expired",
            sign(&app, kid.clone(), &with("exp", json!(now - 120))),
        ),
        (
            "not yet valid",
            sign(&app, kid.clone(), &with("nbf", json!(now + 3_600))),
        ),
        (
            "wrong issuer",
            sign(&app, kid.clone(), &with("iss", json!("someone-else"))),
        ),
        (
            "wrong audience",
            sign(&app, kid.clone(), &with("aud", json!("someone-else"))),
        ),
        ("refresh used as access", refresh.clone()),
        (
            "access claims typed refresh",
            sign(&app, kid.clone(), &with("token_type", json!("refresh"))),
        ),
        (
            "unknown kid",
            sign(&app, Some("not-a-key-of-ours".into()), &claims),
        ),
        ("no kid", sign(&app, None, &claims)),
        (
            "sub of no account",
            sign(&app, kid.clone(), &with("sub", json!(uuid_like()))),
        ),
        ("garbage", "not.a.token".into()),
    ];
    // HS256 signed with the public key (algorithm confusion), in the forms a
    // confused verifier might use as an HMAC secret.
    for secret in [
        public_x.clone().into_bytes(),
        URL_SAFE_NO_PAD.decode(&public_x).expect("x"),
        jwks.to_string().into_bytes(),
    ] {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = kid.clone();
        corpus.push((
            "HS256 with the public key",
            jsonwebtoken::encode(
                &h,
                &claims,
                &EncodingKey::from_secret(&secret).expect("an HMAC key"),
            )
            .expect("sign"),
        ));
    }
    // A payload changed after signing: an account of someone else's, say.
    let parts: Vec<&str> = access.split('.').collect();
    corpus.push((
        "tampered payload",
        format!(
            "{}.{}.{}",
            parts[0],
            b64(&with("email_verified", json!(false))),
            parts[2]
        ),
    ));

    for (attack, token) in &corpus {
        assert_eq!(me_status(&app, token).await, 401, "{attack}");
        let verify = app.verify_token(&token).await;
        assert_eq!(verify.status(), 401, "token/verify: {attack}");
    }
    // And the reverse misuse: an access token is no refresh token.
    let as_refresh = app.refresh(&access).await;
    assert_eq!(as_refresh.status(), 401);
}

fn uuid_like() -> String {
    "00000000-0000-4000-8000-000000000000".into()
}

#[tokio::test]
async fn a_standard_jose_library_verifies_tokens_with_only_the_jwks() {
    let app = spawn_app().await;
    let tokens = app.verified_user(&unique_email()).await;
    let jwks = json_of(
        app.client
            .get(app.url("/.well-known/jwks.json"))
            .send()
            .await
            .expect("jwks"),
        200,
    )
    .await;
    let run = |token: &Value| pyjwt_verify(&jwks, token);
    let accepted = run(&tokens["access"]);
    assert!(
        accepted.status.success(),
        "PyJWT refused: {}",
        String::from_utf8_lossy(&accepted.stderr)
    );
    let claims: Value = serde_json::from_slice(&accepted.stdout).expect("claims");
    assert_eq!(claims["token_type"], "access");
    // The library refuses a token it cannot verify with that JWKS.
    let access = tokens["access"].as_str().expect("access");
    // Change a signature character that carries data (the last one holds padding bits).
    let mut forged: Vec<char> = access.chars().collect();
    let at = forged.len() - 10;
    forged[at] = if forged[at] == 'A' { 'B' } else { 'A' };
    let forged: String = forged.into_iter().collect();
    assert!(!run(&json!(forged)).status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_to_another_algorithm_without_signing_anyone_out() {
    let app = spawn_app().await;
    let email = unique_email();
    let before = app.verified_user(&email).await;
    let keys = |args: &[&str]| {
        app.cli(&[&["keys"], args].concat())
            .output()
            .expect("passcode keys")
    };
    let rotated = keys(&["rotate", "--algorithm", "ES256"]);
    assert!(
        rotated.status.success(),
        "{}",
        String::from_utf8_lossy(&rotated.stderr)
    );
    let listing = String::from_utf8_lossy(&keys(&["list"]).stdout).into_owned();
    assert_eq!(listing.lines().count(), 2, "{listing}");
    assert!(
        listing
            .lines()
            .any(|l| l.contains("ES256") && l.contains("(signs)")),
        "{listing}"
    );

    // An instance started after the rotation: signs ES256, still accepts the old key.
    let restarted = crate::helpers::start_instance(app.settings.clone()).await;
    let me = app
        .client
        .get(format!("{restarted}/api/accounts/me/"))
        .bearer_auth(before["access"].as_str().expect("access"))
        .send()
        .await
        .expect("request");
    assert_eq!(me.status(), 200, "a token of the old key still works");
    let refreshed = app
        .client
        .post(format!("{restarted}/api/accounts/token/refresh/"))
        .json(&json!({"refresh": before["refresh"]}))
        .send()
        .await
        .expect("request");
    let after = json_of(refreshed, 200).await;
    assert_eq!(
        decode_part(after["access"].as_str().expect("access"), 0)["alg"],
        "ES256"
    );
    let jwks = json_of(
        app.client
            .get(format!("{restarted}/.well-known/jwks.json"))
            .send()
            .await
            .expect("jwks"),
        200,
    )
    .await;
    assert_eq!(jwks["keys"].as_array().expect("keys").len(), 2);

    let verified = pyjwt_verify(&jwks, &after["access"]);
    assert!(
        verified.status.success(),
        "PyJWT refused ES256: {}",
        String::from_utf8_lossy(&verified.stderr)
    );
}

/// Runs PyJWT (`tests/support/verify_jwt.py`) on `token`, given only `jwks`.
fn pyjwt_verify(jwks: &Value, token: &Value) -> std::process::Output {
    use std::io::Write;
    let input = json!({"jwks": jwks, "token": token, "issuer": "passcode", "audience": "passcode"});
    let script = crate::helpers::support_file("verify_jwt.py");
    let mut child = std::process::Command::new(crate::helpers::test_python())
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python (run scripts/test.sh)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.to_string().as_bytes())
        .expect("write");
    child.wait_with_output().expect("output")
}

/// A refresh spends its token by the hash of its exact text, and is answered without a
/// signature check first when that spends it: so a refresh token that differs from the
/// one issued in any way, or is not ours, must be refused and spend nothing.
#[tokio::test]
async fn forged_refresh_tokens_are_refused_and_spend_nothing() {
    let app = spawn_app().await;
    let tokens = app.verified_user(&unique_email()).await;
    let refresh = tokens["refresh"].as_str().expect("refresh").to_owned();
    let header = decode_part(&refresh, 0);
    let claims = decode_part(&refresh, 1);
    let kid = header["kid"].as_str().map(str::to_owned);
    let with = |name: &str, value: Value| {
        let mut c = claims.clone();
        c[name] = value;
        c
    };
    let parts: Vec<&str> = refresh.split('.').collect();
    // A signature with one of its bytes changed (a middle character, which decodes to
    // whole bits of the signature, unlike the last one).
    let mut signature = parts[2].as_bytes().to_vec();
    signature[20] = if signature[20] == b'A' { b'B' } else { b'A' };
    let bad_signature = format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        String::from_utf8(signature).expect("ascii")
    );
    // An Ed25519 key that is not the service's (PKCS#8 v1 around a fixed seed), under
    // the service's kid.
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend_from_slice(&[7u8; 32]);
    let mut other_header = Header::new(Algorithm::EdDSA);
    other_header.kid = kid.clone();
    let other_key = jsonwebtoken::encode(&other_header, &claims, &EncodingKey::from_ed_der(&der))
        .expect("sign with another key");
    let mut hs_header = Header::new(Algorithm::HS256);
    hs_header.kid = kid.clone();

    let corpus: Vec<(&str, String)> = vec![
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(&json!({"alg": "none", "kid": kid})),
                b64(&claims)
            ),
        ),
        ("signature changed", bad_signature),
        ("signed by a key not ours", other_key),
        (
            "HS256",
            jsonwebtoken::encode(
                &hs_header,
                &claims,
                &EncodingKey::from_secret(b"guessable").expect("an HMAC key"),
            )
            .expect("sign"),
        ),
        (
            "payload changed: another address",
            format!(
                "{}.{}.{}",
                parts[0],
                b64(&with("email", json!("someone.else@example.com"))),
                parts[2]
            ),
        ),
        (
            "payload changed: unverified",
            format!(
                "{}.{}.{}",
                parts[0],
                b64(&with("email_verified", json!(false))),
                parts[2]
            ),
        ),
        ("no signature", format!("{}.{}.", parts[0], parts[1])),
        (
            "well signed but expired",
            sign(&app, kid.clone(), &with("exp", json!(0))),
        ),
    ];
    for (attack, token) in &corpus {
        let response = app.refresh(token).await;
        assert_eq!(response.status(), 401, "{attack}");
    }
    // None of them spent the genuine token, nor ended its session as a reuse would.
    let rotated = json_of(app.refresh(&refresh).await, 200).await;
    let next = rotated["refresh"].as_str().expect("a new refresh token");
    assert_ne!(next, refresh);
    assert_eq!(
        app.refresh(&next).await.status(),
        200,
        "the session goes on"
    );
}
