//! The per-camera hash chain over segment and gap records, and its verification.
//!
//! Every record of a camera (segment or gap) gets the next sequence number (1, 2, 3, ... with
//! no holes) and commits to its predecessor:
//!
//! ```text
//! record_hash = SHA-256(
//!     "kordon.storage.chain.v1"            ASCII domain tag, 23 bytes
//!     prev_hash                            32 bytes; zeros for sequence 1
//!     sequence                             u64, big-endian
//!     kind                                 u8: 1 segment, 2 gap
//!     site, camera                         each u32 big-endian byte length + UTF-8
//!     start_us, end_us                     i64 big-endian, µs since the Unix epoch
//!     size_bytes                           u64 big-endian (0 for gaps)
//!     sha256                               32 bytes of the object (zeros for gaps)
//!     object_key                           u32 length + UTF-8 (empty for gaps)
//!     gap_reason                           u32 big-endian (0 for segments)
//! )
//! ```
//!
//! [`verify`] walks a window of records and reports, precisely and without stopping at the
//! first problem: sequence numbers with no record (deleted rows), records whose fields no
//! longer hash to their `record_hash` (altered rows), links whose `prev_hash` is not the
//! predecessor's hash — as a reordering when it is the hash of another record in the window
//! (swapped or moved rows), else as a broken link — and a stored chain head that no longer
//! matches the last record (truncation).
//!
//! What the chain cannot show on its own: someone with write access to the index who
//! recomputes every hash after a change. Against that, compare `head_hash` with a copy kept
//! elsewhere (an evidence manifest, an earlier report).

use std::collections::{BTreeMap, HashMap};

use sha2::{Digest, Sha256};

const DOMAIN: &[u8] = b"kordon.storage.chain.v1";

/// The hash before the first record.
pub const ZERO_HASH: [u8; 32] = [0; 32];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordKind {
    Segment,
    Gap,
}

impl RecordKind {
    fn tag(self) -> u8 {
        match self {
            RecordKind::Segment => 1,
            RecordKind::Gap => 2,
        }
    }
}

/// The hashed fields of one chain record, and the hashes stored with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainRecord {
    pub kind: RecordKind,
    pub site: String,
    pub camera: String,
    pub sequence: u64,
    pub start_us: i64,
    pub end_us: i64,
    pub size_bytes: u64,
    pub sha256: [u8; 32],
    pub object_key: String,
    pub gap_reason: u32,
    pub prev_hash: [u8; 32],
    pub record_hash: [u8; 32],
}

fn put_str(h: &mut Sha256, s: &str) {
    // Lengths beyond u32 cannot occur (names and keys are validated far below that); saturate
    // rather than panic.
    let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
    h.update(len.to_be_bytes());
    h.update(s.as_bytes());
}

impl ChainRecord {
    /// The hash this record's fields and `prev_hash` produce (see the module docs).
    pub fn compute_hash(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(DOMAIN);
        h.update(self.prev_hash);
        h.update(self.sequence.to_be_bytes());
        h.update([self.kind.tag()]);
        put_str(&mut h, &self.site);
        put_str(&mut h, &self.camera);
        h.update(self.start_us.to_be_bytes());
        h.update(self.end_us.to_be_bytes());
        h.update(self.size_bytes.to_be_bytes());
        h.update(self.sha256);
        put_str(&mut h, &self.object_key);
        h.update(self.gap_reason.to_be_bytes());
        h.finalize().into()
    }

    /// Plain-language name for messages, e.g. `segment 1042 (…–…)`.
    pub fn describe(&self) -> String {
        let what = match self.kind {
            RecordKind::Segment => "segment",
            RecordKind::Gap => "gap",
        };
        format!(
            "{what} {} ({} – {})",
            self.sequence,
            kordon_objects::time::rfc3339_micros(self.start_us),
            kordon_objects::time::rfc3339_micros(self.end_us)
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FindingKind {
    MissingRecord,
    RecordAltered,
    BrokenLink,
    Reordered,
    ObjectMissing,
    ObjectAltered,
}

/// One problem found by verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub kind: FindingKind,
    pub sequence: u64,
    /// What the chain or record says it should be, and what was found (empty where n/a).
    pub expected_hash: Vec<u8>,
    pub actual_hash: Vec<u8>,
    pub detail: String,
}

/// The records to check, sequences `first..=last`.
#[derive(Debug, Clone)]
pub struct Window<'a> {
    pub first: u64,
    pub last: u64,
    /// Every record found with a sequence in `first..=last`, any order.
    pub records: &'a [ChainRecord],
    /// Record `first - 1`, when `first > 1` and it exists.
    pub predecessor: Option<&'a ChainRecord>,
    /// The stored chain head `(sequence, hash)`, when `last` is the head.
    pub head: Option<(u64, [u8; 32])>,
}

/// Checks a window of a chain; see the module docs. Findings are ordered by sequence.
pub fn verify(w: &Window<'_>) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut by_seq: BTreeMap<u64, &ChainRecord> = BTreeMap::new();
    for r in w.records {
        if r.sequence < w.first || r.sequence > w.last {
            continue;
        }
        if by_seq.insert(r.sequence, r).is_some() {
            findings.push(Finding {
                kind: FindingKind::RecordAltered,
                sequence: r.sequence,
                expected_hash: Vec::new(),
                actual_hash: Vec::new(),
                detail: format!("sequence {} appears more than once", r.sequence),
            });
        }
    }
    // Stored hash → sequence, to recognise a link that points at the wrong record.
    let mut stored: HashMap<[u8; 32], u64> = by_seq
        .values()
        .map(|r| (r.record_hash, r.sequence))
        .collect();
    if let Some(p) = w.predecessor {
        stored.insert(p.record_hash, p.sequence);
    }

    // The record before the window anchors its first link.
    let mut prev: Option<([u8; 32], u64)> = if w.first <= 1 {
        Some((crate::chain::ZERO_HASH, 0))
    } else {
        match w.predecessor {
            Some(p) if p.sequence + 1 == w.first => Some((p.record_hash, p.sequence)),
            _ => {
                findings.push(Finding {
                    kind: FindingKind::MissingRecord,
                    sequence: w.first - 1,
                    expected_hash: Vec::new(),
                    actual_hash: Vec::new(),
                    detail: format!(
                        "record {} (the one before the checked range) is missing from the index",
                        w.first - 1
                    ),
                });
                None
            }
        }
    };

    for seq in w.first..=w.last {
        let Some(r) = by_seq.get(&seq) else {
            findings.push(Finding {
                kind: FindingKind::MissingRecord,
                sequence: seq,
                expected_hash: Vec::new(),
                actual_hash: Vec::new(),
                detail: format!("record {seq} is missing from the index"),
            });
            prev = None;
            continue;
        };
        let computed = r.compute_hash();
        if computed != r.record_hash {
            findings.push(Finding {
                kind: FindingKind::RecordAltered,
                sequence: seq,
                expected_hash: r.record_hash.to_vec(),
                actual_hash: computed.to_vec(),
                detail: format!(
                    "{} was altered: its fields no longer hash to its record hash",
                    r.describe()
                ),
            });
        }
        if let Some((prev_hash, prev_seq)) = prev
            && r.prev_hash != prev_hash
        {
            match stored.get(&r.prev_hash) {
                Some(&other) if other != prev_seq => findings.push(Finding {
                    kind: FindingKind::Reordered,
                    sequence: seq,
                    expected_hash: prev_hash.to_vec(),
                    actual_hash: r.prev_hash.to_vec(),
                    detail: format!(
                        "{} links to record {other} instead of record {prev_seq}: records were \
                         swapped or moved",
                        r.describe()
                    ),
                }),
                _ => findings.push(Finding {
                    kind: FindingKind::BrokenLink,
                    sequence: seq,
                    expected_hash: prev_hash.to_vec(),
                    actual_hash: r.prev_hash.to_vec(),
                    detail: format!(
                        "{} does not link to record {prev_seq}: the chain is broken here",
                        r.describe()
                    ),
                }),
            }
        }
        prev = Some((r.record_hash, seq));
    }

    if let Some((head_seq, head_hash)) = w.head {
        match by_seq.get(&head_seq) {
            Some(r) if r.record_hash == head_hash => {}
            Some(r) => findings.push(Finding {
                kind: FindingKind::BrokenLink,
                sequence: head_seq,
                expected_hash: head_hash.to_vec(),
                actual_hash: r.record_hash.to_vec(),
                detail: format!(
                    "the camera's chain head names a different hash for {}",
                    r.describe()
                ),
            }),
            // Already reported as missing above when inside the window.
            None if head_seq >= w.first && head_seq <= w.last => {}
            None => findings.push(Finding {
                kind: FindingKind::MissingRecord,
                sequence: head_seq,
                expected_hash: head_hash.to_vec(),
                actual_hash: Vec::new(),
                detail: format!("the chain head, record {head_seq}, is missing"),
            }),
        }
    }
    findings.sort_by_key(|f| (f.sequence, f.kind));
    findings
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A well-formed chain of `kinds.len()` records.
    fn chain(kinds: &[bool]) -> Vec<ChainRecord> {
        let mut out: Vec<ChainRecord> = Vec::new();
        let mut prev = ZERO_HASH;
        for (i, &is_gap) in kinds.iter().enumerate() {
            let seq = i as u64 + 1;
            let start = 1_795_774_446_000_000 + i as i64 * 6_000_000;
            let mut r = ChainRecord {
                kind: if is_gap {
                    RecordKind::Gap
                } else {
                    RecordKind::Segment
                },
                site: "burgas".into(),
                camera: "gate-3".into(),
                sequence: seq,
                start_us: start,
                end_us: start + 6_000_000,
                size_bytes: if is_gap { 0 } else { 1000 + seq },
                sha256: if is_gap { [0; 32] } else { [seq as u8; 32] },
                object_key: if is_gap {
                    String::new()
                } else {
                    format!("k/{seq}.mp4")
                },
                gap_reason: if is_gap { 1 } else { 0 },
                prev_hash: prev,
                record_hash: [0; 32],
            };
            r.record_hash = r.compute_hash();
            prev = r.record_hash;
            out.push(r);
        }
        out
    }

    fn verify_all(records: &[ChainRecord], head: (u64, [u8; 32])) -> Vec<Finding> {
        verify(&Window {
            first: 1,
            last: head.0,
            records,
            predecessor: None,
            head: Some(head),
        })
    }

    fn head_of(c: &[ChainRecord]) -> (u64, [u8; 32]) {
        let last = c.last().unwrap();
        (last.sequence, last.record_hash)
    }

    #[test]
    fn an_intact_chain_has_no_findings() {
        let c = chain(&[false, false, true, false]);
        assert!(verify_all(&c, head_of(&c)).is_empty());
    }

    #[test]
    fn precise_findings() {
        let c = chain(&[false; 6]);
        let head = head_of(&c);

        let mut deleted = c.clone();
        deleted.remove(2);
        let f = verify_all(&deleted, head);
        assert_eq!(f.len(), 1, "{f:#?}");
        assert_eq!((f[0].kind, f[0].sequence), (FindingKind::MissingRecord, 3));

        let mut altered = c.clone();
        altered[3].end_us += 1;
        let f = verify_all(&altered, head);
        assert_eq!(f.len(), 1, "{f:#?}");
        assert_eq!((f[0].kind, f[0].sequence), (FindingKind::RecordAltered, 4));
        assert!(f[0].detail.contains("segment 4"), "{}", f[0].detail);

        // Rows 2 and 3 swap places (each keeps its stored hashes, takes the other's number).
        let mut swapped = c.clone();
        swapped[1].sequence = 3;
        swapped[2].sequence = 2;
        let f = verify_all(&swapped, head);
        assert!(
            f.iter()
                .any(|x| x.kind == FindingKind::Reordered && x.sequence == 2),
            "{f:#?}"
        );

        let mut truncated = c.clone();
        truncated.pop();
        let f = verify_all(&truncated, head);
        assert_eq!((f[0].kind, f[0].sequence), (FindingKind::MissingRecord, 6));

        // A window in the middle is anchored by its predecessor.
        let f = verify(&Window {
            first: 3,
            last: 4,
            records: &c[2..4],
            predecessor: None,
            head: None,
        });
        assert_eq!((f[0].kind, f[0].sequence), (FindingKind::MissingRecord, 2));
        let f = verify(&Window {
            first: 3,
            last: 4,
            records: &c[2..4],
            predecessor: Some(&c[1]),
            head: None,
        });
        assert!(f.is_empty(), "{f:#?}");
    }

    #[derive(Debug, Clone)]
    enum Tamper {
        Delete(usize),
        AlterTime(usize, i64),
        AlterSize(usize),
        AlterKey(usize),
        AlterSha(usize),
        Swap(usize, usize),
        RelinkTo(usize, usize),
    }

    fn tamper() -> impl Strategy<Value = Tamper> {
        prop_oneof![
            any::<usize>().prop_map(Tamper::Delete),
            (
                any::<usize>(),
                prop_oneof![-1_000_000i64..-1, 1i64..1_000_000]
            )
                .prop_map(|(i, d)| Tamper::AlterTime(i, d)),
            any::<usize>().prop_map(Tamper::AlterSize),
            any::<usize>().prop_map(Tamper::AlterKey),
            any::<usize>().prop_map(Tamper::AlterSha),
            (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Tamper::Swap(a, b)),
            (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Tamper::RelinkTo(a, b)),
        ]
    }

    proptest! {
        /// Any deletion, alteration or swap of records is detected.
        #[test]
        fn any_tampering_is_detected(
            kinds in proptest::collection::vec(any::<bool>(), 2..40),
            t in tamper(),
        ) {
            let original = chain(&kinds);
            let head = head_of(&original);
            let n = original.len();
            let mut c = original.clone();
            match t {
                Tamper::Delete(i) => { c.remove(i % n); }
                Tamper::AlterTime(i, d) => { c[i % n].start_us += d; }
                Tamper::AlterSize(i) => { c[i % n].size_bytes += 1; }
                Tamper::AlterKey(i) => { c[i % n].object_key.push('x'); }
                Tamper::AlterSha(i) => { c[i % n].sha256[0] ^= 1; }
                Tamper::Swap(a, b) => {
                    let (a, b) = (a % n, b % n);
                    prop_assume!(a != b);
                    let (sa, sb) = (c[a].sequence, c[b].sequence);
                    c[a].sequence = sb;
                    c[b].sequence = sa;
                }
                Tamper::RelinkTo(a, b) => {
                    // Point a record at another record's hash and re-seal it: the link breaks.
                    let (a, b) = (a % n, b % n);
                    prop_assume!(a != b && b + 1 != a);
                    c[a].prev_hash = c[b].record_hash;
                    c[a].record_hash = c[a].compute_hash();
                }
            }
            prop_assume!(c != original);
            let findings = verify_all(&c, head);
            prop_assert!(!findings.is_empty(), "undetected: {:?}", t);
        }

        #[test]
        fn intact_chains_verify(kinds in proptest::collection::vec(any::<bool>(), 1..40)) {
            let c = chain(&kinds);
            prop_assert!(verify_all(&c, head_of(&c)).is_empty());
        }
    }
}
