//! The migration to one row per session (`*_session_tokens`), on every backend: a
//! database of a row per token, migrated, still rotates its live tokens, replays the
//! token just replaced within the grace window, supersedes an older one and refuses a
//! revoked family; reverted, it has a row per token again.

/// A token row as the reverted migration leaves it.
#[derive(diesel::QueryableByName, Debug, PartialEq)]
pub(crate) struct RevertedToken {
    #[diesel(sql_type = diesel::sql_types::Binary)]
    pub token_hash: Vec<u8>,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub family_id: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
    pub spent_at: Option<i64>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
    pub revoked_at: Option<i64>,
}

/// The time of the first rotation below, in milliseconds.
pub(crate) const NOW_MS: i64 = 1_800_000_000_000;

/// An account, a session with a token spent a minute ago, one spent two seconds ago and
/// the live one, and a revoked session; `blob(byte)` writes a one-byte hash as the
/// dialect's literal.
pub(crate) fn rows_per_token(blob: impl Fn(u8) -> String) -> String {
    let (user, live, revoked) = ids();
    let (far, older, recent) = (NOW_MS + 86_400_000, NOW_MS - 60_000, NOW_MS - 2_000);
    let token = |hash: u8, family, spent: Option<(i64, &str)>, revoked_at: Option<i64>| {
        let (spent_at, access, refresh, issued) = match spent {
            Some((at, n)) => (
                at.to_string(),
                format!("'a{n}'"),
                format!("'r{n}'"),
                at.to_string(),
            ),
            None => ("NULL".into(), "NULL".into(), "NULL".into(), "NULL".into()),
        };
        let revoked_at = revoked_at.map_or("NULL".into(), |at| at.to_string());
        format!(
            "({}, '{family}', '{user}', {far}, {spent_at}, {revoked_at}, {access}, {refresh}, \
             {issued}, 0, {far})",
            blob(hash)
        )
    };
    format!(
        "INSERT INTO users (id, email, full_name, password_hash, email_verified, is_active, \
             created_at, updated_at, tokens_valid_after) \
         VALUES ('{user}', 'ada@example.com', 'Ada', 'x', TRUE, TRUE, 0, 0, 0); \
         INSERT INTO sessions (family_id, user_id, created_at, last_used_at) \
         VALUES ('{live}', '{user}', 0, 0), ('{revoked}', '{user}', 0, 0); \
         INSERT INTO refresh_tokens (token_hash, family_id, user_id, expires_at, spent_at, \
             revoked_at, successor_access_jti, successor_refresh_jti, successor_issued_at, \
             created_at, family_expires_at) VALUES {}, {}, {}, {};",
        token(0, live, Some((older, "1")), None),
        token(1, live, Some((recent, "2")), None),
        token(2, live, None, None),
        token(5, revoked, None, Some(older)),
    )
}

/// The account, the live session and the revoked one.
pub(crate) fn ids() -> (uuid::Uuid, uuid::Uuid, uuid::Uuid) {
    (
        uuid::Uuid::from_u128(1),
        uuid::Uuid::from_u128(2),
        uuid::Uuid::from_u128(3),
    )
}

/// What the migrated store answers.
pub(crate) async fn check_migrated(store: &impl passcode_domain::ports::RefreshTokenStore) {
    use passcode_domain::ports::{NewRefreshToken, Rotation, SignedFor, TokenIds};
    use passcode_domain::{EmailAddress, RequestContext, TokenSubject, UserId};
    let (user, live, revoked) = ids();
    let now = crate::time::from_millis(NOW_MS);
    let signed_for = SignedFor {
        subject: TokenSubject {
            user_id: UserId(user),
            email: EmailAddress::parse("ada@example.com").unwrap(),
            email_verified: true,
        },
        presented_issued_at: now,
    };
    let rotate = async |presented: u8, session: uuid::Uuid| {
        let successor = NewRefreshToken {
            token_hash: vec![9],
            family_id: session,
            user_id: UserId(user),
            expires_at: now + chrono::Duration::days(1),
            created_at: now,
            family_expires_at: now + chrono::Duration::days(30),
            origin: RequestContext::default(),
        };
        let ids = TokenIds {
            session_id: session,
            access_jti: "a9".into(),
            refresh_jti: "r9".into(),
            issued_at: now,
        };
        let grace = chrono::Duration::seconds(10);
        store
            .rotate(&[presented], now, grace, &successor, &ids, &signed_for)
            .await
            .unwrap()
    };
    let replayed = TokenIds {
        session_id: live,
        access_jti: "a2".into(),
        refresh_jti: "r2".into(),
        issued_at: now - chrono::Duration::seconds(2),
    };
    assert_eq!(rotate(1, live).await, Rotation::Replayed { ids: replayed });
    assert_eq!(rotate(0, live).await, Rotation::Superseded);
    assert_eq!(rotate(5, revoked).await, Rotation::Refused);
    let sessions = store.sessions(UserId(user), now).await.unwrap();
    assert_eq!(sessions.iter().map(|s| s.id).collect::<Vec<_>>(), [live]);
    assert_eq!(rotate(2, live).await, Rotation::Rotated);
}

/// The token rows the reverted migration writes back: the live session's last spent
/// token and its live one, and the revoked session's token.
pub(crate) fn reverted() -> Vec<RevertedToken> {
    let (_, live, revoked) = ids();
    let token = |hash: u8, family: uuid::Uuid, spent_at, revoked_at| RevertedToken {
        token_hash: vec![hash],
        family_id: family.to_string(),
        spent_at,
        revoked_at,
    };
    vec![
        token(2, live, Some(NOW_MS), None),
        token(5, revoked, None, Some(NOW_MS - 60_000)),
        token(9, live, None, None),
    ]
}

/// The test, for a backend: `$conn` a synchronous connection type, `$migrations` its
/// embedded migrations, `$database` an async block giving a guard and the URL of an
/// empty database, `$store` a store on a URL, `$blob` the dialect's one-byte literal,
/// `$setup` statements each synchronous connection runs first, if any.
macro_rules! session_tokens_migration_test {
    ($conn:ty, $migrations:expr, $database:expr, $store:expr, $blob:expr, $setup:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn sessions_migrate_from_a_row_per_token_and_back() {
            use diesel::connection::SimpleConnection as _;
            use diesel::migration::MigrationSource as _;
            use diesel_migrations::MigrationHarness as _;
            use $crate::migration_test::{RevertedToken, check_migrated, reverted, rows_per_token};

            let (_guard, url) = $database;
            let before = url.clone();
            tokio::task::spawn_blocking(move || {
                let mut conn = <$conn as diesel::Connection>::establish(&before).unwrap();
                if let Some(setup) = $setup {
                    conn.batch_execute(setup).unwrap();
                }
                let migrations = $migrations.migrations().unwrap();
                let (last, earlier) = migrations.split_last().unwrap();
                assert!(last.name().to_string().ends_with("_session_tokens"));
                diesel::migration::MigrationConnection::setup(&mut conn).unwrap();
                for migration in earlier {
                    conn.run_migration(migration.as_ref()).unwrap();
                }
                conn.batch_execute(&rows_per_token($blob)).unwrap();
            })
            .await
            .unwrap();

            let store = ($store)(url.as_str());
            store.migrate().await.unwrap();
            check_migrated(&store).await;
            drop(store);

            let tokens = tokio::task::spawn_blocking(move || {
                let mut conn = <$conn as diesel::Connection>::establish(&url).unwrap();
                if let Some(setup) = $setup {
                    conn.batch_execute(setup).unwrap();
                }
                conn.revert_last_migration($migrations).unwrap();
                diesel::RunQueryDsl::load::<RevertedToken>(
                    diesel::sql_query(
                        "SELECT token_hash, family_id, spent_at, revoked_at FROM refresh_tokens \
                         ORDER BY token_hash",
                    ),
                    &mut conn,
                )
                .unwrap()
            })
            .await
            .unwrap();
            assert_eq!(tokens, reverted());
        }
    };
}
pub(crate) use session_tokens_migration_test;
