//! Prepared once per connection, not once per request.
//!
//! Diesel never caches the prepared statement of an `UPDATE` or of an upsert's
//! `ON CONFLICT DO UPDATE`, because a changeset of `Option` fields can change the SQL
//! from call to call. So every guess, rotation and budget upsert was parsed and
//! planned again: on PostgreSQL that was the server's largest single cost in a profile
//! of the wrong-code flood (`docs/performance.md`), and an extra round trip per
//! statement. [`Cached`] marks a statement as safe to cache; the cache is keyed by
//! the statement's SQL text and bind types (it has no static query id), so a
//! changeset whose SQL varies gets one cache entry per shape and is never confused
//! with another. Use it only on statements of a bounded number of shapes (not on an
//! `IN` list of varying length).
//!
//! On SQLite's synchronous API, `execute` hands Diesel a reference to the statement,
//! and Diesel's `QueryFragment` for `&T` does not forward the mark; a query (`load`,
//! `get_result`, so a `RETURNING` clause on a write) keeps it. The async backends'
//! `execute` keeps it too.

use diesel::backend::Backend;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::result::QueryResult;

/// A statement whose prepared form the connection may keep (see the module's docs).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cached<Q>(Q);

/// `.cached()` on any statement.
pub(crate) trait CachedExt: Sized {
    fn cached(self) -> Cached<Self> {
        Cached(self)
    }
}

impl<Q> CachedExt for Q {}

impl<Q, DB> QueryFragment<DB> for Cached<Q>
where
    DB: Backend,
    Q: QueryFragment<DB>,
{
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        self.0.walk_ast(pass)
    }

    fn is_safe_to_cache_prepared(&self, _backend: &DB) -> QueryResult<bool> {
        Ok(true)
    }
}

// No static id: the cache key is the SQL text itself.
impl<Q> QueryId for Cached<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q: Query> Query for Cached<Q> {
    type SqlType = Q::SqlType;
}

// SQLite runs diesel's synchronous API, whose `RunQueryDsl` is implemented per
// statement type (diesel-async's covers every type).
impl<Q, Conn> diesel::RunQueryDsl<Conn> for Cached<Q> {}
