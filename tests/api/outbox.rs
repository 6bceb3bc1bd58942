//! Mail that is never lost: the outbox, its worker, retries and giving up, against a
//! real SMTP server that the tests stop, start, and make answer 4xx or 5xx.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::helpers::{ControlledSmtp, Mail, TestApp, spawn_app_with, unique_email};

async fn app_on(
    smtp: &ControlledSmtp,
    customize: impl FnOnce(&mut passcode_app::Settings),
) -> TestApp {
    spawn_app_with(Mail::Starttls, |s| {
        smtp.configure(s);
        customize(s);
    })
    .await
}

/// An app whose outbox retries a failed message only after a minute: a message that
/// arrives within a test's wait went at its first attempt.
async fn app_retrying_after_a_minute(smtp: &ControlledSmtp) -> TestApp {
    app_on(smtp, |s| {
        s.mail.outbox.backoff_base_ms = 60_000.into();
        s.mail.outbox.backoff_max_ms = 60_000.into();
    })
    .await
}

/// Waits until `smtp` has received `count` messages (or 30 s pass).
async fn wait_for(smtp: &ControlledSmtp, count: usize) -> Vec<crate::helpers::CapturedMail> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let received = smtp.received();
        if received.len() >= count || Instant::now() > deadline {
            return received;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_while_smtp_is_down_answer_at_once_and_every_mail_arrives_once() {
    let mut smtp = ControlledSmtp::down("accept");
    let app = app_on(&smtp, |s| s.mail.outbox.max_attempts = 50).await;
    let emails: Vec<String> = (0..50).map(|_| unique_email()).collect();
    let mut slowest = Duration::ZERO;
    for email in &emails {
        let started = Instant::now();
        assert_eq!(app.register(email).await.status(), 201);
        slowest = slowest.max(started.elapsed());
    }
    assert!(
        slowest < Duration::from_secs(2),
        "a register waited for SMTP: {slowest:?}"
    );
    assert_eq!(app.outbox().await.len(), 50, "all 50 wait in the outbox");

    smtp.start();
    let received = wait_for(&smtp, 50).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let received_after = smtp.received();
    assert_eq!(
        received_after.len(),
        received.len(),
        "nothing more arrives later"
    );
    let mut per_recipient: HashMap<String, usize> = HashMap::new();
    for mail in &received_after {
        *per_recipient.entry(mail.to.clone()).or_default() += 1;
        assert!(mail.code().is_some());
    }
    for email in &emails {
        assert_eq!(per_recipient.get(email), Some(&1), "{email}: exactly once");
    }
    app.outbox_drained("nothing left waiting").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_temporary_refusal_is_retried_until_the_mail_is_accepted() {
    let mut smtp = ControlledSmtp::down("tempfail:2");
    smtp.start();
    let app = app_on(&smtp, |_| {}).await;
    let email = unique_email();
    assert_eq!(app.register(&email).await.status(), 201);
    let received = wait_for(&smtp, 1).await;
    assert_eq!(received.len(), 1, "delivered after two 451 answers");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(smtp.received().len(), 1, "and only once");
    app.outbox_drained("sent").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_refusal_is_kept_as_failed_with_its_error_and_not_retried() {
    let mut smtp = ControlledSmtp::down("reject");
    smtp.start();
    let app = app_on(&smtp, |_| {}).await;
    let email = unique_email();
    assert_eq!(app.register(&email).await.status(), 201);
    let failed = app.failed_mail().await;
    assert_eq!(failed.recipient, email);
    assert_eq!(failed.attempts, 1, "a 5xx is not retried");
    assert!(
        failed
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("550")),
        "{failed:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.outbox().await[0].attempts, 1, "still not retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mail_whose_code_expired_while_smtp_was_down_is_not_sent() {
    let mut smtp = ControlledSmtp::down("accept");
    let app = app_on(&smtp, |s| {
        s.otp.ttl_seconds = 1.into();
        s.mail.outbox.max_attempts = 50;
    })
    .await;
    assert_eq!(app.register(&unique_email()).await.status(), 201);
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    smtp.start();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(smtp.received().is_empty(), "an expired code is not mailed");
    app.outbox_drained("and it no longer waits").await;
}

/// A pooled SMTP connection that the server closed (here by a restart) is noticed
/// before the next message and replaced: that message goes at its first attempt (a
/// retry would wait a minute here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_the_smtp_server_closed_is_replaced_before_the_next_mail() {
    let mut smtp = ControlledSmtp::down("accept");
    smtp.start();
    let app = app_retrying_after_a_minute(&smtp).await;
    assert_eq!(app.register(&unique_email()).await.status(), 201);
    assert_eq!(wait_for(&smtp, 1).await.len(), 1);
    smtp.stop();
    smtp.start();
    // Idle for over a second: the pool both peeks at the socket and sends NOOP before
    // using it again (the peek sees this close first).
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let email = unique_email();
    assert_eq!(app.register(&email).await.status(), 201);
    let received = wait_for(&smtp, 2).await;
    assert_eq!(received.len(), 2, "the second mail arrived without a retry");
    assert_eq!(received.iter().filter(|m| m.to == email).count(), 1);
    app.outbox_drained("sent").await;
}

/// A server that closes each connection after its message (a per-connection message
/// limit; a restart under load looks the same) has closed it a moment after its last
/// use, too soon for the idle check. The pool sees the closed socket before the next
/// message, which goes at its first attempt over a new connection (a retry would wait
/// a minute here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_the_smtp_server_closed_just_after_a_message_is_not_reused() {
    let mut smtp = ControlledSmtp::down("one-per-connection");
    smtp.start();
    let app = app_retrying_after_a_minute(&smtp).await;
    for sent in 1..=3 {
        assert_eq!(app.register(&unique_email()).await.status(), 201);
        let received = wait_for(&smtp, sent).await;
        assert_eq!(received.len(), sent, "mail {sent} arrived without a retry");
        // The server closes 10 ms after its answer; on a loaded machine, give its close
        // time to arrive (still well within the second before a NOOP check).
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let peers: std::collections::HashSet<String> =
        smtp.received().into_iter().map(|mail| mail.peer).collect();
    assert_eq!(peers.len(), 3, "one connection per message: {peers:?}");
    app.outbox_drained("sent").await;
}

/// Messages one after another share one connection, over implicit TLS and over
/// STARTTLS with AUTH: the pool's look at an idle socket does not mistake it for a
/// closed one, and each message costs no new handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_one_after_another_share_one_smtp_connection() {
    for mail in [Mail::Implicit, Mail::Starttls] {
        let app = spawn_app_with(mail, |_| {}).await;
        let mut peers = Vec::new();
        for _ in 0..3 {
            let email = unique_email();
            assert_eq!(app.register(&email).await.status(), 201);
            peers.push(app.next_mail(&email).await.peer);
        }
        assert!(!peers[0].is_empty(), "the server names the connection");
        assert!(
            peers.iter().all(|peer| *peer == peers[0]),
            "{mail:?}: {peers:?}"
        );
    }
}

/// A send cut short by its deadline (6 s here) leaves its connection out of step: the
/// server answers the first RCPT after 6.5 s. The connection is closed and the retry
/// goes over a new one. Reused, the retry's NOOP would read that late answer as its
/// own, the exchange would go out of step, and with two attempts the mail would fail.
/// (Each step may take 2 s: with 1 s, a first connection slowed by a busy machine
/// failed before its RCPT, the retry met the stall, and the mail failed.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_whose_send_was_cut_short_is_not_reused() {
    let mut smtp = ControlledSmtp::down("stall:6.5");
    smtp.start();
    let app = app_on(&smtp, |s| {
        s.mail.smtp.timeout_seconds = 2.into();
        s.mail.outbox.max_attempts = 2;
    })
    .await;
    let email = unique_email();
    assert_eq!(app.register(&email).await.status(), 201);
    let received = wait_for(&smtp, 1).await;
    assert_eq!(received.len(), 1, "delivered at the second attempt");
    assert_eq!(received[0].to, email);
    app.outbox_drained("sent at the second attempt").await;
}

/// Prints the delay from a register request to its mail's arrival at the SMTP server
/// (median and worst of 100), with the production outbox settings. Asserts only that
/// every mail arrived, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measure_register_to_mail_arrival_delay() {
    let mut smtp = ControlledSmtp::down("accept");
    smtp.start();
    let app = app_on(&smtp, |s| {
        let defaults = passcode_app::Settings::defaults().expect("defaults");
        s.mail.outbox = defaults.mail.outbox;
    })
    .await;
    let new_mail = smtp.maildir().join("new");
    let count = || std::fs::read_dir(&new_mail).map_or(0, |d| d.count());
    let (mut delays, mut answers) = (Vec::new(), Vec::new());
    for i in 0..100 {
        let email = unique_email();
        let started = Instant::now();
        assert_eq!(app.register(&email).await.status(), 201);
        answers.push(started.elapsed());
        while count() <= i {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "mail {i} never arrived"
            );
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        delays.push(started.elapsed());
    }
    delays.sort();
    answers.sort();
    println!(
        "100 sequential registrations: answered in median {:?} (worst {:?}); mail arrived at the SMTP server after median {:?} (worst {:?})",
        answers[50], answers[99], delays[50], delays[99]
    );
    assert_eq!(smtp.received().len(), 100);
}

/// A request that queues mail wakes this instance's worker: with a poll of a minute,
/// a registration's code and an account's goodbye still arrive within seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_queued_by_a_request_leaves_without_waiting_for_the_poll() {
    let app = spawn_app_with(Mail::Starttls, |s| {
        s.mail.outbox.poll_interval_ms = 60_000.into();
    })
    .await;
    let email = unique_email();
    let started = Instant::now();
    assert_eq!(app.register(&email).await.status(), 201);
    let code = app.next_code(&email).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the code took {:?}",
        started.elapsed()
    );
    let verified = app.validate(&email, &code).await;
    assert_eq!(verified.status(), 200);
    let tokens: serde_json::Value = verified.json().await.expect("json");
    let started = Instant::now();
    let deleted = app
        .client
        .post(app.url("/api/accounts/delete/"))
        .bearer_auth(tokens["token"]["access"].as_str().expect("access token"))
        .json(&serde_json::json!({ "password": crate::helpers::PASSWORD }))
        .send()
        .await
        .expect("request");
    assert_eq!(deleted.status(), 200);
    let goodbye = app.next_mail(&email).await;
    assert!(goodbye.subject.contains("deleted"), "{}", goodbye.subject);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the goodbye took {:?}",
        started.elapsed()
    );
}
