//! The repository contract: one suite of test functions, generic over the store,
// Test code: a failed expectation is a failed test, and tests may read the wall clock.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]
//! run against every persistence adapter.

mod suite;

use passcode_persistence::{DatabaseSettings, MysqlStore, PgStore, SqliteStore};
use passcode_test_support::TestDatabase;

/// A fresh SQLite database in its own temporary folder, migrated.
async fn sqlite() -> (SqliteStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temporary folder");
    let store = SqliteStore::connect(&DatabaseSettings::sqlite(dir.path().join("contract.db")))
        .expect("connect");
    store.migrate().await.expect("migrate");
    (store, dir)
}

/// A fresh, migrated database of its own on the PostgreSQL server of `TEST_DATABASE_URL`.
/// The database is dropped with the second value.
async fn postgres() -> (PgStore, TestDatabase) {
    let database = TestDatabase::create("contract").await;
    let store = PgStore::connect(&DatabaseSettings::new(database.url())).expect("connect");
    store.migrate().await.expect("migrate");
    (store, database)
}

/// A fresh, migrated database of its own on the MariaDB server of `TEST_MARIADB_URL`.
async fn mariadb() -> (MysqlStore, TestDatabase) {
    let database = TestDatabase::mariadb("contract").await;
    let store = MysqlStore::connect(&DatabaseSettings::new(database.url())).expect("connect");
    store.migrate().await.expect("migrate");
    (store, database)
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
        mod mariadb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (store, _guard) = super::mariadb().await;
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
    a_spend_gives_its_guesses_back_and_starts_its_session,
    a_password_set_gives_its_budget_back,
    a_spend_deletes_its_account,
    a_spend_moves_its_account_to_its_new_address,
    a_spend_sets_its_password_before_its_session,
    a_spend_setting_a_password_of_an_account_gone_queues_no_notice,
    concurrent_password_sets_by_one_code_have_one_winner,
    a_spend_whose_move_is_refused_leaves_its_code_unspent,
    concurrent_guesses_and_spends_of_one_address_all_succeed,
    completing_a_registration_starts_its_session_with_the_spend,
    a_completion_that_does_not_spend_changes_nothing,
    a_completion_with_another_account_change_is_refused,
    failed_attempts_are_counted_up_to_the_limit,
    concurrent_failed_attempts_never_exceed_the_limit,
    health_check_answers,
    throttle_allows_up_to_the_limit_then_says_when,
    a_refused_guess_budget_counts_nothing,
    a_refused_share_leaves_the_ceiling_untouched,
    concurrent_guesses_never_overrun_a_budget,
    throttle_enforces_the_cooldown,
    throttle_release_gives_back_one_event_of_each_key,
    a_late_give_back_leaves_a_later_window_its_events,
    a_late_give_back_in_a_write_leaves_a_later_window_its_events,
    concurrent_acquires_never_exceed_the_limit,
    acquire_all_counts_on_every_budget_or_on_none,
    concurrent_acquire_alls_never_exceed_a_budget,
    concurrent_reserves_and_releases_all_succeed,
    sessions_started_give_their_budgets_back_in_their_transaction,
    purge_removes_only_what_no_longer_matters,
    throttle_without_cooldown_admits_events_arriving_out_of_order,
    storing_a_code_queues_its_mail_with_the_code_and_its_expiry,
    a_claimed_message_is_leased_then_claimable_again,
    concurrent_claims_never_hand_out_a_message_twice,
    sent_and_expired_messages_lose_their_body,
    a_batch_is_marked_sent_at_once_and_only_that_batch,
    a_failed_notice_can_be_retried_and_a_deferred_message_waits,
    set_password_replaces_the_hash_verifies_ends_sessions_and_queues_the_notice,
    rotation_spends_once_replays_within_grace_then_revokes_on_reuse,
    rotation_refuses_unknown_and_expired_tokens,
    rotation_of_a_changed_account_changes_nothing,
    concurrent_rotations_of_one_token_rotate_once_and_replay_the_rest,
    logout_revokes_one_family_or_all_of_an_account,
    logout_ends_the_named_session_or_all_and_records_its_account,
    concurrent_logouts_of_one_session_end_it_once,
    concurrent_ends_of_one_session_end_it_once,
    concurrent_endings_of_an_accounts_sessions_all_succeed,
    concurrent_logouts_of_all_from_each_session_end_them_once,
    added_codes_live_side_by_side_and_each_counts_its_tries,
    replacing_a_code_drops_its_waiting_mail,
    completing_a_registration_applies_it_and_voids_the_others,
    concurrent_completions_of_one_registration_have_one_winner,
    a_registration_of_a_deactivated_account_is_not_completed,
    a_new_account_is_stored_with_its_first_code_or_not_at_all,
    each_change_records_its_event_in_its_transaction,
    deleting_an_account_erases_everything_personal,
    sessions_are_listed_with_their_origin_and_last_use_and_end_one_or_the_others,
    a_decoy_leaves_no_code_and_nothing_to_send,
    an_issue_counts_its_send_gives_back_and_queues_its_notice_or_writes_nothing,
    concurrent_issues_of_one_address_send_exactly_one,
    a_reset_voids_registrations_still_waiting_for_their_code,
    a_session_ends_at_its_family_end_however_often_refreshed,
);

/// Queued mail holds live codes: on disk (database file and its WAL) only sealed
/// bodies, and once a message is sent nothing of it stays readable in free pages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_keeps_no_code_in_plaintext_on_disk() {
    use chrono::{Duration, Utc};
    use passcode_domain::ports::{Mail, OtpStore, Outbox};
    use passcode_domain::{CodeHash, EmailAddress, OtpCode, OtpPurpose};
    let (store, dir) = sqlite().await;
    let to = EmailAddress::parse("ada@example.com").unwrap();
    let now = Utc::now();
    let otp = passcode_domain::otp::NewOtp {
        id: uuid::Uuid::new_v4(),
        email: to.clone(),
        purpose: OtpPurpose::VerifyEmail,
        code_hash: CodeHash::from_bytes(vec![1; 32]),
        created_at: now,
        expires_at: now + Duration::minutes(10),
        registration: None,
        account: None,
    };
    let mail = Mail::Code {
        to,
        full_name: "Zebediah Quuxington".into(),
        code: OtpCode::new("908172".into()),
        purpose: OtpPurpose::VerifyEmail,
        valid_for: Duration::minutes(10),
    };
    store
        .replace(&otp, &mail, &passcode_domain::ports::Issue::default())
        .await
        .unwrap();
    let on_disk = || {
        let mut bytes = Vec::new();
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            bytes.extend(std::fs::read(entry.unwrap().path()).unwrap());
        }
        bytes
    };
    let contains = |haystack: &[u8], needle: &str| {
        haystack
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
    };
    let bytes = on_disk();
    assert!(!contains(&bytes, "908172"), "the code is sealed at rest");
    assert!(!contains(&bytes, "Quuxington"), "the whole body is sealed");
    // The worker opens it with the same key.
    let claimed = store.claim(now, Duration::seconds(60), 10).await.unwrap();
    assert!(matches!(&claimed[0].mail, Mail::Code { code, .. } if code.expose() == "908172"));
}

/// A body sealed under another key (another `otp.secret`) fails that message alone,
/// with the reason kept; the other messages are still delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_sealed_under_another_key_fails_alone() {
    use chrono::{Duration, Utc};
    use passcode_domain::EmailAddress;
    use passcode_domain::ports::{Mail, Outbox, OutboxStatus};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.db");
    let one = SqliteStore::connect(&DatabaseSettings::sqlite(&path)).unwrap();
    one.migrate().await.unwrap();
    let other = SqliteStore::connect(&DatabaseSettings::sqlite(&path)).unwrap();
    let notice = |to: &str| Mail::PasswordChanged {
        to: EmailAddress::parse(to).unwrap(),
        full_name: "Ada".into(),
    };
    let now = Utc::now();
    one.enqueue(&notice("a@example.com"), now, None)
        .await
        .unwrap();
    other
        .enqueue(&notice("b@example.com"), now, None)
        .await
        .unwrap();
    let claimed = one.claim(now, Duration::seconds(60), 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].mail.recipient().as_str(), "a@example.com");
    let failed: Vec<_> = one
        .pending(10)
        .await
        .unwrap()
        .into_iter()
        .filter(|entry| entry.status == OutboxStatus::Failed)
        .collect();
    assert_eq!(failed.len(), 1);
    assert!(
        failed[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("otp.secret")
    );
}

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
    store.create(&user, None).await.unwrap();
    assert!(store.migrate().await.unwrap().is_empty());
    assert!(store.find_by_id(user.id).await.unwrap().is_some());
}

/// Four instances migrating one empty database at once: all succeed, and each
/// migration is applied once in all (the servers' migration lock).
async fn concurrent_migrations_apply_once<S, F>(connect: F, backend: &str)
where
    S: Send + 'static,
    F: Fn() -> S,
    S: MigratingStore,
{
    let runs: Vec<_> = (0..4)
        .map(|_| {
            let store = connect();
            tokio::spawn(async move { store.run_migrations().await })
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
    let migrations = std::fs::read_dir(format!(
        "{}/../../migrations/{backend}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
    .count();
    assert_eq!(applied, migrations, "each migration is applied once in all");
}

/// The stores' `migrate`, for the test above.
trait MigratingStore {
    fn run_migrations(&self) -> impl Future<Output = anyhow::Result<Vec<String>>> + Send;
}

impl MigratingStore for PgStore {
    fn run_migrations(&self) -> impl Future<Output = anyhow::Result<Vec<String>>> + Send {
        self.migrate()
    }
}

impl MigratingStore for MysqlStore {
    fn run_migrations(&self) -> impl Future<Output = anyhow::Result<Vec<String>>> + Send {
        self.migrate()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_concurrent_migrations_apply_once_and_all_succeed() {
    let database = TestDatabase::create("contract").await;
    let url = database.url().to_owned();
    concurrent_migrations_apply_once(
        || PgStore::connect(&DatabaseSettings::new(url.clone())).unwrap(),
        "postgres",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_concurrent_migrations_apply_once_and_all_succeed() {
    let database = TestDatabase::mariadb("contract").await;
    let url = database.url().to_owned();
    concurrent_migrations_apply_once(
        || MysqlStore::connect(&DatabaseSettings::new(url.clone())).unwrap(),
        "mysql",
    )
    .await;
}
