//! The API contract as a product: the served OpenAPI document, the API page in a real
//! browser, CORS, a fuzzer against the live server, and a generated client.

use std::process::Command;

use serde_json::{Value, json};

use crate::helpers::{
    Mail, PASSWORD, TestApp, json_of, spawn_app, spawn_app_with, test_python, unique_email,
    venv_tool,
};

async fn get(app: &TestApp, path: &str) -> reqwest::Response {
    app.client.get(app.url(path)).send().await.expect("request")
}

#[tokio::test]
async fn the_openapi_document_is_served_and_describes_every_operation() {
    let app = spawn_app().await;
    let response = get(&app, "/api/openapi.json").await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let doc: Value = response.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let create = &doc["paths"]["/api/accounts/create/"]["post"];
    assert_eq!(create["operationId"], "register");
    assert!(create["requestBody"]["content"]["application/json"]["schema"].is_object());
    for status in ["201", "400", "413", "415", "429", "503"] {
        assert!(
            create["responses"][status].is_object(),
            "create documents {status}"
        );
    }
    assert!(create["responses"]["429"]["headers"]["Retry-After"].is_object());
    assert_eq!(
        doc["paths"]["/api/accounts/me/"]["get"]["security"],
        json!([{"bearer": []}])
    );
    let codes = &doc["components"]["schemas"]["ErrorCode"]["enum"];
    assert!(codes.as_array().unwrap().contains(&json!("otp_invalid")));
    let validate = &doc["components"]["schemas"]["ValidateOtpRequest"];
    assert!(
        validate["properties"]["password"].is_object(),
        "validate-otp's optional password"
    );
    let required = validate["required"].as_array().unwrap();
    assert!(required.contains(&json!("email")) && required.contains(&json!("otp")));
    assert!(!required.contains(&json!("password")));
}

#[tokio::test]
async fn the_api_page_is_served_from_the_binary_and_can_be_turned_off() {
    let app = spawn_app().await;
    let no_redirect = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let to_page = no_redirect.get(app.url("/docs")).send().await.unwrap();
    assert_eq!(to_page.status(), 302);
    assert_eq!(to_page.headers()["location"], "/docs/index.html");
    let page = get(&app, "/docs/index.html").await;
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("swagger-ui"));
    let init = get(&app, "/docs/swagger-initializer.js")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        init.contains("/api/openapi.json"),
        "the page loads the served document"
    );

    let off = spawn_app_with(Mail::Starttls, |s| s.server.docs = false).await;
    assert_eq!(get(&off, "/docs/index.html").await.status(), 404);
    assert_eq!(
        get(&off, "/api/openapi.json").await.status(),
        200,
        "the document stays"
    );
}

/// Headless Chromium (from the distribution's packages) opens the page, which fetches
/// the document and renders every operation.
#[tokio::test]
async fn the_api_page_lists_the_operations_in_a_real_browser() {
    let app = spawn_app().await;
    let browser = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|name| Command::new(name).arg("--version").output().is_ok())
        .expect("Chromium is missing: scripts/test.sh installs it (apt-get install chromium)");
    let profile = tempfile::tempdir().unwrap();
    let url = app.url("/docs/index.html");
    let output = tokio::task::spawn_blocking(move || {
        Command::new(browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--virtual-time-budget=20000",
                "--dump-dom",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .output()
            .expect("run chromium")
    })
    .await
    .unwrap();
    let dom = String::from_utf8_lossy(&output.stdout);
    for path in [
        "/api/accounts/create/",
        "/api/accounts/validate-otp/",
        "/api/accounts/token/refresh/",
        "/api/accounts/me/",
    ] {
        assert!(
            dom.contains(&format!("data-path=\"{path}\"")),
            "the page lists {path}; stderr: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[tokio::test]
async fn cors_answers_listed_origins_only() {
    let app = spawn_app_with(Mail::Starttls, |s| {
        s.server.cors.allowed_origins = vec!["https://app.example.com".into()];
    })
    .await;
    let preflight = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/api/accounts/token/"))
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 200);
    let headers = preflight.headers();
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert!(
        headers["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST")
    );
    assert!(
        headers.get("access-control-allow-credentials").is_none(),
        "credentials off"
    );

    let allowed = app
        .client
        .post(app.url("/api/accounts/resend-otp/"))
        .header("origin", "https://app.example.com")
        .json(&json!({"email": unique_email()}))
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), 200);
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert!(
        allowed.headers()["access-control-expose-headers"]
            .to_str()
            .unwrap()
            .to_lowercase()
            .contains("retry-after")
    );

    let refused = app
        .client
        .post(app.url("/api/accounts/resend-otp/"))
        .header("origin", "https://evil.example.net")
        .json(&json!({"email": unique_email()}))
        .send()
        .await
        .unwrap();
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );

    // By default: no CORS headers at all, and requests are served as ever.
    let plain = spawn_app().await;
    let response = plain
        .client
        .post(plain.url("/api/accounts/resend-otp/"))
        .header("origin", "https://app.example.com")
        .json(&json!({"email": unique_email()}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

/// schemathesis generates requests from the served document against the live server
/// (on the backend this pass runs on) and fails on any 5xx, any response that does not
/// match its documented schema, headers or content type, and any undocumented status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fuzzer_finds_no_server_error_and_no_undocumented_answer() {
    let app = spawn_app().await;
    let email = unique_email();
    let tokens = app.verified_user(&email).await;
    let schema = app.url("/api/openapi.json");
    let bearer = format!(
        "Authorization: Bearer {}",
        tokens["access"].as_str().unwrap()
    );
    let st = venv_tool("st");
    // Its example cache goes to the working folder: keep it out of the source tree.
    let scratch = tempfile::tempdir().unwrap();
    let cwd = scratch.path().to_owned();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(st)
            .current_dir(cwd)
            .args(["run", &schema, "--no-color"])
            .args([
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance",
            ])
            .args(["--max-examples", "60", "--generation-deterministic"])
            .args(["--header", &bearer])
            .output()
            .expect("run schemathesis")
    })
    .await
    .unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    let summary = report
        .lines()
        .find(|line| {
            line.contains(" generated,")
                && line.trim_start().starts_with(|c: char| c.is_ascii_digit())
        })
        .unwrap_or_default()
        .trim()
        .to_owned();
    println!(
        "schemathesis ({}): {summary}",
        crate::helpers::backend_name()
    );
    assert!(
        output.status.success(),
        "schemathesis found problems:\n{report}"
    );
    let generated: u64 = summary
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in the report:\n{report}"));
    assert!(
        generated >= 1_000,
        "only {generated} requests generated:\n{report}"
    );
}

/// A client generated from the served document (openapi-python-client) imports and
/// runs register, verify and login.
#[tokio::test]
async fn a_client_generated_from_the_document_registers_verifies_and_logs_in() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let document = dir.path().join("openapi.json");
    std::fs::write(
        &document,
        get(&app, "/api/openapi.json").await.bytes().await.unwrap(),
    )
    .unwrap();
    let package = dir.path().join("passcode_client");
    let generated = Command::new(venv_tool("openapi-python-client"))
        .args(["generate", "--meta", "none", "--path"])
        .arg(&document)
        .arg("--output-path")
        .arg(&package)
        .output()
        .expect("run openapi-python-client");
    assert!(
        generated.status.success() && package.join("api").exists(),
        "{}{}",
        String::from_utf8_lossy(&generated.stdout),
        String::from_utf8_lossy(&generated.stderr)
    );
    let email = unique_email();
    let base = app.address.clone();
    // Run without blocking this test's runtime: pooled PostgreSQL connections opened
    // on it (the purge task's, at start-up) are driven by it while a request uses them.
    let step = async |args: &[&str]| {
        let out = tokio::process::Command::new(test_python())
            .arg(crate::helpers::support_file("generated_client.py"))
            .args(args)
            .env("PYTHONPATH", dir.path())
            .output()
            .await
            .expect("run the generated client");
        assert!(
            out.status.success(),
            "{:?}: {}",
            args,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    step(&["register", &base, &email, PASSWORD]).await;
    let code = app.next_code(&email).await;
    assert_eq!(
        step(&["verify", &base, &email, PASSWORD, &code]).await,
        "Account verified successfully"
    );
    assert_eq!(
        step(&["login", &base, &email, PASSWORD]).await,
        format!("{email} Ada Generated True")
    );
    let body = json_of(app.login(&email, PASSWORD).await, 200).await;
    assert!(body["access"].is_string());
}
