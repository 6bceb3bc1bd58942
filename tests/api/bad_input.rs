//! Bad input on every endpoint: a clear 4xx with the documented body, never a 500.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, json_of, spawn_app, unique_email};

const JSON_ENDPOINTS: [(&str, &str); 12] = [
    ("POST", "/api/accounts/logout/"),
    ("POST", "/api/accounts/password-reset/"),
    ("POST", "/api/accounts/password-reset/confirm/"),
    ("POST", "/api/accounts/change-password/"),
    ("POST", "/api/accounts/create/"),
    ("POST", "/api/accounts/validate-otp/"),
    ("PATCH", "/api/accounts/resend-otp/"),
    ("POST", "/api/accounts/resend-otp/"),
    ("POST", "/api/accounts/token/"),
    ("POST", "/api/accounts/token/refresh/"),
    ("POST", "/api/accounts/token/verify/"),
    ("POST", "/api/accounts/token/verify"),
];

async fn send_raw(
    app: &TestApp,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> reqwest::Response {
    let method = Method::from_bytes(method.as_bytes()).expect("method");
    let mut request = app.client.request(method, app.url(path)).body(body);
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    request.send().await.expect("request")
}

/// Asserts the status and the documented error body; returns the body.
async fn expect_error(response: reqwest::Response, status: u16, context: &str) -> Value {
    let actual = response.status().as_u16();
    let text = response.text().await.expect("body");
    assert_eq!(actual, status, "{context}: body {text}");
    let body: Value =
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("{context}: not JSON: {text}"));
    assert!(body["error"].is_string(), "{context}: {body}");
    assert!(body["code"].is_string(), "{context}: {body}");
    body
}

#[tokio::test]
async fn malformed_and_non_object_json_is_400_everywhere() {
    let app = spawn_app().await;
    let deep = format!("{}{}", "[".repeat(5_000), "]".repeat(5_000));
    let deep_object = format!("{}1{}", r#"{"a":"#.repeat(2_000), "}".repeat(2_000));
    let cases: Vec<(&str, String, &str)> = vec![
        ("invalid JSON", r#"{"email": "#.to_owned(), "invalid_json"),
        (
            "trailing garbage",
            r#"{"email": "a@b.co"} x"#.to_owned(),
            "invalid_json",
        ),
        ("empty body", String::new(), "invalid_json"),
        ("null", "null".to_owned(), "invalid_body"),
        ("array", r#"["a@b.co", "x"]"#.to_owned(), "invalid_body"),
        ("string", r#""a@b.co""#.to_owned(), "invalid_body"),
        ("number", "42".to_owned(), "invalid_body"),
        ("deeply nested array", deep, "invalid_json"),
        ("deeply nested object", deep_object, "invalid_json"),
    ];
    for (method, path) in JSON_ENDPOINTS {
        for (name, body, code) in &cases {
            let response = send_raw(
                &app,
                method,
                path,
                Some("application/json"),
                body.clone().into_bytes(),
            )
            .await;
            let body = expect_error(response, 400, &format!("{method} {path} {name}")).await;
            assert_eq!(body["code"], *code, "{method} {path} {name}");
        }
    }
}

#[tokio::test]
async fn missing_fields_wrong_types_and_empty_strings_are_field_errors() {
    let app = spawn_app().await;
    let cases: [(&str, &str, Value, &[&str]); 7] = [
        (
            "POST",
            "/api/accounts/create/",
            json!({}),
            &["email", "full_name", "password"],
        ),
        (
            "POST",
            "/api/accounts/create/",
            json!({"email": 5, "full_name": ["x"], "password": {"a": 1}}),
            &["email", "full_name", "password"],
        ),
        (
            "POST",
            "/api/accounts/create/",
            json!({"email": "", "full_name": "  ", "password": ""}),
            &["email", "full_name", "password"],
        ),
        (
            "POST",
            "/api/accounts/validate-otp/",
            json!({"email": null, "otp": 123456}),
            &["email", "otp"],
        ),
        (
            "PATCH",
            "/api/accounts/resend-otp/",
            json!({"email": ""}),
            &["email"],
        ),
        (
            "POST",
            "/api/accounts/token/",
            json!({"email": true, "password": null}),
            &["email", "password"],
        ),
        (
            "POST",
            "/api/accounts/token/refresh/",
            json!({"refresh": 1}),
            &["refresh"],
        ),
    ];
    for (method, path, body, fields) in cases {
        let response = send_raw(
            &app,
            method,
            path,
            Some("application/json"),
            body.to_string().into_bytes(),
        )
        .await;
        let error = expect_error(response, 400, &format!("{method} {path} {body}")).await;
        assert_eq!(error["code"], "validation_error", "{body}");
        for field in fields {
            let problems = error["fields"][field]
                .as_array()
                .unwrap_or_else(|| panic!("{field} in {error}"));
            assert!(!problems.is_empty() && problems[0].is_string());
        }
    }
}

#[tokio::test]
async fn password_policy_and_name_limits_are_field_errors() {
    let app = spawn_app().await;
    for (password, name) in [
        ("short", "Ada"),
        (&"x".repeat(129)[..], "Ada"),
        ("long enough pw", &"n".repeat(151)[..]),
    ] {
        let body = json!({"email": unique_email(), "full_name": name, "password": password});
        let response = app.post("/api/accounts/create/", &body).await;
        let error = expect_error(response, 400, "policy").await;
        assert_eq!(error["code"], "validation_error");
    }
}

#[tokio::test]
async fn body_over_the_limit_is_413() {
    let app = spawn_app().await;
    let padding = "x".repeat(70 * 1024);
    let body = json!({"email": unique_email(), "full_name": padding, "password": "whatever-pass"});
    for (method, path) in JSON_ENDPOINTS {
        let response = send_raw(
            &app,
            method,
            path,
            Some("application/json"),
            body.to_string().into_bytes(),
        )
        .await;
        let error = expect_error(response, 413, &format!("{method} {path}")).await;
        assert_eq!(error["code"], "payload_too_large");
    }
}

#[tokio::test]
async fn wrong_or_missing_content_type_is_415() {
    let app = spawn_app().await;
    let body = json!({"email": unique_email(), "password": "whatever-pass"}).to_string();
    for (method, path) in JSON_ENDPOINTS {
        for content_type in [
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            None,
        ] {
            let response =
                send_raw(&app, method, path, content_type, body.clone().into_bytes()).await;
            let error =
                expect_error(response, 415, &format!("{method} {path} {content_type:?}")).await;
            assert_eq!(error["code"], "unsupported_media_type");
        }
    }
}

#[tokio::test]
async fn email_with_a_nul_byte_or_bad_form_is_refused_everywhere() {
    let app = spawn_app().await;
    for email in [
        "ada\u{0}@example.com",
        "ada@exam\u{0}ple.com",
        "no-at-sign",
        "ünï@example.com",
        "a@b",
    ] {
        let bodies = [
            (
                "/api/accounts/create/",
                json!({"email": email, "full_name": "Ada", "password": "whatever-pass"}),
            ),
            (
                "/api/accounts/validate-otp/",
                json!({"email": email, "otp": "123456"}),
            ),
            ("/api/accounts/resend-otp/", json!({"email": email})),
            (
                "/api/accounts/token/",
                json!({"email": email, "password": "whatever-pass"}),
            ),
        ];
        for (path, body) in bodies {
            let error = expect_error(
                app.post(path, &body).await,
                400,
                &format!("{path} {email:?}"),
            )
            .await;
            assert_eq!(error["fields"]["email"][0], "Enter a valid email address.");
        }
    }
}

#[tokio::test]
async fn internationalised_domain_is_stored_in_ascii_form() {
    let app = spawn_app().await;
    let local = unique_email().split('@').next().expect("local").to_owned();
    let body = json_of(
        app.post(
            "/api/accounts/create/",
            &json!({"email": format!("{local}@Bücher.example"), "full_name": "Ada", "password": crate::helpers::PASSWORD}),
        )
        .await,
        201,
    )
    .await;
    assert_eq!(
        body["user"]["email"],
        format!("{local}@xn--bcher-kva.example")
    );
}

#[tokio::test]
async fn bad_bearer_headers_are_401_not_500() {
    let app = spawn_app().await;
    for header in [
        "",
        "Bearer",
        "Bearer ",
        "Basic abc",
        "Bearer a.b.c",
        "bearer \u{7f}",
    ] {
        let response = app
            .client
            .get(app.url("/api/accounts/me/"))
            .header("authorization", header)
            .send()
            .await;
        let Ok(response) = response else { continue };
        expect_error(response, 401, &format!("{header:?}")).await;
    }
}
