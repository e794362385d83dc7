//! `flashsale snapshot inspect PATH`: what a snapshot holds, for
//! operators (which records it covers, its log, and per sale the items
//! sold, users, open carts and purchases). PATH is a snapshot file, a
//! snapshots directory or a data directory; for a directory the newest
//! valid snapshot is shown and damaged newer ones are named.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use flashsale_wal::FsStorage;

use super::format::SnapshotBody;
use super::store::{self, StoreError};

/// Why there is nothing to show.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InspectError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no valid snapshot in {}", dir.display())]
    NoneValid { dir: PathBuf },
}

/// The report on the snapshot at or in `path`.
pub fn inspect(path: &Path) -> Result<String, InspectError> {
    if path.is_file() {
        let body = store::read(&FsStorage, path)?;
        return Ok(describe(&file_name(path), &body));
    }
    let nested = super::dir_in(path);
    let dir = if nested.is_dir() {
        nested
    } else {
        path.to_path_buf()
    };
    let mut report = String::new();
    for (_, file) in store::list(&FsStorage, &dir)?.iter().rev() {
        match store::read(&FsStorage, file) {
            Ok(body) => {
                report.push_str(&describe(&file_name(file), &body));
                return Ok(report);
            }
            Err(error) => {
                let _ = writeln!(
                    report,
                    "skipped {}: {}",
                    file_name(file),
                    crate::error_chain(&error)
                );
            }
        }
    }
    Err(InspectError::NoneValid { dir })
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map_or_else(String::new, |name| name.to_string_lossy().into_owned())
}

/// The report's text for one snapshot.
pub fn describe(name: &str, body: &SnapshotBody) -> String {
    let mut out = String::new();
    let written = chrono::DateTime::from_timestamp_millis(body.written_unix_ms)
        .map_or_else(|| "?".to_string(), |at| at.to_rfc3339());
    let _ = writeln!(out, "snapshot {name}");
    let _ = writeln!(out, "covers records up to {}", body.seq);
    let _ = writeln!(out, "log id {:032x}", body.log_id);
    let _ = writeln!(out, "written {written}");
    let _ = writeln!(out, "sales {}", body.image.sales.len());
    let (mut users, mut carts, mut purchases) = (0, 0, 0);
    for sale in &body.image.sales {
        let sale_carts = sale.users.iter().filter(|u| u.open_cart.is_some()).count();
        let sale_purchases: usize = sale.users.iter().map(|u| u.purchases.len()).sum();
        let _ = writeln!(
            out,
            "  sale {}: items {} (sold {}), user limit {}, opened at record {}, \
             users {}, open carts {}, purchases {}",
            sale.sale_id,
            sale.items_per_sale,
            sale.items_sold,
            sale.user_limit,
            sale.opened_seq,
            sale.users.len(),
            sale_carts,
            sale_purchases
        );
        users += sale.users.len();
        carts += sale_carts;
        purchases += sale_purchases;
    }
    let _ = writeln!(
        out,
        "total: users {users}, open carts {carts}, purchases {purchases}"
    );
    out
}
