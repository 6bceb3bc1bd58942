//! The repository contract: one suite of test functions, generic over the store,
#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed expectation is a failed test.
//! run against every persistence adapter.

mod suite;

use passcode_persistence::{DatabaseSettings, PgStore, SqliteStore};

/// A fresh SQLite database in its own temporary folder, migrated.
async fn sqlite() -> (SqliteStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temporary folder");
    let store = SqliteStore::connect(&DatabaseSettings::sqlite(dir.path().join("contract.db")))
        .expect("connect");
    store.migrate().await.expect("migrate");
    (store, dir)
}

/// A fresh, migrated database of its own on the PostgreSQL server of `TEST_DATABASE_URL`.
async fn postgres() -> (PgStore, ()) {
    let admin = std::env::var("TEST_DATABASE_URL").expect(
        "TEST_DATABASE_URL is not set: run scripts/test.sh (it starts a throwaway PostgreSQL cluster), \
         or set it to postgres://USER@HOST:PORT/DB of a server where tests may create databases",
    );
    let name = format!("contract_{}", uuid::Uuid::new_v4().simple());
    let url = passcode_persistence::postgres::create_database(&admin, &name)
        .await
        .expect("create database");
    let store = PgStore::connect(&DatabaseSettings::new(url)).expect("connect");
    store.migrate().await.expect("migrate");
    (store, ())
}

/// The same test functions, once per backend.
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (store, _guard) = super::sqlite().await;
                    super::suite::$name(store).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (store, _guard) = super::postgres().await;
                    super::suite::$name(store).await;
                }
            )*
        }
    };
}

contract!(
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
    throttle_allows_up_to_the_limit_then_says_when,
    throttle_enforces_the_cooldown,
    throttle_release_gives_back_one_event,
    concurrent_acquires_never_exceed_the_limit,
    purge_removes_only_what_no_longer_matters,
    throttle_without_cooldown_admits_events_arriving_out_of_order,
    storing_a_code_queues_its_mail_with_the_code_and_its_expiry,
    a_claimed_message_is_leased_then_claimable_again,
    concurrent_claims_never_hand_out_a_message_twice,
    sent_and_expired_messages_lose_their_body,
    a_failed_notice_can_be_retried_and_a_deferred_message_waits,
    set_password_replaces_the_hash_verifies_and_refuses_older_tokens,
    rotation_spends_once_replays_within_grace_then_revokes_on_reuse,
    rotation_refuses_unknown_and_expired_tokens,
    concurrent_rotations_of_one_token_rotate_once_and_replay_the_rest,
    logout_revokes_one_family_or_all_of_an_account,
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_concurrent_migrations_apply_once_and_all_succeed() {
    let admin =
        std::env::var("TEST_DATABASE_URL").expect("TEST_DATABASE_URL (run scripts/test.sh)");
    let name = format!("contract_{}", uuid::Uuid::new_v4().simple());
    let url = passcode_persistence::postgres::create_database(&admin, &name)
        .await
        .unwrap();
    let runs: Vec<_> = (0..4)
        .map(|_| {
            let store = PgStore::connect(&DatabaseSettings::new(url.clone())).unwrap();
            tokio::spawn(async move { store.migrate().await })
        })
        .collect();
    let mut applied = 0;
    for run in runs {
        applied += run
            .await
            .unwrap()
            .expect("every instance's migration succeeds")
            .len();
    }
    let migrations = std::fs::read_dir(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../migrations/postgres"
    ))
    .unwrap()
    .count();
    assert_eq!(applied, migrations, "each migration is applied once in all");
}
