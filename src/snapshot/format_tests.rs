//! The snapshot format's bytes: pinned by the golden file, and every kind
//! of damage refused without a panic.

use super::format::{self, SnapshotBody, SnapshotDamage, SNAPSHOT_HEADER_BYTES};
use crate::engine::{
    CartImage, EngineImage, ItemOutcome, PurchaseImage, PurchaseItem, SaleImage, UserImage,
};

/// A small body with every kind of field, pinned by the golden file.
pub(super) fn golden_body() -> SnapshotBody {
    SnapshotBody {
        log_id: 0x0123_4567_89ab_cdef_0011_2233_4455_6677,
        seq: 42,
        written_unix_ms: 1_795_291_260_000,
        image: EngineImage {
            time_floor_unix_ms: 1_795_291_259_999,
            sales: vec![SaleImage {
                sale_id: 2026112120,
                items_per_sale: 8,
                user_limit: 3,
                opened_seq: 1,
                items_sold: 1,
                users: vec![UserImage {
                    user_id: "alice".into(),
                    purchases: vec![PurchaseImage {
                        code: 0x00ff_0000_0000_0000_0000_0000_0000_0001,
                        seq: 7,
                        items: vec![
                            PurchaseItem {
                                item_index: 2,
                                outcome: ItemOutcome::Bought,
                            },
                            PurchaseItem {
                                item_index: 5,
                                outcome: ItemOutcome::SoldOut,
                            },
                        ],
                    }],
                    open_cart: Some(CartImage {
                        code: 0x00ff_0000_0000_0000_0000_0000_0000_0002,
                        items: vec![4],
                    }),
                }],
            }],
        },
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes of a snapshot are its format: if this fails, old snapshots
/// would no longer load. Bump `SNAPSHOT_VERSION` and add a golden file
/// instead of changing this one.
#[test]
fn snapshot_encoding_matches_golden_bytes() {
    let golden = include_str!("../../tests/golden/snapshot-v1.hex");
    let golden: String = golden.lines().filter(|l| !l.starts_with('#')).collect();
    let encoded = format::encode(&golden_body()).unwrap();
    assert_eq!(hex(&encoded), golden);
    assert_eq!(format::decode(&encoded).unwrap(), golden_body());
}

#[test]
fn decode_refuses_every_kind_of_damage_without_panicking() {
    let good = format::encode(&golden_body()).unwrap();
    let damage = |bytes: &[u8]| format::decode(bytes).unwrap_err();
    assert!(matches!(
        damage(&good[..10]),
        SnapshotDamage::TooShort { .. }
    ));
    assert!(matches!(
        damage(&good[..good.len() - 1]),
        SnapshotDamage::Truncated { .. }
    ));
    let mut longer = good.clone();
    longer.push(0);
    assert!(matches!(
        damage(&longer),
        SnapshotDamage::TrailingBytes { extra_bytes: 1 }
    ));
    let mut magic = good.clone();
    magic[0] ^= 1;
    assert_eq!(damage(&magic), SnapshotDamage::BadMagic);
    let mut version = good.clone();
    version[8] = 2;
    assert_eq!(
        damage(&version),
        SnapshotDamage::UnsupportedVersion { version: 2 }
    );
    for at in SNAPSHOT_HEADER_BYTES..good.len() {
        let mut flipped = good.clone();
        flipped[at] ^= 0x40;
        assert!(
            matches!(damage(&flipped), SnapshotDamage::Checksum { .. }),
            "{at}"
        );
    }
    for len in 0..good.len() {
        assert!(format::decode(&good[..len]).is_err());
    }
}

/// Enough users that a restore with several threads takes its batched
/// path: the engine encoded straight to bytes equals the encoding of its
/// image, and a restore with any thread count rebuilds the same engine.
#[test]
fn a_threaded_restore_of_many_users_rebuilds_the_same_engine_as_one_thread() {
    use crate::engine::fixtures::{sale_config, Fixture};
    use crate::snapshot::format::{BodyMeta, BodyReader};

    let f = Fixture::new(sale_config(40_000, 4));
    for n in 0..12_000u32 {
        let user = format!("user{n}");
        let cart = f.cart(&user, n * 3);
        if n % 3 == 0 {
            f.cart(&user, n * 3 + 1);
        }
        if n % 2 == 0 {
            assert!(f.purchase(cart.code).answer.is_ok());
        }
    }
    let meta = BodyMeta {
        log_id: 7,
        seq: 99,
        written_unix_ms: 0,
    };
    let bytes = format::encode_engine(&meta, &f.engine).unwrap();
    let whole = SnapshotBody {
        log_id: 7,
        seq: 99,
        written_unix_ms: 0,
        image: f.engine.image(),
    };
    assert_eq!(bytes, format::encode(&whole).unwrap());
    for threads in [1, 2, 3] {
        let engine = f.restarted_with(f.engine.config().clone());
        let (read, mut reader) = BodyReader::new(&bytes).unwrap();
        assert_eq!(read, meta);
        engine.restore_from(&mut reader, read.seq, threads).unwrap();
        reader.finish().unwrap();
        let audited = engine.audit().unwrap();
        assert_eq!(engine.audit_with_threads(threads).unwrap(), audited);
        assert_eq!(audited.users, 12_000);
        assert_eq!(engine.snapshot(), f.engine.snapshot(), "{threads} threads");
    }
}

/// A damaged user in the middle of a threaded restore stops it with an
/// error naming the user, never a panic or a hang.
#[test]
fn a_damaged_user_stops_a_threaded_restore_with_an_error() {
    use crate::engine::fixtures::{sale_config, Fixture};

    let f = Fixture::new(sale_config(40_000, 4));
    for n in 0..9_000u32 {
        f.cart(&format!("user{n}"), n);
    }
    let mut image = f.engine.image();
    let users = &mut image.sales[0].users;
    let twin = users[100].clone();
    users[6_000] = twin;
    let engine = f.restarted_with(f.engine.config().clone());
    let error = engine.restore_from(&mut image.source(), 5, 2).unwrap_err();
    assert!(error.why.contains("snapshot user"), "{error}");
}
