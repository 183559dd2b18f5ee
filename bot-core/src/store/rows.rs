//! Named rows: a statement's columns read by name into a private struct, which the area that
//! reads it maps to domain types (as atuin's `wrappers.rs` does). A column added to or moved in
//! a `SELECT` cannot shift another field, as it can in a tuple.
//!
//! `named_row!` writes the struct and its `sqlx::FromRow` for the `Any` driver. It stands in for
//! sqlx's `derive` feature, which would add sqlx's proc-macro crates (and a second build of
//! sqlx-core for the host) to every cold build for what is a dozen lines here.

/// A struct whose fields are read by their names from an `AnyRow`; the fields are as visible as
/// the struct (private, or shared within `store` as `pub(super)`):
///
/// ```ignore
/// named_row! {
///     struct LotRow { id: i64, remaining: i64 }
/// }
/// let lots: Vec<LotRow> = sqlx::query_as("SELECT id, remaining FROM lots").fetch_all(c).await?;
/// ```
macro_rules! named_row {
    ($(#[$meta:meta])* $vis:vis struct $name:ident { $($field:ident: $ty:ty),+ $(,)? }) => {
        $(#[$meta])*
        $vis struct $name {
            $($vis $field: $ty,)+
        }

        impl<'r> sqlx::FromRow<'r, sqlx::any::AnyRow> for $name {
            fn from_row(row: &'r sqlx::any::AnyRow) -> Result<Self, sqlx::Error> {
                use sqlx::Row as _;
                Ok($name {
                    $($field: row.try_get(stringify!($field))?,)+
                })
            }
        }
    };
}

pub(crate) use named_row;

named_row! {
    /// An account as stored: its kind and running totals (which only wallets keep; see
    /// `ledger.rs`).
    pub(super) struct AccountRow {
        id: i64,
        kind: String,
        debits_posted: i64,
        credits_posted: i64,
        debits_pending: i64,
        credits_pending: i64,
    }
}

#[cfg(test)]
mod tests {
    use crate::{Backend, store::testing::TestDb};

    named_row! {
        #[derive(Debug)]
        struct Pair { b: String, a: i64, c: Option<i64> }
    }

    #[tokio::test]
    async fn columns_are_read_by_name_whatever_their_order() {
        let db = TestDb::new(Backend::Sqlite, "named_rows")
            .await
            .expect("SQLite is always available");
        let store = db.store();
        let mut conn = store.reader().await.expect("a reader");
        let row: Pair = sqlx::query_as("SELECT 7 AS a, 'x' AS b, NULL AS c")
            .fetch_one(&mut *conn)
            .await
            .expect("the row reads");
        assert_eq!((row.a, row.b.as_str(), row.c), (7, "x", None));
        let missing = sqlx::query_as::<_, Pair>("SELECT 7 AS a, 'x' AS bee, NULL AS c")
            .fetch_one(&mut *conn)
            .await;
        assert!(
            matches!(missing, Err(sqlx::Error::ColumnNotFound(ref name)) if name == "b"),
            "{missing:?}"
        );
    }
}
