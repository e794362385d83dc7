//! Random appends, rotations and reopens on real files: replay always
//! equals what was acknowledged, in order, with contiguous numbers.

mod support;

use flashsale_wal::Wal;
use proptest::prelude::*;
use support::{payload, replay, small_config};

#[derive(Debug, Clone)]
enum Op {
    Append { len: usize, wait: bool },
    Reopen,
    DeleteBelowHalf,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0usize..=200, any::<bool>()).prop_map(|(len, wait)| Op::Append { len, wait }),
        1 => Just(Op::Reopen),
        1 => Just(Op::DeleteBelowHalf),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn replay_after_random_appends_rotations_and_reopens_equals_what_was_acknowledged(
        ops in prop::collection::vec(op(), 1..80)
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(small_config(dir.path())).unwrap();
        let mut model: Vec<Vec<u8>> = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            match op {
                Op::Append { len, wait } => {
                    let body = payload(i as u64, *len);
                    let body = body[..(*len).min(body.len())].to_vec();
                    let seq = wal.append(&body).unwrap();
                    model.push(body);
                    prop_assert_eq!(seq, model.len() as u64);
                    if *wait {
                        wal.wait_durable(seq).unwrap();
                    }
                }
                Op::Reopen => {
                    drop(wal);
                    wal = Wal::open(small_config(dir.path())).unwrap();
                    prop_assert_eq!(wal.last_seq(), model.len() as u64);
                }
                Op::DeleteBelowHalf => {
                    wal.delete_segments_before(model.len() as u64 / 2).unwrap();
                }
            }
        }
        wal.close();
        drop(wal);
        let wal = Wal::open(small_config(dir.path())).unwrap();
        let first = wal.first_seq();
        let records = replay(&wal, first);
        prop_assert_eq!(records.len() as u64, model.len() as u64 + 1 - first);
        for record in records {
            prop_assert_eq!(&record.payload, &model[record.seq as usize - 1]);
        }
    }
}
