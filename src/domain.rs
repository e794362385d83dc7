//! The words of the contract as types: sale ids and their hours, item ids and
//! their deterministic names, user ids and checkout codes.
//!
//! Everything that comes from a client is parsed here, at the edge, into a
//! type that can only hold a valid value; the engine never sees an unchecked
//! string. Nothing here does I/O except `CheckoutCode::generate`, which reads
//! the operating system's secure random source.

use std::fmt;

use chrono::{DateTime, Datelike, TimeZone, Timelike, Utc};

/// Longest accepted user id, in characters (SPEC: 1 to 64).
pub const USER_ID_LENGTH_MAX: usize = 64;
/// Longest accepted item id or checkout code parameter, in bytes. Anything
/// longer is `invalid_request` before any lookup.
pub const PARAMETER_LENGTH_MAX: usize = 64;
/// Item indices are below this in every item id (the contract's syntax;
/// whether an index names an item of its sale is the engine's question).
pub const ITEM_INDEX_LIMIT: u32 = 1_000_000;
/// Seconds in one sale.
pub const SALE_DURATION_SECONDS: i64 = 3600;

/// Why a client's parameter was refused (400 `invalid_request`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("parameter `{0}` is missing or empty")]
    Missing(&'static str),
    #[error("parameter `{name}` is longer than {max} characters")]
    TooLong { name: &'static str, max: usize },
    #[error("parameter `{name}` is malformed: {why}")]
    Malformed {
        name: &'static str,
        why: &'static str,
    },
    /// Well formed, but names a sale far beyond any this server holds (a
    /// real hour whose `YYYYMMDDHH` does not fit the stored number): it is
    /// not known, like any other sale outside the window.
    #[error("parameter `{name}` names a sale that is not known")]
    Unknown { name: &'static str },
}

/// Whether ten digits `YYYYMMDDHH` name a real UTC hour of the years 1970
/// to 9999, counted without the `u32` a `SaleId` is stored in.
fn names_real_hour(digits: &str) -> bool {
    let Ok(n) = digits.parse::<u64>() else {
        return false;
    };
    let (year, month, day, hour) = (n / 1_000_000, n / 10_000 % 100, n / 100 % 100, n % 100);
    (1970..=9999).contains(&year)
        && Utc
            .with_ymd_and_hms(year as i32, month as u32, day as u32, hour as u32, 0, 0)
            .single()
            .is_some()
}

/// A sale: one UTC hour, named `YYYYMMDDHH`. Stored as that decimal number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SaleId(u32);

/// The last year a `YYYYMMDDHH` id fits in a `u32`.
const SALE_YEAR_MAX: u32 = 4293;
/// The id of the last hour of `SALE_YEAR_MAX`.
const SALE_ID_LAST: u32 = 4_293_123_123;

impl SaleId {
    /// The sale whose hour contains `at`.
    pub fn containing(at: DateTime<Utc>) -> SaleId {
        // A time outside the years an id can name (a forged log record, a
        // clock gone wild) must not overflow: it belongs to the last hour.
        let Ok(year @ 0..=SALE_YEAR_MAX) = u32::try_from(at.year()) else {
            return SaleId(SALE_ID_LAST);
        };
        SaleId(year * 1_000_000 + at.month() * 10_000 + at.day() * 100 + at.hour())
    }

    /// Parses `YYYYMMDDHH`; the text must name a real UTC hour.
    pub fn parse(text: &str) -> Result<SaleId, ParseError> {
        const NAME: &str = "sale id";
        if text.len() != 10 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseError::Malformed {
                name: NAME,
                why: "expected YYYYMMDDHH",
            });
        }
        let Ok(number) = text.parse::<u32>() else {
            return Err(if names_real_hour(text) {
                ParseError::Unknown { name: NAME }
            } else {
                ParseError::Malformed {
                    name: NAME,
                    why: "not a valid UTC hour",
                }
            });
        };
        SaleId::from_number(number).ok_or(ParseError::Malformed {
            name: NAME,
            why: "not a valid UTC hour",
        })
    }

    /// The sale with this `YYYYMMDDHH` number, if it names a real hour.
    pub fn from_number(number: u32) -> Option<SaleId> {
        let sale = SaleId(number);
        sale.checked_starts_at()?;
        Some(sale)
    }

    pub fn number(self) -> u32 {
        self.0
    }

    fn checked_starts_at(self) -> Option<DateTime<Utc>> {
        let n = self.0;
        let (year, month, day, hour) = (n / 1_000_000, n / 10_000 % 100, n / 100 % 100, n % 100);
        if !(1970..=9999).contains(&year) {
            return None;
        }
        Utc.with_ymd_and_hms(year as i32, month, day, hour, 0, 0)
            .single()
    }

    /// First instant of the sale (inclusive).
    pub fn starts_at(self) -> DateTime<Utc> {
        // Every SaleId is built by `containing` or `from_number`, both of which
        // only produce real hours.
        self.checked_starts_at()
            .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
    }

    /// First instant after the sale (exclusive).
    pub fn ends_at(self) -> DateTime<Utc> {
        self.starts_at() + chrono::Duration::seconds(SALE_DURATION_SECONDS)
    }

    /// The sale `hours` hours before this one.
    pub fn hours_before(self, hours: u32) -> SaleId {
        SaleId::containing(self.starts_at() - chrono::Duration::hours(i64::from(hours)))
    }

    /// Whole hours from `self` to `later` (negative when `later` is earlier).
    pub fn hours_until(self, later: SaleId) -> i64 {
        (later.starts_at() - self.starts_at()).num_hours()
    }
}

impl fmt::Display for SaleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:010}", self.0)
    }
}

/// Item `index` of `sale`, written `S-n` (decimal, no leading zeros).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ItemId {
    pub sale: SaleId,
    pub index: u32,
}

impl ItemId {
    /// Parses `S-n`. Whether `n` is below `items_per_sale` is the engine's
    /// question (404 `item_not_found`), not a syntax error.
    pub fn parse(text: &str) -> Result<ItemId, ParseError> {
        const NAME: &str = "id";
        check_present_and_short(NAME, text)?;
        let malformed = ParseError::Malformed {
            name: NAME,
            why: "expected SALEID-INDEX",
        };
        let (sale_text, index_text) = text.split_once('-').ok_or(malformed.clone())?;
        let sale = SaleId::parse(sale_text).map_err(|error| match error {
            ParseError::Unknown { .. } => ParseError::Unknown { name: NAME },
            _ => malformed.clone(),
        })?;
        let digits_only = !index_text.is_empty() && index_text.bytes().all(|b| b.is_ascii_digit());
        let leading_zero = index_text.len() > 1 && index_text.starts_with('0');
        if !digits_only || leading_zero || index_text.len() > 7 {
            return Err(malformed);
        }
        let index: u32 = index_text.parse().map_err(|_| malformed.clone())?;
        if index >= ITEM_INDEX_LIMIT {
            return Err(malformed);
        }
        Ok(ItemId { sale, index })
    }

    /// The item's display name: the same on every machine for the same id.
    pub fn name(self) -> String {
        const ADJECTIVES: [&str; 8] = [
            "Swift", "Quiet", "Bright", "Bold", "Lucky", "Golden", "Rapid", "Clever",
        ];
        const NOUNS: [&str; 8] = [
            "Lamp", "Kettle", "Backpack", "Watch", "Headset", "Blender", "Jacket", "Speaker",
        ];
        let hash = self.stable_hash();
        let adjective = ADJECTIVES[(hash % 8) as usize];
        let noun = NOUNS[(hash / 8 % 8) as usize];
        format!("{adjective} {noun} #{}", self.index)
    }

    /// Where the item's picture lives; deterministic like the name.
    pub fn image_url(self) -> String {
        format!(
            "https://img.flashsale.example/{}/{}.jpg",
            self.sale, self.index
        )
    }

    /// A fixed hash (SplitMix64) so names never depend on the process's
    /// random hasher seed.
    fn stable_hash(self) -> u64 {
        let mut z = (u64::from(self.sale.0) << 32 | u64::from(self.index))
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

impl fmt::Display for ItemId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.sale, self.index)
    }
}

/// A client's user id: 1 to 64 characters from `[A-Za-z0-9._@|:-]` (so
/// e-mail addresses and the `sub` of common identity providers fit).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UserId(Box<str>);

impl UserId {
    pub fn parse(text: &str) -> Result<UserId, ParseError> {
        const NAME: &str = "user_id";
        if text.is_empty() {
            return Err(ParseError::Missing(NAME));
        }
        if text.len() > USER_ID_LENGTH_MAX {
            return Err(ParseError::TooLong {
                name: NAME,
                max: USER_ID_LENGTH_MAX,
            });
        }
        let allowed = |b: u8| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@' | b'|' | b':')
        };
        if !text.bytes().all(allowed) {
            return Err(ParseError::Malformed {
                name: NAME,
                why: "allowed characters are A-Z a-z 0-9 . _ - @ | :",
            });
        }
        Ok(UserId(text.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A cart's checkout code: 128 bits from the operating system's secure
/// random source, written as 32 lowercase hex digits (URL-safe).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CheckoutCode(u128);

/// Hex digits in a rendered checkout code.
pub const CHECKOUT_CODE_LENGTH: usize = 32;

impl CheckoutCode {
    /// A fresh, unguessable code.
    pub fn generate() -> Result<CheckoutCode, getrandom::Error> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes)?;
        Ok(CheckoutCode(u128::from_le_bytes(bytes)))
    }

    /// Parses a client's `code` parameter. A syntactically valid code that no
    /// cart has is the engine's `checkout_not_found`, not a syntax error.
    pub fn parse(text: &str) -> Result<CheckoutCode, ParseError> {
        const NAME: &str = "code";
        check_present_and_short(NAME, text)?;
        let hex_lowercase = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
        if text.len() != CHECKOUT_CODE_LENGTH || !text.bytes().all(hex_lowercase) {
            return Err(ParseError::Malformed {
                name: NAME,
                why: "expected 32 lowercase hex digits",
            });
        }
        u128::from_str_radix(text, 16)
            .map(CheckoutCode)
            .map_err(|_| ParseError::Malformed {
                name: NAME,
                why: "expected 32 lowercase hex digits",
            })
    }

    pub fn from_u128(value: u128) -> CheckoutCode {
        CheckoutCode(value)
    }

    pub fn as_u128(self) -> u128 {
        self.0
    }
}

impl fmt::Display for CheckoutCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// A client's `code` parameter: 1 to 64 URL-safe characters. Only codes of
/// the server's own shape can name a cart; any other well-formed code was
/// never issued (404 `checkout_not_found`, and a log record like any
/// unknown code), whatever its shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PurchaseCode {
    Issued(CheckoutCode),
    Foreign(String),
}

impl PurchaseCode {
    pub fn parse(text: &str) -> Result<PurchaseCode, ParseError> {
        const NAME: &str = "code";
        check_present_and_short(NAME, text)?;
        let url_safe = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
        if !text.bytes().all(url_safe) {
            return Err(ParseError::Malformed {
                name: NAME,
                why: "allowed characters are A-Z a-z 0-9 - . _ ~",
            });
        }
        Ok(match CheckoutCode::parse(text) {
            Ok(code) => PurchaseCode::Issued(code),
            Err(_) => PurchaseCode::Foreign(text.to_string()),
        })
    }
}

impl fmt::Display for PurchaseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PurchaseCode::Issued(code) => code.fmt(f),
            PurchaseCode::Foreign(text) => f.write_str(text),
        }
    }
}

fn check_present_and_short(name: &'static str, text: &str) -> Result<(), ParseError> {
    if text.is_empty() {
        return Err(ParseError::Missing(name));
    }
    if text.len() > PARAMETER_LENGTH_MAX {
        return Err(ParseError::TooLong {
            name,
            max: PARAMETER_LENGTH_MAX,
        });
    }
    Ok(())
}

/// Where "now" comes from. The server uses the system clock; tests move a
/// manual clock across sale hours.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The system's UTC clock, optionally shifted by a fixed offset (operators
/// and end-to-end tests use the offset to rehearse an hour change).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock {
    pub offset_seconds: i64,
}

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::seconds(self.offset_seconds)
    }
}

/// A clock that only moves when told to.
#[derive(Debug)]
pub struct ManualClock {
    now: parking_lot::Mutex<DateTime<Utc>>,
}

impl ManualClock {
    pub fn new(now: DateTime<Utc>) -> ManualClock {
        ManualClock {
            now: parking_lot::Mutex::new(now),
        }
    }

    pub fn set(&self, now: DateTime<Utc>) {
        *self.now.lock() = now;
    }

    pub fn advance(&self, by: chrono::Duration) {
        *self.now.lock() += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).single().unwrap()
    }

    #[test]
    fn a_time_outside_the_nameable_years_does_not_overflow() {
        let last = SaleId::containing(at(4293, 12, 31, 23, 0, 0));
        assert_eq!(last.to_string(), "4293123123");
        assert_eq!(SaleId::containing(at(4294, 1, 1, 0, 0, 0)), last);
        assert_eq!(SaleId::containing(at(200_000, 6, 1, 0, 0, 0)), last);
        assert_eq!(SaleId::containing(at(-5, 6, 1, 0, 0, 0)), last);
        assert_eq!(last.starts_at(), at(4293, 12, 31, 23, 0, 0));
    }

    #[test]
    fn sale_hour_is_half_open() {
        let sale = SaleId::containing(at(2026, 11, 21, 20, 0, 0));
        assert_eq!(sale.to_string(), "2026112120");
        assert_eq!(SaleId::containing(at(2026, 11, 21, 20, 59, 59)), sale);
        assert_ne!(SaleId::containing(at(2026, 11, 21, 21, 0, 0)), sale);
        assert_eq!(sale.starts_at(), at(2026, 11, 21, 20, 0, 0));
        assert_eq!(sale.ends_at(), at(2026, 11, 21, 21, 0, 0));
        assert_eq!(sale.hours_before(21).to_string(), "2026112023");
        assert_eq!(sale.hours_until(SaleId::parse("2026112200").unwrap()), 4);
    }

    #[test]
    fn sale_id_rejects_impossible_hours() {
        for bad in [
            "2026113120",
            "2026112124",
            "2026130101",
            "0000010100",
            "20261121",
            "abcdefghij",
            "+026112120",
        ] {
            assert!(SaleId::parse(bad).is_err(), "{bad}");
        }
        assert!(SaleId::parse("2024022923").is_ok());
    }

    #[test]
    fn item_id_round_trips_and_rejects_leading_zeros() {
        let item = ItemId::parse("2026112120-42").unwrap();
        assert_eq!(item.index, 42);
        assert_eq!(item.to_string(), "2026112120-42");
        assert_eq!(ItemId::parse("2026112120-0").unwrap().index, 0);
        for bad in [
            "",
            "2026112120-",
            "2026112120-042",
            "2026112120--1",
            "2026112120-4a",
            "x-1",
            "2026112120-1234567890",
            "2026112120-1000000",
            "2026112120-99999999",
        ] {
            assert!(ItemId::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(ItemId::parse("2026112120-999999").unwrap().index, 999_999);
    }

    #[test]
    fn item_names_are_deterministic() {
        let item = ItemId::parse("2026112120-7").unwrap();
        assert_eq!(item.name(), item.name());
        assert!(item.name().ends_with("#7"));
        assert_eq!(
            item.image_url(),
            "https://img.flashsale.example/2026112120/7.jpg"
        );
    }

    #[test]
    fn user_id_follows_the_contract() {
        assert!(UserId::parse("alice.B_9-x").is_ok());
        assert!(UserId::parse("alice@example.com").is_ok());
        assert!(UserId::parse("auth0|5f7c:1").is_ok());
        assert!(UserId::parse(&"a".repeat(64)).is_ok());
        assert_eq!(UserId::parse(""), Err(ParseError::Missing("user_id")));
        assert!(matches!(
            UserId::parse(&"a".repeat(65)),
            Err(ParseError::TooLong { .. })
        ));
        for bad in ["a b", "é", "a/b", "a%20", "a\n"] {
            assert!(
                matches!(UserId::parse(bad), Err(ParseError::Malformed { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn checkout_codes_are_random_and_parse_back() {
        let a = CheckoutCode::generate().unwrap();
        let b = CheckoutCode::generate().unwrap();
        assert_ne!(a, b);
        let text = a.to_string();
        assert_eq!(text.len(), CHECKOUT_CODE_LENGTH);
        assert_eq!(CheckoutCode::parse(&text).unwrap(), a);
        assert!(
            CheckoutCode::parse(&text.to_uppercase()).is_err()
                || text.chars().all(|c| c.is_ascii_digit())
        );
        assert!(CheckoutCode::parse("zz").is_err());
    }

    #[test]
    fn a_well_formed_code_of_any_shape_is_a_code_not_a_syntax_error() {
        let issued = CheckoutCode::generate().unwrap();
        assert_eq!(
            PurchaseCode::parse(&issued.to_string()),
            Ok(PurchaseCode::Issued(issued))
        );
        for foreign in ["zz", "ABC", "a-b.c_d~e", &"f".repeat(64)] {
            assert_eq!(
                PurchaseCode::parse(foreign),
                Ok(PurchaseCode::Foreign(foreign.to_string())),
                "{foreign}"
            );
        }
        for bad in ["", "a b", "a/b", "é", &"f".repeat(65)] {
            assert!(PurchaseCode::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sale_ids_of_years_past_the_stored_range_are_unknown_not_malformed() {
        for text in ["4905053122", "9999123123"] {
            assert_eq!(
                SaleId::parse(text),
                Err(ParseError::Unknown { name: "sale id" })
            );
            let item = format!("{text}-0");
            assert_eq!(
                ItemId::parse(&item),
                Err(ParseError::Unknown { name: "id" })
            );
        }
        for text in ["9999123124", "5000023012", "9999999999"] {
            assert!(matches!(
                SaleId::parse(text),
                Err(ParseError::Malformed { .. })
            ));
        }
    }
}
