//! Wire protocol: a versioned envelope around MessagePack bodies with named fields.
//!
//! A receiver never panics on what it reads: a garbled, oversized or unknown-version message
//! becomes a [`ProtocolError`], which the consumer turns into a dead letter with the reason.

use crate::ids::{CampaignId, TaskId};
use crate::model::{now_ms, BoundTask};
use serde::{Deserialize, Serialize};

/// The protocol version this build speaks. A receiver accepts exactly this major version.
pub const PROTOCOL_VERSION: u16 = 1;

/// Messages larger than this are refused on both sides.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// What travels on a queue.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub v: u16,
    /// The message kind, readable without decoding the body (logs, dead letters).
    pub kind: String,
    pub campaign: CampaignId,
    pub sent_at: u64,
    pub body: Message,
}

/// Manager -> pilot messages (task queue and control queue).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Message {
    /// Tasks bound to the pilot. Batching is what makes thousands of tasks per second possible.
    TaskBatch { tasks: Vec<BoundTask> },
    /// Finish what runs, take nothing new, then deregister.
    Drain,
    /// Kill these tasks if they run here.
    Cancel { task_ids: Vec<TaskId> },
    /// Stop now: return unfinished tasks and exit.
    Shutdown,
    /// Give these tasks back if they have not started here (to READY, for another pilot):
    /// how a pilot that started late takes work bound to a busy one.
    Return { task_ids: Vec<TaskId> },
}

impl Message {
    pub fn kind(&self) -> &'static str {
        match self {
            Message::TaskBatch { .. } => "TaskBatch",
            Message::Drain => "Drain",
            Message::Cancel { .. } => "Cancel",
            Message::Shutdown => "Shutdown",
            Message::Return { .. } => "Return",
        }
    }
}

#[derive(Clone, Debug, thiserror::Error, PartialEq)]
pub enum ProtocolError {
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    Oversized { size: usize, limit: usize },
    #[error("protocol version {got} is not supported (this build speaks version {supported}); upgrade the older component")]
    UnsupportedVersion { got: u16, supported: u16 },
    #[error("garbled message: {0}")]
    Garbled(String),
    #[error("envelope says kind `{envelope}` but the body is a `{body}`")]
    KindMismatch { envelope: String, body: String },
}

/// A `TaskBatch` message ready to publish and the tasks it carries (indices into the slice
/// given to [`encode_task_batches`]).
#[derive(Clone, Debug, PartialEq)]
pub struct EncodedBatch {
    pub bytes: Vec<u8>,
    pub tasks: std::ops::Range<usize>,
}

/// Encodes `tasks` as `TaskBatch` messages, halving any batch that would exceed
/// [`MAX_MESSAGE_BYTES`] (tasks with large environments), so one big task never stops the
/// others. Returns the messages, and the tasks too large to send even alone with the error.
pub fn encode_task_batches(
    campaign: CampaignId,
    tasks: &[BoundTask],
) -> (Vec<EncodedBatch>, Vec<(usize, ProtocolError)>) {
    fn go(
        campaign: CampaignId,
        tasks: &[BoundTask],
        offset: usize,
        out: &mut Vec<EncodedBatch>,
        too_big: &mut Vec<(usize, ProtocolError)>,
    ) {
        if tasks.is_empty() {
            return;
        }
        let env = Envelope::new(
            campaign,
            Message::TaskBatch {
                tasks: tasks.to_vec(),
            },
        );
        match env.encode() {
            Ok(bytes) => out.push(EncodedBatch {
                bytes,
                tasks: offset..offset + tasks.len(),
            }),
            Err(ProtocolError::Oversized { .. }) if tasks.len() > 1 => {
                let half = tasks.len() / 2;
                go(campaign, &tasks[..half], offset, out, too_big);
                go(campaign, &tasks[half..], offset + half, out, too_big);
            }
            Err(e) => too_big.extend((offset..offset + tasks.len()).map(|i| (i, e.clone()))),
        }
    }
    let (mut out, mut too_big) = (Vec::new(), Vec::new());
    go(campaign, tasks, 0, &mut out, &mut too_big);
    (out, too_big)
}

/// Only the version, decoded first so an unknown version is reported as such and not as garbage.
#[derive(Deserialize)]
struct VersionProbe {
    v: u16,
}

impl Envelope {
    pub fn new(campaign: CampaignId, body: Message) -> Self {
        Envelope {
            v: PROTOCOL_VERSION,
            kind: body.kind().to_string(),
            campaign,
            sent_at: now_ms(),
            body,
        }
    }

    pub fn encode(&self) -> Result<Vec<u8>, ProtocolError> {
        let bytes =
            rmp_serde::to_vec_named(self).map_err(|e| ProtocolError::Garbled(e.to_string()))?;
        if bytes.len() > MAX_MESSAGE_BYTES {
            return Err(ProtocolError::Oversized {
                size: bytes.len(),
                limit: MAX_MESSAGE_BYTES,
            });
        }
        Ok(bytes)
    }

    pub fn decode(bytes: &[u8]) -> Result<Envelope, ProtocolError> {
        if bytes.len() > MAX_MESSAGE_BYTES {
            return Err(ProtocolError::Oversized {
                size: bytes.len(),
                limit: MAX_MESSAGE_BYTES,
            });
        }
        let probe: VersionProbe =
            rmp_serde::from_slice(bytes).map_err(|e| ProtocolError::Garbled(e.to_string()))?;
        if probe.v != PROTOCOL_VERSION {
            return Err(ProtocolError::UnsupportedVersion {
                got: probe.v,
                supported: PROTOCOL_VERSION,
            });
        }
        let env: Envelope =
            rmp_serde::from_slice(bytes).map_err(|e| ProtocolError::Garbled(e.to_string()))?;
        if env.kind != env.body.kind() {
            return Err(ProtocolError::KindMismatch {
                envelope: env.kind,
                body: env.body.kind().to_string(),
            });
        }
        Ok(env)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TaskSpec;
    use uuid::Uuid;

    fn fixed_campaign() -> CampaignId {
        CampaignId(Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef))
    }

    fn golden_envelope(body: Message) -> Envelope {
        Envelope {
            v: PROTOCOL_VERSION,
            kind: body.kind().to_string(),
            campaign: fixed_campaign(),
            sent_at: 1_700_000_000_000,
            body,
        }
    }

    // The golden bytes pin the encoding: if one of these changes, older agents or managers
    // can no longer talk to this build. Bump PROTOCOL_VERSION instead of editing them.
    const GOLDEN_DRAIN: &str = "85a17601a46b696e64a5447261696ea863616d706169676ec41001234567\
89abcdef0123456789abcdefa773656e745f6174cf0000018bcfe56800a4626f6479a5447261696e";

    #[test]
    fn drain_encoding_is_pinned() {
        let bytes = golden_envelope(Message::Drain).encode().unwrap();
        assert_eq!(hex::encode(&bytes), GOLDEN_DRAIN);
        assert_eq!(
            Envelope::decode(&bytes).unwrap(),
            golden_envelope(Message::Drain)
        );
    }

    const GOLDEN_BATCH: &str = include_str!("../tests/golden/task_batch.hex");

    fn golden_batch() -> Envelope {
        let mut spec = TaskSpec::new(
            TaskId(Uuid::from_u128(42)),
            "sim-0",
            vec!["/bin/echo".into(), "hi".into()],
        );
        spec.cores = 2;
        spec.est_duration_s = 1.5;
        spec.env.insert("A".into(), "b".into());
        golden_envelope(Message::TaskBatch {
            tasks: vec![BoundTask { spec, attempt: 1 }],
        })
    }

    #[test]
    fn task_batch_encoding_is_pinned() {
        let bytes = golden_batch().encode().unwrap();
        assert_eq!(hex::encode(&bytes), GOLDEN_BATCH.trim());
        assert_eq!(Envelope::decode(&bytes).unwrap(), golden_batch());
    }

    // Control messages are pinned too (the control queue is read by older agents).
    const GOLDEN_SHUTDOWN: &str =
        "85a17601a46b696e64a853687574646f776ea863616d706169676ec41001234567\
89abcdef0123456789abcdefa773656e745f6174cf0000018bcfe56800a4626f6479a853687574646f776e";

    #[test]
    fn shutdown_and_cancel_encodings_are_pinned() {
        let bytes = golden_envelope(Message::Shutdown).encode().unwrap();
        assert_eq!(hex::encode(&bytes), GOLDEN_SHUTDOWN);
        let cancel = golden_envelope(Message::Cancel {
            task_ids: vec![TaskId(Uuid::from_u128(7))],
        });
        let bytes = cancel.encode().unwrap();
        assert_eq!(hex::encode(&bytes), GOLDEN_CANCEL);
        assert_eq!(Envelope::decode(&bytes).unwrap(), cancel);
        let ret = golden_envelope(Message::Return {
            task_ids: vec![TaskId(Uuid::from_u128(7))],
        });
        let bytes = ret.encode().unwrap();
        assert_eq!(hex::encode(&bytes), GOLDEN_RETURN);
        assert_eq!(Envelope::decode(&bytes).unwrap(), ret);
    }

    const GOLDEN_RETURN: &str = "85a17601a46b696e64a652657475726ea863616d706169676ec4100123456789\
abcdef0123456789abcdefa773656e745f6174cf0000018bcfe56800a4626f647981a652657475726e81a87461736b\
5f69647391c41000000000000000000000000000000007";

    const GOLDEN_CANCEL: &str = "85a17601a46b696e64a643616e63656ca863616d706169676ec4100123456789\
abcdef0123456789abcdefa773656e745f6174cf0000018bcfe56800a4626f647981a643616e63656c81a87461736b\
5f69647391c41000000000000000000000000000000007";

    #[test]
    fn batches_too_large_for_one_message_are_split_and_a_task_too_large_alone_is_named() {
        let task = |i: u128, env_bytes: usize| {
            let mut spec = TaskSpec::new(TaskId(Uuid::from_u128(i)), "t", vec!["true".into()]);
            spec.env.insert("BIG".into(), "x".repeat(env_bytes));
            BoundTask { spec, attempt: 1 }
        };
        // Four tasks of 6 MiB each: no message may hold more than two.
        let mut tasks: Vec<BoundTask> = (0..4).map(|i| task(i, 6 << 20)).collect();
        tasks.push(task(9, MAX_MESSAGE_BYTES)); // too big even alone
        tasks.push(task(10, 10));
        let (batches, too_big) = encode_task_batches(fixed_campaign(), &tasks);
        let carried: usize = batches.iter().map(|b| b.tasks.len()).sum();
        assert_eq!(carried, 5);
        assert!(batches.iter().all(|b| b.bytes.len() <= MAX_MESSAGE_BYTES));
        assert_eq!(too_big.len(), 1);
        assert_eq!(too_big[0].0, 4);
        assert!(matches!(too_big[0].1, ProtocolError::Oversized { .. }));
        // Every message decodes to exactly the tasks it says it carries.
        for b in &batches {
            let Message::TaskBatch { tasks: got } = Envelope::decode(&b.bytes).unwrap().body else {
                panic!("not a batch")
            };
            assert_eq!(got, tasks[b.tasks.clone()].to_vec());
        }
    }

    #[test]
    fn unknown_version_is_a_typed_error() {
        let mut env = golden_envelope(Message::Shutdown);
        env.v = 9;
        let bytes = rmp_serde::to_vec_named(&env).unwrap();
        assert_eq!(
            Envelope::decode(&bytes),
            Err(ProtocolError::UnsupportedVersion {
                got: 9,
                supported: PROTOCOL_VERSION
            })
        );
    }

    #[test]
    fn garbage_is_a_typed_error() {
        for junk in [&b""[..], b"\xff\xff\xff", b"hello world", &[0x85, 0xa1]] {
            assert!(matches!(
                Envelope::decode(junk),
                Err(ProtocolError::Garbled(_))
            ));
        }
    }

    #[test]
    fn oversized_is_refused_before_decoding() {
        let big = vec![0u8; MAX_MESSAGE_BYTES + 1];
        assert!(matches!(
            Envelope::decode(&big),
            Err(ProtocolError::Oversized { .. })
        ));
    }

    #[test]
    fn kind_must_match_body() {
        let mut env = golden_envelope(Message::Drain);
        env.kind = "Shutdown".into();
        let bytes = rmp_serde::to_vec_named(&env).unwrap();
        assert!(matches!(
            Envelope::decode(&bytes),
            Err(ProtocolError::KindMismatch { .. })
        ));
    }

    proptest::proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = Envelope::decode(&bytes);
        }
    }
}
