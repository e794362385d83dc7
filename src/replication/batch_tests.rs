use proptest::prelude::*;

use super::*;

fn sample() -> Batch {
    Batch {
        epoch: 7,
        batch_number: 42,
        first_seq: 1001,
        records: vec![b"first record".to_vec(), Vec::new(), vec![0xff; 300]],
    }
}

/// `body` with its CRC recomputed, as a writer of another format would.
fn with_fresh_crc(mut bytes: Vec<u8>) -> Vec<u8> {
    let body_len = bytes.len() - CRC_BYTES;
    let crc = crc32fast::hash(&bytes[..body_len]);
    bytes[body_len..].copy_from_slice(&crc.to_le_bytes());
    bytes
}

#[test]
fn a_batch_survives_a_round_trip() {
    let batch = sample();
    let bytes = batch.encode().unwrap();
    assert_eq!(Batch::decode(&bytes).unwrap(), batch);
    assert_eq!(batch.last_seq(), 1003);
}

#[test]
fn every_damaged_byte_is_refused() {
    let bytes = sample().encode().unwrap();
    for index in 0..bytes.len() {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut damaged = bytes.clone();
            damaged[index] ^= flip;
            assert!(
                Batch::decode(&damaged).is_err(),
                "byte {index} xor {flip:#04x} was accepted"
            );
        }
    }
}

#[test]
fn every_truncation_is_refused() {
    let bytes = sample().encode().unwrap();
    for len in 0..bytes.len() {
        assert!(
            Batch::decode(&bytes[..len]).is_err(),
            "{len} bytes accepted"
        );
    }
}

#[test]
fn bytes_appended_after_a_batch_are_refused() {
    let mut bytes = sample().encode().unwrap();
    bytes.extend_from_slice(b"tail");
    assert!(Batch::decode(&bytes).is_err());
}

#[test]
fn a_future_format_version_is_refused_even_with_a_valid_crc() {
    let mut bytes = sample().encode().unwrap();
    bytes[VERSION_OFFSET..VERSION_OFFSET + 2].copy_from_slice(&2u16.to_le_bytes());
    let bytes = with_fresh_crc(bytes);
    assert_eq!(Batch::decode(&bytes), Err(DecodeError::Version(2)));
}

#[test]
fn reserved_flags_are_refused_even_with_a_valid_crc() {
    let mut bytes = sample().encode().unwrap();
    bytes[FLAGS_OFFSET] = 1;
    let bytes = with_fresh_crc(bytes);
    assert_eq!(Batch::decode(&bytes), Err(DecodeError::Flags(1)));
}

#[test]
fn a_record_count_larger_than_the_bytes_is_refused_without_allocating_it() {
    let mut bytes = sample().encode().unwrap();
    bytes[RECORD_COUNT_OFFSET..RECORD_COUNT_OFFSET + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    let bytes = with_fresh_crc(bytes);
    assert_eq!(
        Batch::decode(&bytes),
        Err(DecodeError::Truncated { index: 3 })
    );
}

#[test]
fn a_record_longer_than_the_batch_is_refused() {
    let mut bytes = sample().encode().unwrap();
    let first_length = HEADER_BYTES;
    bytes[first_length..first_length + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    let bytes = with_fresh_crc(bytes);
    assert_eq!(
        Batch::decode(&bytes),
        Err(DecodeError::Truncated { index: 0 })
    );
}

#[test]
fn an_empty_batch_or_sequence_zero_is_neither_encoded_nor_decoded() {
    let empty = Batch {
        records: Vec::new(),
        ..sample()
    };
    assert_eq!(empty.encode(), Err(EncodeError::Empty));
    let zero = Batch {
        first_seq: 0,
        ..sample()
    };
    assert_eq!(zero.encode(), Err(EncodeError::FirstSeqZero));
    let mut bytes = sample().encode().unwrap();
    bytes[FIRST_SEQ_OFFSET..FIRST_SEQ_OFFSET + 8].copy_from_slice(&0u64.to_le_bytes());
    let bytes = with_fresh_crc(bytes);
    assert_eq!(
        Batch::decode(&bytes),
        Err(DecodeError::Invalid(EncodeError::FirstSeqZero))
    );
}

#[test]
fn sequence_numbers_that_would_overflow_are_refused() {
    let batch = Batch {
        first_seq: u64::MAX,
        ..sample()
    };
    assert!(matches!(
        batch.encode(),
        Err(EncodeError::SeqOverflow { .. })
    ));
    let last = Batch {
        first_seq: u64::MAX,
        records: vec![b"x".to_vec()],
        ..sample()
    };
    assert_eq!(Batch::decode(&last.encode().unwrap()).unwrap(), last);
}

#[test]
fn msg_ids_differ_by_epoch_and_by_batch_number() {
    let batch = sample();
    assert_eq!(batch.msg_id(), "e7-b42");
    assert_ne!(msg_id(7, 42), msg_id(8, 42));
    assert_ne!(msg_id(7, 42), msg_id(7, 43));
    assert_ne!(msg_id(1, 12), msg_id(11, 2));
}

fn batches() -> impl Strategy<Value = Batch> {
    (
        any::<u64>(),
        any::<u64>(),
        1..u64::MAX / 2,
        prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 1..16),
    )
        .prop_map(|(epoch, batch_number, first_seq, records)| Batch {
            epoch,
            batch_number,
            first_seq,
            records,
        })
}

proptest! {
    #[test]
    fn any_batch_survives_a_round_trip(batch in batches()) {
        let bytes = batch.encode().unwrap();
        prop_assert_eq!(Batch::decode(&bytes).unwrap(), batch);
    }

    #[test]
    fn decoding_any_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = Batch::decode(&bytes);
    }

    #[test]
    fn decoding_any_bytes_behind_a_valid_header_never_panics(
        tail in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let mut bytes = sample().encode().unwrap()[..HEADER_BYTES].to_vec();
        bytes.extend_from_slice(&tail);
        bytes.extend_from_slice(&[0; CRC_BYTES]);
        let bytes = with_fresh_crc(bytes);
        if let Ok(batch) = Batch::decode(&bytes) {
            prop_assert_eq!(batch.encode().unwrap(), bytes);
        }
    }
}
