//! The statements that are written differently per SQL dialect. SQLite and PostgreSQL
//! share these (`RETURNING`, `ON CONFLICT ... DO UPDATE ... WHERE`), but for the
//! outbox's claim, a parameter (PostgreSQL skips rows another claim has locked);
//! MariaDB has neither clause and writes its own `mod dialect` (`mysql.rs`).
//!
//! Every function runs on the caller's connection, inside the caller's transaction
//! if it has one.

macro_rules! returning_dialect {
    ($claim_sql:expr) => {
        mod dialect {
            use super::Conn;
            use diesel::prelude::*;
            use diesel_async::RunQueryDsl;
            use $crate::cached::CachedExt as _;
            use $crate::outbox_rows::ClaimedRow;

            /// Counts one event for `key` unless its window is full or its cooldown
            /// runs (see `acquire_query!`): 1 if counted, 0 if refused.
            pub(crate) async fn acquire(
                conn: &mut Conn,
                key: &str,
                now_ms: i64,
                window_ended: i64,
                limit: i32,
                cooled_down: i64,
            ) -> QueryResult<usize> {
                $crate::rows::acquire_query!(key, now_ms, window_ended, limit, cooled_down)
                    .cached()
                    .execute(conn)
                    .await
            }

            /// Leases up to `max` due messages until `lease_until`.
            pub(crate) async fn claim(
                conn: &mut Conn,
                lease_until: i64,
                now_ms: i64,
                max: i32,
            ) -> QueryResult<Vec<ClaimedRow>> {
                use diesel::sql_types::{BigInt, Integer};
                diesel::sql_query($claim_sql)
                    .bind::<BigInt, _>(lease_until)
                    .bind::<BigInt, _>(now_ms)
                    .bind::<Integer, _>(max)
                    .cached()
                    .load(conn)
                    .await
            }

            /// Deletes the limit state keyed by an address (see `DELETE_ADDRESS_LIMITS_SQL`).
            pub(crate) async fn delete_address_limits(
                conn: &mut Conn,
                address: &str,
                user: &str,
            ) -> QueryResult<usize> {
                use $crate::cached::CachedExt as _;
                $crate::rows::delete_address_limits_query!(address, user)
                    .cached()
                    .execute(conn)
                    .await
            }
        }
    };
}

pub(crate) use returning_dialect;
