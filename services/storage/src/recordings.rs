//! A camera's timeline: recorded ranges and the gaps between them (pure; no I/O).
//!
//! Segments closer than the merge tolerance (default 1 s) form one recorded range; a
//! registered gap between two segments always splits the range, however short. Registered gaps
//! are reported with their reason; any other hole longer than the tolerance is reported as an
//! unexplained gap. Everything is clipped to the requested window. Time after the camera's
//! last record is not reported (it may simply not have been registered yet), and a hole before
//! the first record is reported only when the camera recorded something before the window.

/// `kordon.storage.v1.GapReason.GAP_REASON_UNEXPLAINED`.
pub const GAP_REASON_UNEXPLAINED: u32 = 6;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentSpan {
    pub start_us: i64,
    pub end_us: i64,
    pub size_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GapSpan {
    pub start_us: i64,
    pub end_us: i64,
    pub reason: u32,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeKind {
    Recorded { segment_count: u32, size_bytes: u64 },
    Gap { reason: u32, detail: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineRange {
    pub start_us: i64,
    pub end_us: i64,
    pub kind: RangeKind,
}

/// The window asked for and what is known about the camera around it.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub from_us: i64,
    pub to_us: i64,
    pub tolerance_us: i64,
    /// The camera has a record starting before `from_us`.
    pub recorded_before: bool,
    /// Latest end over all the camera's records.
    pub camera_until_us: i64,
}

/// Builds the timeline; `segments` and `gaps` overlap the window (any order).
pub fn timeline(segments: &[SegmentSpan], gaps: &[GapSpan], w: Window) -> Vec<TimelineRange> {
    let mut segs: Vec<SegmentSpan> = segments.to_vec();
    segs.sort_by_key(|s| (s.start_us, s.end_us));
    let mut gaps: Vec<GapSpan> = gaps.to_vec();
    gaps.sort_by_key(|g| (g.start_us, g.end_us));

    // 1. Merge segments into recorded ranges.
    let mut recorded: Vec<(i64, i64, u32, u64)> = Vec::new();
    for s in &segs {
        if let Some(c) = recorded.last_mut() {
            let splits = gaps
                .iter()
                .any(|g| g.start_us >= c.0 && g.start_us <= s.start_us && g.end_us >= c.1);
            if s.start_us <= c.1.saturating_add(w.tolerance_us) && !splits {
                c.1 = c.1.max(s.end_us);
                c.2 = c.2.saturating_add(1);
                c.3 = c.3.saturating_add(s.size_bytes);
                continue;
            }
        }
        recorded.push((s.start_us, s.end_us, 1, s.size_bytes));
    }

    let clip = |a: i64, b: i64| -> Option<(i64, i64)> {
        let (a, b) = (a.max(w.from_us), b.min(w.to_us));
        (a < b).then_some((a, b))
    };
    let mut out: Vec<TimelineRange> = Vec::new();
    for (a, b, n, size) in recorded {
        if let Some((a, b)) = clip(a, b) {
            out.push(TimelineRange {
                start_us: a,
                end_us: b,
                kind: RangeKind::Recorded {
                    segment_count: n,
                    size_bytes: size,
                },
            });
        }
    }
    for g in &gaps {
        if let Some((a, b)) = clip(g.start_us, g.end_us) {
            out.push(TimelineRange {
                start_us: a,
                end_us: b,
                kind: RangeKind::Gap {
                    reason: g.reason,
                    detail: g.detail.clone(),
                },
            });
        }
    }
    out.sort_by_key(|r| (r.start_us, r.end_us));

    // 2. Unexplained holes between what is known.
    let mut cursor = if w.recorded_before {
        Some(w.from_us)
    } else {
        out.first().map(|r| r.start_us)
    };
    let mut holes = Vec::new();
    if let Some(mut at) = cursor.take() {
        for r in &out {
            if r.start_us.saturating_sub(at) > w.tolerance_us {
                holes.push((at, r.start_us));
            }
            at = at.max(r.end_us);
        }
        let end = w.to_us.min(w.camera_until_us);
        if end.saturating_sub(at) > w.tolerance_us {
            holes.push((at, end));
        }
    }
    for (a, b) in holes {
        out.push(TimelineRange {
            start_us: a,
            end_us: b,
            kind: RangeKind::Gap {
                reason: GAP_REASON_UNEXPLAINED,
                detail: String::new(),
            },
        });
    }
    out.sort_by_key(|r| (r.start_us, r.end_us));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    fn seg(a: i64, b: i64) -> SegmentSpan {
        SegmentSpan {
            start_us: a * S,
            end_us: b * S,
            size_bytes: 10,
        }
    }

    fn window(from: i64, to: i64) -> Window {
        Window {
            from_us: from * S,
            to_us: to * S,
            tolerance_us: S,
            recorded_before: false,
            // Nothing recorded after the segments given: no trailing hole.
            camera_until_us: 0,
        }
    }

    fn kinds(t: &[TimelineRange]) -> Vec<(i64, i64, &'static str)> {
        t.iter()
            .map(|r| {
                (
                    r.start_us / S,
                    r.end_us / S,
                    match &r.kind {
                        RangeKind::Recorded { .. } => "rec",
                        RangeKind::Gap { reason, .. } if *reason == GAP_REASON_UNEXPLAINED => {
                            "hole"
                        }
                        RangeKind::Gap { .. } => "gap",
                    },
                )
            })
            .collect()
    }

    #[test]
    fn contiguous_segments_merge_and_holes_split() {
        let segs = [seg(0, 6), seg(6, 12), seg(12, 18), seg(30, 36), seg(36, 42)];
        let t = timeline(&segs, &[], window(0, 100));
        assert_eq!(
            kinds(&t),
            vec![(0, 18, "rec"), (18, 30, "hole"), (30, 42, "rec")]
        );
        let RangeKind::Recorded {
            segment_count,
            size_bytes,
        } = t[0].kind
        else {
            panic!()
        };
        assert_eq!((segment_count, size_bytes), (3, 30));
    }

    #[test]
    fn a_registered_gap_splits_even_when_short_and_is_reported() {
        let segs = [
            seg(0, 6),
            SegmentSpan {
                start_us: 6 * S + S / 2,
                end_us: 12 * S,
                size_bytes: 1,
            },
        ];
        let gaps = [GapSpan {
            start_us: 6 * S,
            end_us: 6 * S + S / 2,
            reason: 1,
            detail: "connection refused".into(),
        }];
        let t = timeline(&segs, &gaps, window(0, 100));
        assert_eq!(t.len(), 3, "{t:#?}");
        assert!(matches!(t[0].kind, RangeKind::Recorded { .. }));
        assert_eq!(
            t[1].kind,
            RangeKind::Gap {
                reason: 1,
                detail: "connection refused".into()
            }
        );
        assert!(matches!(t[2].kind, RangeKind::Recorded { .. }));
    }

    #[test]
    fn clipped_to_the_window_with_leading_hole_only_after_earlier_recording() {
        let segs = [seg(10, 16), seg(16, 22)];
        let t = timeline(&segs, &[], window(12, 20));
        assert_eq!(kinds(&t), vec![(12, 20, "rec")]);

        let t = timeline(&segs, &[], window(0, 30));
        assert_eq!(
            kinds(&t),
            vec![(10, 22, "rec")],
            "nothing before the camera"
        );
        let mut w = window(0, 30);
        w.recorded_before = true;
        w.camera_until_us = 22 * S;
        let t = timeline(&segs, &[], w);
        assert_eq!(kinds(&t), vec![(0, 10, "hole"), (10, 22, "rec")]);
        w.camera_until_us = 100 * S;
        let t = timeline(&segs, &[], w);
        assert_eq!(
            kinds(&t),
            vec![(0, 10, "hole"), (10, 22, "rec"), (22, 30, "hole")],
            "recorded later, so the end of the window is a hole"
        );
    }

    #[test]
    fn tolerance_merges_small_jitter() {
        let segs = [
            seg(0, 6),
            SegmentSpan {
                start_us: 6 * S + S / 2,
                end_us: 12 * S,
                size_bytes: 1,
            },
        ];
        let t = timeline(&segs, &[], window(0, 12));
        assert_eq!(kinds(&t), vec![(0, 12, "rec")]);
    }
}
