//! A writer for PostgreSQL's binary COPY format, streamed in bounded chunks.
//!
//! Why binary COPY: it is the fastest way into PostgreSQL (no SQL parsing,
//! no text escaping, one round trip per table), and it runs inside a normal
//! transaction, so a batch and its cursor update commit or vanish together.
//!
//! What it promises: rows are encoded exactly as PostgreSQL's binary format
//! expects (big-endian, `timestamptz` as microseconds since 2000-01-01 UTC,
//! `-1` length for NULL); memory stays below `COPY_CHUNK_BYTES` plus one row,
//! whatever the number of rows; the number of rows PostgreSQL reports is
//! checked against the number sent.
//!
//! Format reference: <https://www.postgresql.org/docs/current/sql-copy.html>
//! ("Binary Format").

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::SinkExt;
use tokio_postgres::Transaction;

/// Bytes buffered before a chunk is handed to the connection. Large enough
/// to amortise the per-message cost, small enough to keep memory flat.
pub const COPY_CHUNK_BYTES: usize = 256 * 1024;

/// The fixed 11-byte signature that opens every binary COPY stream.
const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

/// Milliseconds from the Unix epoch to PostgreSQL's epoch (2000-01-01 UTC).
const POSTGRES_EPOCH_UNIX_MS: i64 = 946_684_800_000;

/// Why a COPY failed.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("COPY into {table}: {}", crate::export::postgres_error_text(source))]
    Postgres {
        table: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("COPY into {table} stored {stored_rows} rows, {sent_rows} were sent")]
    RowCount {
        table: &'static str,
        sent_rows: u64,
        stored_rows: u64,
    },
}

/// A row type that knows its table and how to encode its fields.
pub trait CopyRow {
    const TABLE: &'static str;
    /// Column names, in the order `encode` writes the fields.
    const COLUMNS: &'static [&'static str];
    fn encode(&self, row: &mut RowEncoder<'_>);
}

impl<T: CopyRow> CopyRow for &T {
    const TABLE: &'static str = T::TABLE;
    const COLUMNS: &'static [&'static str] = T::COLUMNS;
    fn encode(&self, row: &mut RowEncoder<'_>) {
        (**self).encode(row);
    }
}

/// Writes the fields of one row. Every method writes one field.
pub struct RowEncoder<'a> {
    buffer: &'a mut BytesMut,
    fields_written: usize,
}

impl RowEncoder<'_> {
    pub fn int8(&mut self, value: i64) {
        self.field_length(8);
        self.buffer.put_i64(value);
    }

    pub fn int4(&mut self, value: i32) {
        self.field_length(4);
        self.buffer.put_i32(value);
    }

    pub fn text(&mut self, value: &str) {
        // Row texts are short (ids of at most 64 bytes, names); a text over
        // i32::MAX bytes cannot exist in memory here.
        let length = i32::try_from(value.len()).expect("text field shorter than 2 GiB");
        self.field_length(length);
        self.buffer.put_slice(value.as_bytes());
    }

    pub fn text_or_null(&mut self, value: Option<&str>) {
        match value {
            Some(text) => self.text(text),
            None => self.null(),
        }
    }

    /// A `timestamptz` from milliseconds since the Unix epoch.
    pub fn timestamp_unix_ms(&mut self, unix_ms: i64) {
        let micros = unix_ms
            .saturating_sub(POSTGRES_EPOCH_UNIX_MS)
            .saturating_mul(1000);
        self.int8(micros);
    }

    pub fn null(&mut self) {
        self.field_length(-1);
    }

    fn field_length(&mut self, length: i32) {
        self.buffer.put_i32(length);
        self.fields_written += 1;
    }
}

/// The binary COPY stream of one table, built chunk by chunk.
pub struct CopyEncoder {
    buffer: BytesMut,
    columns: usize,
    rows: u64,
}

impl CopyEncoder {
    /// Starts a stream for rows of `columns` fields.
    pub fn new(columns: usize) -> CopyEncoder {
        assert!(columns > 0 && columns <= i16::MAX as usize);
        let mut buffer = BytesMut::with_capacity(COPY_CHUNK_BYTES + 4096);
        buffer.put_slice(SIGNATURE);
        buffer.put_i32(0); // flags: no OIDs
        buffer.put_i32(0); // header extension length
        CopyEncoder {
            buffer,
            columns,
            rows: 0,
        }
    }

    pub fn push<R: CopyRow>(&mut self, row: &R) {
        assert_eq!(R::COLUMNS.len(), self.columns);
        self.buffer.put_i16(self.columns as i16);
        let mut encoder = RowEncoder {
            buffer: &mut self.buffer,
            fields_written: 0,
        };
        row.encode(&mut encoder);
        // A row with the wrong number of fields would corrupt the stream:
        // that is a bug in an `encode`, never an operating error.
        assert_eq!(encoder.fields_written, self.columns, "{}", R::TABLE);
        self.rows += 1;
    }

    /// The bytes encoded so far, once they fill a chunk.
    pub fn take_full_chunk(&mut self) -> Option<Bytes> {
        if self.buffer.len() >= COPY_CHUNK_BYTES {
            Some(self.buffer.split().freeze())
        } else {
            None
        }
    }

    /// The rest of the stream, with the end-of-data trailer.
    pub fn finish(mut self) -> (Bytes, u64) {
        self.buffer.put_i16(-1);
        (self.buffer.freeze(), self.rows)
    }
}

/// The `COPY ... FROM STDIN` statement for `R`.
pub fn copy_statement<R: CopyRow>() -> String {
    format!(
        "COPY {} ({}) FROM STDIN (FORMAT binary)",
        R::TABLE,
        R::COLUMNS.join(", ")
    )
}

/// Copies `rows` into `R::TABLE` within `transaction`; returns the row count.
pub async fn copy_rows<R, I>(transaction: &Transaction<'_>, rows: I) -> Result<u64, CopyError>
where
    R: CopyRow,
    I: IntoIterator<Item = R>,
{
    let postgres = |source| CopyError::Postgres {
        table: R::TABLE,
        source,
    };
    let sink = transaction
        .copy_in::<_, Bytes>(&copy_statement::<R>())
        .await
        .map_err(postgres)?;
    futures_util::pin_mut!(sink);
    let mut encoder = CopyEncoder::new(R::COLUMNS.len());
    for row in rows {
        encoder.push(&row);
        if let Some(chunk) = encoder.take_full_chunk() {
            sink.send(chunk).await.map_err(postgres)?;
        }
    }
    let (rest, sent_rows) = encoder.finish();
    sink.send(rest).await.map_err(postgres)?;
    let stored_rows = sink.as_mut().finish().await.map_err(postgres)?;
    if stored_rows != sent_rows {
        return Err(CopyError::RowCount {
            table: R::TABLE,
            sent_rows,
            stored_rows,
        });
    }
    Ok(stored_rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Pair {
        id: i64,
        name: Option<&'static str>,
    }

    impl CopyRow for Pair {
        const TABLE: &'static str = "pairs";
        const COLUMNS: &'static [&'static str] = &["id", "name"];
        fn encode(&self, row: &mut RowEncoder<'_>) {
            row.int8(self.id);
            row.text_or_null(self.name);
        }
    }

    #[test]
    fn stream_matches_the_documented_binary_format() {
        let mut encoder = CopyEncoder::new(2);
        encoder.push(&Pair {
            id: 1,
            name: Some("ab"),
        });
        encoder.push(&Pair { id: -2, name: None });
        let (bytes, rows) = encoder.finish();
        assert_eq!(rows, 2);
        let mut expected = Vec::new();
        expected.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
        expected.extend_from_slice(&[0, 2, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 1]);
        expected.extend_from_slice(&[0, 0, 0, 2, b'a', b'b']);
        expected.extend_from_slice(&[0, 2, 0, 0, 0, 8]);
        expected.extend_from_slice(&(-2i64).to_be_bytes());
        expected.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
        expected.extend_from_slice(&[0xff, 0xff]);
        assert_eq!(&bytes[..], &expected[..]);
    }

    #[test]
    fn timestamps_count_microseconds_from_2000() {
        let mut buffer = BytesMut::new();
        let mut row = RowEncoder {
            buffer: &mut buffer,
            fields_written: 0,
        };
        row.timestamp_unix_ms(POSTGRES_EPOCH_UNIX_MS + 1_500);
        row.timestamp_unix_ms(i64::MIN);
        assert_eq!(row.fields_written, 2);
        assert_eq!(&buffer[4..12], &1_500_000i64.to_be_bytes());
        assert_eq!(&buffer[16..24], &i64::MIN.to_be_bytes());
    }

    #[test]
    fn chunks_stay_bounded() {
        let mut encoder = CopyEncoder::new(2);
        let mut chunks = 0;
        for id in 0..100_000 {
            encoder.push(&Pair {
                id,
                name: Some("a name of some length"),
            });
            if let Some(chunk) = encoder.take_full_chunk() {
                assert!(chunk.len() < COPY_CHUNK_BYTES + 128);
                chunks += 1;
            }
        }
        assert!(chunks > 5);
        assert_eq!(encoder.finish().1, 100_000);
    }

    #[test]
    fn statement_names_table_and_columns() {
        assert_eq!(
            copy_statement::<Pair>(),
            "COPY pairs (id, name) FROM STDIN (FORMAT binary)"
        );
    }
}
