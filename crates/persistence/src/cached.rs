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
//! Keyed by its SQL text, a cached statement still has its SQL built on every call, to
//! look it up: on SQLite, whose one writer runs every guess's statements, that was
//! about a tenth of the writer's CPU in a profile of the wrong-code flood. A statement
//! whose SQL is the same on every call from one place in the code takes
//! [`cached_here!`] instead, which keys it by that place (a type of its own), so Diesel
//! finds it without building its SQL. Only Diesel's own connections (SQLite's) skip the
//! SQL that way; diesel-async's PostgreSQL connection builds it regardless. Debug
//! builds check the promise on every call: the SQL built from one place must not
//! change.
//!
//! On SQLite's synchronous API, `execute` hands Diesel a reference to the statement,
//! and Diesel's `QueryFragment` for `&T` does not forward the mark; a query (`load`,
//! `get_result`, so a `RETURNING` clause on a write) keeps it. The async backends'
//! `execute` keeps it too.

use std::marker::PhantomData;

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

/// A statement whose SQL is the same on every call from one place in the code, keyed
/// by that place, `Here` (see the module's docs; made by [`cached_here!`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct CachedHere<Q, Here>(Q, PhantomData<Here>);

impl<Q, Here> CachedHere<Q, Here> {
    pub(crate) fn new(query: Q) -> Self {
        Self(query, PhantomData)
    }
}

/// `$query`, prepared once per connection and found again by this place in the code,
/// without building its SQL. Only for a statement whose SQL cannot change from call
/// to call: no `Option` in a changeset or an insert's values, no `IN` list, no boxed
/// query with conditional parts (debug builds check it).
macro_rules! cached_here {
    ($query:expr) => {{
        /// This place in the code: the key of the statement's prepared form.
        #[derive(Debug, Clone, Copy)]
        struct Here;
        $crate::cached::CachedHere::<_, Here>::new($query)
    }};
}
pub(crate) use cached_here;

impl<Q, Here, DB> QueryFragment<DB> for CachedHere<Q, Here>
where
    DB: Backend + 'static,
    DB::QueryBuilder: Default,
    Q: QueryFragment<DB>,
    Here: 'static,
{
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        self.0.walk_ast(pass)
    }

    fn is_safe_to_cache_prepared(&self, backend: &DB) -> QueryResult<bool> {
        #[cfg(debug_assertions)]
        same_sql_as_before::<Here, DB>(&self.0, backend)?;
        #[cfg(not(debug_assertions))]
        let _ = backend;
        Ok(true)
    }
}

/// Panics if `query`'s SQL differs from the SQL built at the same place before: a
/// misuse of `cached_here!`, which would run an earlier call's statement.
#[cfg(debug_assertions)]
fn same_sql_as_before<Here: 'static, DB>(
    query: &dyn QueryFragment<DB>,
    backend: &DB,
) -> QueryResult<()>
where
    DB: Backend + 'static,
    DB::QueryBuilder: Default,
{
    use std::any::TypeId;
    use std::collections::HashMap;
    use std::sync::{LazyLock, Mutex};

    use diesel::query_builder::QueryBuilder as _;

    static BUILT: LazyLock<Mutex<HashMap<(TypeId, TypeId), String>>> =
        LazyLock::new(Mutex::default);
    let mut builder = DB::QueryBuilder::default();
    query.to_sql(&mut builder, backend)?;
    let sql = builder.finish();
    let mut built = BUILT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let before = built
        .entry((TypeId::of::<Here>(), TypeId::of::<DB>()))
        .or_insert_with(|| sql.clone());
    assert_eq!(
        *before,
        sql,
        "cached_here! at {}: its SQL changed between calls",
        std::any::type_name::<Here>()
    );
    Ok(())
}

impl<Q, Here: 'static> QueryId for CachedHere<Q, Here> {
    type QueryId = Here;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<Q: Query, Here> Query for CachedHere<Q, Here> {
    type SqlType = Q::SqlType;
}

impl<Q, Here, Conn> diesel::RunQueryDsl<Conn> for CachedHere<Q, Here> {}

#[cfg(test)]
mod tests {
    use diesel::{Connection as _, RunQueryDsl as _, SqliteConnection};

    /// The same place in the code, with other values: the statement prepared by the
    /// first call answers the second.
    #[test]
    fn a_place_keeps_its_statement_for_other_values() {
        use diesel::IntoSql as _;
        use diesel::sql_types::Integer;
        let mut conn = SqliteConnection::establish(":memory:").unwrap();
        for n in [1, 7] {
            let doubled: i32 = cached_here!(diesel::select(n.into_sql::<Integer>() * 2))
                .get_result(&mut conn)
                .unwrap();
            assert_eq!(doubled, n * 2);
        }
    }

    /// A statement whose SQL changes from call to call is refused in debug builds
    /// rather than answered by the earlier call's statement.
    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "its SQL changed between calls")]
    fn a_place_whose_sql_changes_is_refused() {
        use diesel::sql_types::Integer;
        let mut conn = SqliteConnection::establish(":memory:").unwrap();
        for n in [1, 2] {
            let _: i32 = cached_here!(diesel::select(diesel::dsl::sql::<Integer>(&n.to_string())))
                .get_result(&mut conn)
                .unwrap();
        }
    }
}
