//! The repository contract: one suite of test functions, generic over the store,
#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed expectation is a failed test.
//! run against every persistence adapter.

mod suite;

use passcode_persistence::{DatabaseSettings, SqliteStore};

/// A fresh SQLite database in its own temporary folder, migrated.
async fn sqlite() -> (SqliteStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temporary folder");
    let store = SqliteStore::connect(&DatabaseSettings::sqlite(dir.path().join("contract.db")))
        .expect("connect");
    store.migrate().await.expect("migrate");
    (store, dir)
}

macro_rules! contract {
    ($backend:ident: $($name:ident),* $(,)?) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (store, _guard) = super::$backend().await;
                    super::suite::$name(store).await;
                }
            )*
        }
    };
}

contract!(sqlite:
    create_then_find_by_email_and_id,
    duplicate_email_is_email_taken,
    concurrent_registrations_of_one_address_create_exactly_one,
    find_unknown_is_none,
    mark_email_verified_is_idempotent,
    replace_then_find_returns_the_code,
    replace_invalidates_the_previous_code,
    codes_of_different_purposes_are_separate,
    consume_succeeds_once,
    consume_refuses_wrong_hash_expired_and_exhausted_codes,
    concurrent_consumes_have_exactly_one_winner,
    failed_attempts_are_counted_up_to_the_limit,
    concurrent_failed_attempts_never_exceed_the_limit,
    health_check_answers,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_migrate_again_applies_nothing_and_keeps_data() {
    use passcode_domain::ports::UserRepository;
    let (store, _guard) = sqlite().await;
    let user = passcode_domain::NewUser {
        id: passcode_domain::UserId::new_random(),
        email: passcode_domain::EmailAddress::parse("ada@example.com").unwrap(),
        full_name: passcode_domain::FullName::parse("Ada").unwrap(),
        password_hash: passcode_domain::PasswordHash::new("h".into()),
        created_at: chrono::Utc::now(),
    };
    store.create(&user).await.unwrap();
    assert!(store.migrate().await.unwrap().is_empty());
    assert!(store.find_by_id(user.id).await.unwrap().is_some());
}
