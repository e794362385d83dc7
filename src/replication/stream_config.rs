//! The stream's configuration: the one replication creates, and the
//! check of an existing stream (another node, or an operator, may have
//! created it).
//!
//! Promises: a stream that could lose or reorder acknowledged messages
//! (a limit that discards, memory storage, asynchronous persistence,
//! another subject, another replica count, sealed) is refused by name of
//! the first field that differs.

use std::time::Duration;

use async_nats::jetstream::stream;

use super::stream::{subject, OpenError, StreamSettings, DUPLICATE_WINDOW_SECONDS};

pub(crate) fn wanted_config(settings: &StreamSettings) -> stream::Config {
    stream::Config {
        name: settings.stream_name.clone(),
        description: Some("flashsale replicated log: one message per group-commit batch".into()),
        subjects: vec![subject(&settings.stream_name)],
        storage: stream::StorageType::File,
        num_replicas: settings.replicas,
        retention: stream::RetentionPolicy::Limits,
        // No limits: nothing acknowledged is ever discarded; were a limit
        // ever set, new messages would be refused, old ones kept.
        discard: stream::DiscardPolicy::New,
        max_messages: -1,
        max_bytes: -1,
        max_messages_per_subject: -1,
        max_age: Duration::ZERO,
        duplicate_window: Duration::from_secs(DUPLICATE_WINDOW_SECONDS),
        deny_delete: true,
        deny_purge: true,
        allow_direct: true,
        ..Default::default()
    }
}

/// The existing stream's configuration against the one replication needs.
pub(crate) fn check_config(
    found: &stream::Config,
    wanted: &stream::Config,
) -> Result<(), OpenError> {
    match first_difference(found, wanted) {
        None => Ok(()),
        Some((field, found_text, wanted_text)) => Err(OpenError::Mismatch {
            stream: found.name.clone(),
            field,
            found: found_text,
            wanted: wanted_text,
        }),
    }
}

/// The first field replication depends on that differs: (name, found, wanted).
fn first_difference(
    found: &stream::Config,
    wanted: &stream::Config,
) -> Option<(&'static str, String, String)> {
    let debug = |value: &dyn std::fmt::Debug| format!("{value:?}");
    let fields = [
        ("subjects", debug(&found.subjects), debug(&wanted.subjects)),
        ("storage", debug(&found.storage), debug(&wanted.storage)),
        (
            "num_replicas",
            debug(&found.num_replicas),
            debug(&wanted.num_replicas),
        ),
        (
            "retention",
            debug(&found.retention),
            debug(&wanted.retention),
        ),
        (
            "max_messages",
            limit(found.max_messages),
            limit(wanted.max_messages),
        ),
        ("max_bytes", limit(found.max_bytes), limit(wanted.max_bytes)),
        (
            "max_messages_per_subject",
            limit(found.max_messages_per_subject),
            limit(wanted.max_messages_per_subject),
        ),
        ("max_age", debug(&found.max_age), debug(&wanted.max_age)),
        ("persist_mode", persistence(found), persistence(wanted)),
        ("sealed", debug(&found.sealed), debug(&wanted.sealed)),
    ];
    fields
        .into_iter()
        .find(|(_, found, wanted)| found != wanted)
}

/// A limit as text; 0 and below mean none.
fn limit(value: i64) -> String {
    if value <= 0 {
        "none".into()
    } else {
        value.to_string()
    }
}

fn persistence(config: &stream::Config) -> String {
    match config.persist_mode {
        Some(stream::PersistenceMode::Async) => "async".into(),
        _ => "synchronous".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> StreamSettings {
        StreamSettings {
            stream_name: "flashsale".into(),
            replicas: 3,
        }
    }

    #[test]
    fn the_stream_replication_creates_passes_its_own_check() {
        let wanted = wanted_config(&settings());
        assert!(check_config(&wanted, &wanted).is_ok());
        assert_eq!(wanted.subjects, vec!["flashsale.batches".to_string()]);
        assert_eq!(wanted.num_replicas, 3);
        assert_eq!(wanted.discard, stream::DiscardPolicy::New);
    }

    #[test]
    fn a_stream_that_could_lose_acknowledged_messages_is_refused_by_field() {
        let wanted = wanted_config(&settings());
        type Change = fn(&mut stream::Config);
        let cases: [(&str, Change); 6] = [
            ("max_bytes", |c| c.max_bytes = 1 << 30),
            ("max_age", |c| c.max_age = Duration::from_secs(3600)),
            ("storage", |c| c.storage = stream::StorageType::Memory),
            ("num_replicas", |c| c.num_replicas = 1),
            ("persist_mode", |c| {
                c.persist_mode = Some(stream::PersistenceMode::Async)
            }),
            ("sealed", |c| c.sealed = true),
        ];
        for (field, change) in cases {
            let mut found = wanted.clone();
            change(&mut found);
            match check_config(&found, &wanted) {
                Err(OpenError::Mismatch { field: named, .. }) => assert_eq!(named, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    #[test]
    fn zero_and_minus_one_both_mean_no_limit() {
        let wanted = wanted_config(&settings());
        let mut found = wanted.clone();
        found.max_messages = 0;
        found.max_bytes = 0;
        assert!(check_config(&found, &wanted).is_ok());
    }
}
