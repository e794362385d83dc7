//! The analytics schema as numbered migrations, applied by the exporter.
//!
//! Why the exporter migrates: the tables must exist before the first batch,
//! and whoever writes the rows knows which shape they need; a separate tool
//! could drift from the code.
//!
//! What it promises: migrations apply in version order, each in its own
//! transaction with its `schema_migrations` row, so a migration is either
//! fully there or not at all; a transaction-scoped advisory lock serialises
//! concurrent exporters; running the migrations again changes nothing; a
//! database migrated by a newer exporter is refused rather than written to.
//! A migration, once released, is never edited: a change is a new version.

use tokio_postgres::Client;

/// Key of the advisory lock that serialises migrations (any fixed number
/// unlikely to be used by another application on the same database).
const MIGRATION_LOCK_KEY: i64 = 0x666c_6173_6873_616c; // "flashsal"

/// The stream name of the log in `export_cursor`.
pub const LOG_STREAM: &str = "log";

pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "tables and the export cursor",
        sql: V1_TABLES,
    },
    Migration {
        version: 2,
        name: "indexes for per-sale queries",
        sql: V2_INDEXES,
    },
    Migration {
        version: 3,
        name: "views sale_summary and checkout_funnel",
        sql: V3_VIEWS,
    },
    Migration {
        version: 4,
        name: "the log's identity in the export cursor",
        sql: V4_CURSOR_LOG_ID,
    },
    Migration {
        version: 5,
        name: "replayed purchases point to the purchase they repeat",
        sql: V5_REPLAYS,
    },
    Migration {
        version: 6,
        name: "sale settings from the log",
        sql: V6_SALE_OPENINGS,
    },
];

const V1_TABLES: &str = "
CREATE TABLE sales (
    sale_id     text PRIMARY KEY,
    starts_at   timestamptz NOT NULL,
    ends_at     timestamptz NOT NULL,
    total_items int NOT NULL,
    user_limit  int NOT NULL
);
CREATE TABLE items (
    item_id    text PRIMARY KEY,
    sale_id    text NOT NULL,
    item_index int NOT NULL,
    name       text NOT NULL,
    image_url  text NOT NULL
);
CREATE TABLE checkout_attempts (
    seq     bigint PRIMARY KEY,
    at      timestamptz NOT NULL,
    sale_id text NOT NULL,
    user_id text NOT NULL,
    item_id text NOT NULL,
    code    text NULL,
    outcome text NOT NULL
);
CREATE TABLE purchases (
    seq             bigint PRIMARY KEY,
    at              timestamptz NOT NULL,
    sale_id         text NULL,
    user_id         text NULL,
    code            text NOT NULL,
    outcome         text NOT NULL,
    total_purchased int NOT NULL,
    failed_count    int NOT NULL
);
CREATE TABLE purchase_items (
    purchase_seq bigint NOT NULL,
    item_id      text NOT NULL,
    outcome      text NOT NULL,
    PRIMARY KEY (purchase_seq, item_id)
);
CREATE TABLE export_cursor (
    stream     text PRIMARY KEY,
    last_seq   bigint NOT NULL,
    updated_at timestamptz NOT NULL
);
INSERT INTO export_cursor (stream, last_seq, updated_at) VALUES ('log', 0, now());
";

const V2_INDEXES: &str = "
CREATE INDEX checkout_attempts_sale_at ON checkout_attempts (sale_id, at);
CREATE INDEX purchases_sale_seq ON purchases (sale_id, seq);
CREATE INDEX items_sale ON items (sale_id, item_index);
";

/// `purchases` counts completed purchases only: a `replayed` row repeats
/// the answer of an earlier purchase and bought nothing new.
const V3_VIEWS: &str = "
CREATE VIEW sale_summary AS
WITH attempts AS (
    SELECT sale_id,
           count(*) AS checkout_attempts,
           count(DISTINCT user_id) AS distinct_users,
           count(DISTINCT code) FILTER (WHERE outcome = 'ok') AS carts
    FROM checkout_attempts
    GROUP BY sale_id
), bought AS (
    SELECT sale_id,
           count(*) AS purchases,
           sum(total_purchased) AS items_sold,
           min(at) FILTER (WHERE total_purchased > 0) AS first_sale_at,
           max(at) FILTER (WHERE total_purchased > 0) AS last_sale_at
    FROM purchases
    WHERE outcome = 'ok'
    GROUP BY sale_id
), running AS (
    SELECT sale_id, seq, at,
           sum(total_purchased) OVER (PARTITION BY sale_id ORDER BY seq) AS sold_so_far
    FROM purchases
    WHERE outcome = 'ok' AND total_purchased > 0
), sold_out AS (
    SELECT DISTINCT ON (r.sale_id) r.sale_id, r.at AS sold_out_at
    FROM running r JOIN sales s ON s.sale_id = r.sale_id
    WHERE r.sold_so_far >= s.total_items
    ORDER BY r.sale_id, r.seq
)
SELECT s.sale_id, s.starts_at, s.ends_at, s.total_items,
       coalesce(a.checkout_attempts, 0) AS checkout_attempts,
       coalesce(a.distinct_users, 0) AS distinct_users,
       coalesce(a.carts, 0) AS carts,
       coalesce(b.purchases, 0) AS purchases,
       coalesce(b.items_sold, 0) AS items_sold,
       b.first_sale_at, b.last_sale_at, o.sold_out_at
FROM sales s
LEFT JOIN attempts a ON a.sale_id = s.sale_id
LEFT JOIN bought b ON b.sale_id = s.sale_id
LEFT JOIN sold_out o ON o.sale_id = s.sale_id;

CREATE VIEW checkout_funnel AS
WITH checked_out AS (
    SELECT sale_id, count(DISTINCT user_id) AS users
    FROM checkout_attempts
    WHERE outcome = 'ok'
    GROUP BY sale_id
), purchased AS (
    SELECT sale_id, count(DISTINCT user_id) AS users
    FROM purchases
    WHERE outcome = 'ok' AND total_purchased > 0
    GROUP BY sale_id
)
SELECT s.sale_id,
       coalesce(c.users, 0) AS users_checked_out,
       coalesce(p.users, 0) AS users_purchased,
       CASE WHEN coalesce(c.users, 0) = 0 THEN NULL
            ELSE round(coalesce(p.users, 0)::numeric / c.users, 4)
       END AS conversion
FROM sales s
LEFT JOIN checked_out c ON c.sale_id = s.sale_id
LEFT JOIN purchased p ON p.sale_id = s.sale_id;
";

/// NULL until the first export after this migration adopts the log it
/// reads: a cursor from before log identities existed cannot know its log.
const V4_CURSOR_LOG_ID: &str = "
ALTER TABLE export_cursor ADD COLUMN log_id text NULL
    CHECK (log_id ~ '^[0-9a-f]{32}$');
";

/// Rows exported before this migration get the shape new ones have: a
/// replayed purchase bought nothing, has no items, and names its original.
const V5_REPLAYS: &str = "
ALTER TABLE purchases ADD COLUMN replay_of bigint NULL;
CREATE INDEX purchases_ok_code ON purchases (code) WHERE outcome = 'ok';
UPDATE purchases r
SET replay_of = (SELECT min(o.seq) FROM purchases o
                 WHERE o.code = r.code AND o.outcome = 'ok' AND o.seq < r.seq),
    total_purchased = 0,
    failed_count = 0
WHERE r.outcome = 'replayed';
DELETE FROM purchase_items i USING purchases p
WHERE p.seq = i.purchase_seq AND p.outcome = 'replayed';
";

/// Sales exported before this migration took the configured settings:
/// their `opened_seq` stays NULL, which says so.
const V6_SALE_OPENINGS: &str = "
CREATE TABLE sale_openings (
    seq         bigint PRIMARY KEY,
    at          timestamptz NOT NULL,
    sale_id     text NOT NULL,
    total_items bigint NOT NULL,
    user_limit  bigint NOT NULL
);
ALTER TABLE sales ADD COLUMN opened_seq bigint NULL;
";

/// Why the schema could not be brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error(
        "migration {version} ({name}) failed: {}",
        crate::export::postgres_error_text(source)
    )]
    Failed {
        version: i32,
        name: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error(
        "the database has schema version {found}, newer than this exporter's {known}: upgrade the exporter"
    )]
    NewerSchema { found: i32, known: i32 },
}

/// Applies every migration the database lacks; returns the versions applied.
pub async fn migrate(client: &mut Client) -> Result<Vec<i32>, MigrationError> {
    let mut applied = Vec::new();
    for migration in MIGRATIONS {
        let failed = |source| MigrationError::Failed {
            version: migration.version,
            name: migration.name,
            source,
        };
        if apply(client, migration).await.map_err(failed)? {
            applied.push(migration.version);
        }
    }
    check_not_newer(client).await?;
    Ok(applied)
}

/// Applies one migration unless it is recorded already.
async fn apply(client: &mut Client, migration: &Migration) -> Result<bool, tokio_postgres::Error> {
    let transaction = client.transaction().await?;
    // The lock is held until commit or rollback: a second exporter waits
    // here and then finds the migration recorded. The NOTICE "already
    // exists" of every later run is noise, hence client_min_messages.
    transaction
        .batch_execute(&format!(
            "SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY});
             SET LOCAL client_min_messages = warning;
             CREATE TABLE IF NOT EXISTS schema_migrations (
                 version    int PRIMARY KEY,
                 applied_at timestamptz NOT NULL
             );"
        ))
        .await?;
    let recorded = transaction
        .query_opt(
            "SELECT 1 FROM schema_migrations WHERE version = $1",
            &[&migration.version],
        )
        .await?
        .is_some();
    if recorded {
        transaction.rollback().await?;
        return Ok(false);
    }
    transaction.batch_execute(migration.sql).await?;
    transaction
        .execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, now())",
            &[&migration.version],
        )
        .await?;
    transaction.commit().await?;
    tracing::info!(
        version = migration.version,
        name = migration.name,
        "applied analytics schema migration"
    );
    Ok(true)
}

async fn check_not_newer(client: &Client) -> Result<(), MigrationError> {
    let known = MIGRATIONS.last().map_or(0, |m| m.version);
    let found: Option<i32> = client
        .query_one("SELECT max(version) FROM schema_migrations", &[])
        .await
        .map_err(|source| MigrationError::Failed {
            version: known,
            name: "version check",
            source,
        })?
        .get(0);
    match found {
        Some(found) if found > known => Err(MigrationError::NewerSchema { found, known }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_dense_and_increasing() {
        for (index, migration) in MIGRATIONS.iter().enumerate() {
            assert_eq!(migration.version, index as i32 + 1, "{}", migration.name);
        }
    }

    #[test]
    fn tables_match_the_copy_rows() {
        use crate::export::copy::CopyRow;
        use crate::export::rows::*;
        fn check<R: CopyRow>() {
            let all: String = MIGRATIONS.iter().map(|m| m.sql).collect();
            let table_start = all
                .find(&format!("CREATE TABLE {} (", R::TABLE))
                .unwrap_or_else(|| panic!("table {}", R::TABLE));
            let table_end = table_start + all[table_start..].find(");").unwrap();
            let definition = &all[table_start..table_end];
            for column in R::COLUMNS {
                let added = format!("ALTER TABLE {} ADD COLUMN {column} ", R::TABLE);
                assert!(
                    definition.contains(&format!("\n    {column} ")) || all.contains(&added),
                    "{}.{column}",
                    R::TABLE
                );
            }
        }
        check::<CheckoutAttemptRow>();
        check::<PurchaseRow>();
        check::<PurchaseItemRow>();
        check::<ItemRow>();
        check::<SaleOpeningRow>();
    }
}
