//! H.264 over RTP (RFC 6184) without GStreamer: reassembles access units from single NAL,
//! STAP-A and FU-A packets, keeps the parameter sets, and reads the SPS for frame size and
//! rate. Output matches what `h264parse ! video/x-h264,stream-format=avc,alignment=au` gives:
//! 4-byte length-prefixed NAL units per access unit and an `avcC` record.

use bytes::{BufMut, Bytes, BytesMut};

/// Largest access unit accepted (a 4K intra frame is well under this).
const MAX_AU_BYTES: usize = 16 * 1024 * 1024;

/// One complete access unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessUnit {
    /// RTP timestamp (90 kHz) of the unit.
    pub rtp_ts: u32,
    pub keyframe: bool,
    /// Length-prefixed NAL units.
    pub data: Bytes,
}

/// Why a packet could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DepayError {
    #[error("RTP packet too short or malformed")]
    Malformed,
    #[error("H.264 packetization type {0} is not supported (single NAL, STAP-A and FU-A are)")]
    Unsupported(u8),
    #[error("access unit larger than 16 MiB")]
    TooLarge,
}

/// The SPS and PPS the stream uses, and what they say.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ParameterSets {
    pub sps: Option<Bytes>,
    pub pps: Option<Bytes>,
}

/// Frame size and rate from an SPS.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpsInfo {
    pub profile_idc: u8,
    pub width: u32,
    pub height: u32,
    /// From the VUI timing info, when present.
    pub fps: Option<f64>,
}

/// Reassembles access units from RTP payloads (in sequence order).
#[derive(Debug, Default)]
pub struct Depacketizer {
    au: BytesMut,
    au_ts: Option<u32>,
    keyframe: bool,
    /// Bytes of the NAL being reassembled from FU-A fragments, with its 4-byte length slot at
    /// `fu_start`.
    fu_start: Option<usize>,
    /// Set by a lost packet: the unit is dropped.
    broken: bool,
    /// After a loss, units are dropped until the next keyframe (the frames in between would
    /// decode with errors: better a visible hole than corrupt evidence).
    await_keyframe: bool,
    pub params: ParameterSets,
    /// Parameter sets changed since the last `take_params_changed`.
    params_changed: bool,
}

impl Depacketizer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parameter sets known before the stream sends them (the SDP's `sprop-parameter-sets`).
    pub fn preload(&mut self, sps: &[u8], pps: &[u8]) {
        self.set_param(true, sps);
        self.set_param(false, pps);
    }

    /// True once after the SPS or PPS changed.
    pub fn take_params_changed(&mut self) -> bool {
        std::mem::take(&mut self.params_changed)
    }

    /// A packet was lost: the unit being built is dropped, and so is every unit until the
    /// next keyframe.
    pub fn lost(&mut self) {
        self.broken = true;
        self.await_keyframe = true;
        self.fu_start = None;
    }

    /// An FU-A run that ends without its end fragment (another packet, a new run or the end
    /// of the unit came first) leaves a NAL unit cut short: the unit is dropped like after a
    /// loss, and so is every unit until the next keyframe, which no longer decodes cleanly.
    fn abandon_fragments(&mut self) {
        if self.fu_start.take().is_some() {
            self.broken = true;
            self.await_keyframe = true;
        }
    }

    fn finish(&mut self) -> Option<AccessUnit> {
        self.abandon_fragments();
        let ts = self.au_ts.take()?;
        let data = self.au.split().freeze();
        let keyframe = std::mem::take(&mut self.keyframe);
        let broken = std::mem::take(&mut self.broken);
        self.fu_start = None;
        if broken || data.is_empty() || (self.await_keyframe && !keyframe) {
            return None;
        }
        self.await_keyframe = false;
        Some(AccessUnit {
            rtp_ts: ts,
            keyframe,
            data,
        })
    }

    fn push_nal(&mut self, nal: &[u8]) -> Result<(), DepayError> {
        if nal.is_empty() {
            return Ok(());
        }
        let kind = nal[0] & 0x1f;
        match kind {
            7 => self.set_param(true, nal),
            8 => self.set_param(false, nal),
            // Access unit delimiters carry nothing the file needs.
            9 => return Ok(()),
            5 => self.keyframe = true,
            _ => {}
        }
        if self.au.len() + nal.len() + 4 > MAX_AU_BYTES {
            return Err(DepayError::TooLarge);
        }
        self.au.put_u32(nal.len() as u32);
        self.au.put_slice(nal);
        Ok(())
    }

    fn set_param(&mut self, sps: bool, nal: &[u8]) {
        let slot = if sps {
            &mut self.params.sps
        } else {
            &mut self.params.pps
        };
        if slot.as_deref() != Some(nal) {
            *slot = Some(Bytes::copy_from_slice(nal));
            self.params_changed = true;
        }
    }

    /// Takes one RTP payload with its timestamp and marker bit; returns the access units it
    /// completes (a timestamp change completes the previous one, the marker bit this one).
    pub fn push(
        &mut self,
        ts: u32,
        marker: bool,
        payload: &[u8],
    ) -> Result<Vec<AccessUnit>, DepayError> {
        let mut out = Vec::new();
        if self.au_ts.is_some_and(|t| t != ts)
            && let Some(au) = self.finish()
        {
            out.push(au);
        }
        if self.au_ts.is_none() {
            self.au_ts = Some(ts);
        }
        let Some(&first) = payload.first() else {
            return Err(DepayError::Malformed);
        };
        match first & 0x1f {
            1..=23 => {
                self.abandon_fragments();
                self.push_nal(payload)?;
            }
            24 => {
                // STAP-A: 16-bit sizes, then NAL units.
                self.abandon_fragments();
                let mut rest = &payload[1..];
                while rest.len() >= 2 {
                    let n = u16::from_be_bytes([rest[0], rest[1]]) as usize;
                    if n == 0 || rest.len() < 2 + n {
                        return Err(DepayError::Malformed);
                    }
                    self.push_nal(&rest[2..2 + n])?;
                    rest = &rest[2 + n..];
                }
            }
            28 => {
                if payload.len() < 2 {
                    return Err(DepayError::Malformed);
                }
                let fu = payload[1];
                let (start, end) = (fu & 0x80 != 0, fu & 0x40 != 0);
                let header = (first & 0xe0) | (fu & 0x1f);
                if start {
                    self.abandon_fragments();
                    if self.au.len() + payload.len() + 4 > MAX_AU_BYTES {
                        return Err(DepayError::TooLarge);
                    }
                    let at = self.au.len();
                    self.au.put_u32(0);
                    self.au.put_u8(header);
                    self.fu_start = Some(at);
                } else if self.fu_start.is_none() {
                    // A fragment without its start (after a loss): the unit is unusable.
                    self.broken = true;
                    return Ok(out);
                }
                if self.au.len() + payload.len() > MAX_AU_BYTES {
                    return Err(DepayError::TooLarge);
                }
                self.au.put_slice(&payload[2..]);
                if end && let Some(at) = self.fu_start.take() {
                    let len = (self.au.len() - at - 4) as u32;
                    self.au[at..at + 4].copy_from_slice(&len.to_be_bytes());
                    match header & 0x1f {
                        5 => self.keyframe = true,
                        7 | 8 => {
                            let nal = self.au[at + 4..].to_vec();
                            self.set_param(header & 0x1f == 7, &nal);
                        }
                        _ => {}
                    }
                }
            }
            other => return Err(DepayError::Unsupported(other)),
        }
        if marker && let Some(au) = self.finish() {
            out.push(au);
        }
        Ok(out)
    }
}

/// The `avcC` record (ISO/IEC 14496-15) of one SPS and one PPS.
pub fn avcc(sps: &[u8], pps: &[u8]) -> Option<Vec<u8>> {
    if sps.len() < 4 || pps.is_empty() || sps.len() > 0xffff || pps.len() > 0xffff {
        return None;
    }
    let mut v = Vec::with_capacity(11 + sps.len() + pps.len());
    v.push(1);
    v.extend_from_slice(&sps[1..4]);
    v.push(0xff); // 4-byte NAL lengths
    v.push(0xe1); // one SPS
    v.extend_from_slice(&(sps.len() as u16).to_be_bytes());
    v.extend_from_slice(sps);
    v.push(1); // one PPS
    v.extend_from_slice(&(pps.len() as u16).to_be_bytes());
    v.extend_from_slice(pps);
    Some(v)
}

/// Reads bits of an RBSP (emulation-prevention bytes removed).
struct Bits {
    data: Vec<u8>,
    pos: usize,
}

impl Bits {
    fn new(nal: &[u8]) -> Bits {
        let mut data = Vec::with_capacity(nal.len());
        let mut zeros = 0;
        for &b in nal {
            if zeros >= 2 && b == 3 {
                zeros = 0;
                continue;
            }
            zeros = if b == 0 { zeros + 1 } else { 0 };
            data.push(b);
        }
        Bits { data, pos: 0 }
    }

    fn bit(&mut self) -> Option<u32> {
        let byte = *self.data.get(self.pos / 8)?;
        let b = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Some(u32::from(b))
    }

    fn bits(&mut self, n: u32) -> Option<u32> {
        let mut v = 0u32;
        for _ in 0..n {
            v = (v << 1) | self.bit()?;
        }
        Some(v)
    }

    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        Some(((1u64 << zeros) - 1 + u64::from(self.bits(zeros)?)) as u32)
    }

    fn se(&mut self) -> Option<i32> {
        let k = self.ue()?;
        Some(if k % 2 == 1 {
            k.div_ceil(2) as i32
        } else {
            -((k / 2) as i32)
        })
    }
}

fn skip_scaling_list(b: &mut Bits, size: usize) -> Option<()> {
    let (mut last, mut next) = (8i64, 8i64);
    for _ in 0..size {
        if next != 0 {
            next = (last + i64::from(b.se()?)).rem_euclid(256);
        }
        if next != 0 {
            last = next;
        }
    }
    Some(())
}

/// Largest picture dimension accepted, in macroblocks (16,384 pixels).
const MAX_MBS: u32 = 1024;

/// Frame size and rate of an SPS NAL unit (with its header byte).
pub fn parse_sps(nal: &[u8]) -> Option<SpsInfo> {
    if nal.len() < 4 || nal[0] & 0x1f != 7 {
        return None;
    }
    let mut b = Bits::new(&nal[1..]);
    let profile_idc = b.bits(8)? as u8;
    b.bits(16)?; // constraint flags, level
    b.ue()?; // sps id
    let mut chroma_format_idc = 1;
    let mut separate_colour_plane = 0;
    if matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format_idc = b.ue()?;
        if chroma_format_idc == 3 {
            separate_colour_plane = b.bit()?;
        }
        b.ue()?; // bit depth luma
        b.ue()?; // bit depth chroma
        b.bit()?; // qpprime bypass
        if b.bit()? == 1 {
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if b.bit()? == 1 {
                    skip_scaling_list(&mut b, if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    b.ue()?; // log2 max frame num
    match b.ue()? {
        0 => {
            b.ue()?;
        }
        1 => {
            b.bit()?;
            b.se()?;
            b.se()?;
            let n = b.ue()?;
            for _ in 0..n.min(256) {
                b.se()?;
            }
        }
        _ => {}
    }
    b.ue()?; // max ref frames
    b.bit()?; // gaps allowed
    let width_mbs = b.ue()? + 1;
    let height_map_units = b.ue()? + 1;
    let frame_mbs_only = b.bit()?;
    if frame_mbs_only == 0 {
        b.bit()?; // mb adaptive
    }
    b.bit()?; // direct 8x8
    let (mut crop_l, mut crop_r, mut crop_t, mut crop_b) = (0, 0, 0, 0);
    if b.bit()? == 1 {
        crop_l = b.ue()?;
        crop_r = b.ue()?;
        crop_t = b.ue()?;
        crop_b = b.ue()?;
    }
    let chroma_array_type = if separate_colour_plane == 1 {
        0
    } else {
        chroma_format_idc
    };
    let (crop_x, crop_y): (u32, u32) = match chroma_array_type {
        1 => (2, 2 * (2 - frame_mbs_only)),
        2 => (2, 2 - frame_mbs_only),
        3 => (1, 2 - frame_mbs_only),
        _ => (1, 2 - frame_mbs_only),
    };
    // Every product is checked: an SPS is camera input, and a hostile one must give `None`,
    // never an overflow. No real picture is wider or taller than MAX_MBS macroblocks.
    if width_mbs > MAX_MBS || height_map_units > MAX_MBS {
        return None;
    }
    let width = (width_mbs * 16).checked_sub(crop_x.checked_mul(crop_l.checked_add(crop_r)?)?)?;
    let height = (height_map_units * 16 * (2 - frame_mbs_only))
        .checked_sub(crop_y.checked_mul(crop_t.checked_add(crop_b)?)?)?;
    if width == 0 || height == 0 {
        return None;
    }
    let mut fps = None;
    if b.bit() == Some(1) {
        // VUI: skip to the timing info.
        if b.bit()? == 1 && b.bits(8)? == 255 {
            b.bits(32)?; // sar
        }
        if b.bit()? == 1 {
            b.bit()?; // overscan appropriate
        }
        if b.bit()? == 1 {
            b.bits(4)?; // video format, full range
            if b.bit()? == 1 {
                b.bits(24)?; // colour description
            }
        }
        if b.bit()? == 1 {
            b.ue()?;
            b.ue()?;
        }
        if b.bit()? == 1 {
            let units = b.bits(32)?;
            let scale = b.bits(32)?;
            if units > 0 && scale > 0 {
                fps = Some(f64::from(scale) / (2.0 * f64::from(units)));
            }
        }
    }
    Some(SpsInfo {
        profile_idc,
        width,
        height,
        fps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // x264's SPS of a 1920x1080 High profile stream at 25 fps (timing info in the VUI).
    const SPS_1080P: &[u8] = &[
        0x67, 0x64, 0x00, 0x28, 0xac, 0xd9, 0x40, 0x78, 0x02, 0x27, 0xe5, 0xc0, 0x44, 0x00, 0x00,
        0x03, 0x00, 0x04, 0x00, 0x00, 0x03, 0x00, 0xc8, 0x3c, 0x60, 0xc6, 0x58,
    ];

    #[test]
    fn sps_gives_size_and_rate() {
        let i = parse_sps(SPS_1080P).unwrap();
        assert_eq!((i.profile_idc, i.width, i.height), (100, 1920, 1080));
        assert_eq!(i.fps, Some(25.0));
    }

    #[test]
    fn fu_a_and_stap_a_make_one_unit() {
        let mut d = Depacketizer::new();
        // STAP-A with SPS and PPS.
        let mut stap = vec![24u8];
        for nal in [SPS_1080P, &[0x68, 0xeb, 0xe3, 0xcb][..]] {
            stap.extend_from_slice(&(nal.len() as u16).to_be_bytes());
            stap.extend_from_slice(nal);
        }
        assert!(d.push(1000, false, &stap).unwrap().is_empty());
        // An IDR slice in three fragments.
        let idr = [0x65u8, 1, 2, 3, 4, 5, 6, 7, 8];
        let frag = |s: bool, e: bool, body: &[u8]| {
            let mut p = vec![
                (idr[0] & 0xe0) | 28,
                (idr[0] & 0x1f) | if s { 0x80 } else { 0 } | if e { 0x40 } else { 0 },
            ];
            p.extend_from_slice(body);
            p
        };
        assert!(
            d.push(1000, false, &frag(true, false, &idr[1..3]))
                .unwrap()
                .is_empty()
        );
        assert!(
            d.push(1000, false, &frag(false, false, &idr[3..6]))
                .unwrap()
                .is_empty()
        );
        let out = d.push(1000, true, &frag(false, true, &idr[6..])).unwrap();
        assert_eq!(out.len(), 1);
        let au = &out[0];
        assert!(au.keyframe);
        assert_eq!(au.rtp_ts, 1000);
        // SPS, PPS, IDR, each length-prefixed.
        let mut want = Vec::new();
        for nal in [SPS_1080P, &[0x68, 0xeb, 0xe3, 0xcb][..], &idr[..]] {
            want.extend_from_slice(&(nal.len() as u32).to_be_bytes());
            want.extend_from_slice(nal);
        }
        assert_eq!(&au.data[..], &want[..]);
        assert!(d.take_params_changed());
        let avcc = avcc(
            d.params.sps.as_ref().unwrap(),
            d.params.pps.as_ref().unwrap(),
        )
        .unwrap();
        assert_eq!(&avcc[..6], &[1, 0x64, 0x00, 0x28, 0xff, 0xe1]);
    }

    #[test]
    fn a_timestamp_change_ends_a_unit_and_a_loss_drops_it() {
        let mut d = Depacketizer::new();
        assert!(d.push(1, false, &[0x41, 9, 9]).unwrap().is_empty());
        let out = d.push(2, false, &[0x41, 8]).unwrap();
        assert_eq!(out.len(), 1);
        assert!(!out[0].keyframe);
        // A loss drops the unit in progress and every unit up to the next keyframe.
        d.lost();
        assert!(d.push(3, true, &[0x41, 7]).unwrap().is_empty());
        // A fragment without its start is not glued to anything.
        assert!(d.push(4, true, &[0x5c, 0x41, 1]).unwrap().is_empty());
        assert!(d.push(5, true, &[0x41, 6]).unwrap().is_empty());
        let idr = d.push(6, true, &[0x65, 6]).unwrap();
        assert!(idr.len() == 1 && idr[0].keyframe);
        assert_eq!(d.push(7, true, &[0x41, 6]).unwrap().len(), 1);
    }

    /// Issue 9, finding 8: an FU-A run cut short (no end fragment before the next packet,
    /// run or unit end) is never written as a unit, nor is anything until the next IDR.
    #[test]
    fn a_fragment_run_cut_short_drops_the_unit() {
        let idr = [0x65u8, 1, 2, 3, 4, 5, 6];
        let fu = |start: bool, end: bool, body: &[u8]| {
            let mut p = vec![
                (idr[0] & 0xe0) | 28,
                (idr[0] & 0x1f) | if start { 0x80 } else { 0 } | if end { 0x40 } else { 0 },
            ];
            p.extend_from_slice(body);
            p
        };
        let p_slice = [0x41u8, 9, 9, 9];
        // Start, then a single NAL of the same unit (the end fragment never came), marker.
        let mut d = Depacketizer::new();
        assert!(
            d.push(1, false, &fu(true, false, &idr[1..4]))
                .unwrap()
                .is_empty()
        );
        assert!(
            d.push(1, true, &p_slice).unwrap().is_empty(),
            "cut unit written"
        );
        // The next P frame refers to the broken one: dropped too.
        assert!(d.push(2, true, &p_slice).unwrap().is_empty());
        // A whole IDR in fragments recovers.
        assert!(
            d.push(3, false, &fu(true, false, &idr[1..4]))
                .unwrap()
                .is_empty()
        );
        let au = d.push(3, true, &fu(false, true, &idr[4..])).unwrap();
        assert_eq!(au.len(), 1);
        assert!(au[0].keyframe);
        assert_eq!(&au[0].data[..], &[0, 0, 0, 7, 0x65, 1, 2, 3, 4, 5, 6]);

        // A run that the unit's end (marker) cuts, and one a new run's start cuts.
        let mut d = Depacketizer::new();
        assert!(
            d.push(1, true, &fu(true, false, &idr[1..4]))
                .unwrap()
                .is_empty()
        );
        let mut d = Depacketizer::new();
        d.push(1, false, &fu(true, false, &idr[1..4])).unwrap();
        d.push(1, false, &fu(true, false, &idr[1..4])).unwrap();
        assert!(
            d.push(1, true, &fu(false, true, &idr[4..]))
                .unwrap()
                .is_empty()
        );
        // A run cut by a timestamp change.
        let mut d = Depacketizer::new();
        d.push(1, false, &fu(true, false, &idr[1..4])).unwrap();
        assert!(d.push(2, false, &p_slice).unwrap().is_empty());
    }

    /// An SPS NAL unit of the given RBSP bits (zero-padded to a byte).
    fn sps_from_bits(bits: &str) -> Vec<u8> {
        let mut bits = bits.to_string();
        while !bits.len().is_multiple_of(8) {
            bits.push('0');
        }
        let mut nal = vec![0x67];
        for chunk in bits.as_bytes().chunks(8) {
            nal.push(u8::from_str_radix(std::str::from_utf8(chunk).unwrap(), 2).unwrap());
        }
        nal
    }

    /// Issue 9, finding 8: SPS fields at their extremes give `None`, never an overflow.
    #[test]
    fn hostile_sps_values_do_not_overflow() {
        // profile 66 (no chroma fields); every ue(v) as large as it gets (31 leading zeros,
        // then 32 one bits), so sizes and crops would overflow u32 arithmetic.
        let mut bits = String::new();
        bits.push_str("01000010"); // profile_idc 66
        bits.push_str(&"0".repeat(16)); // constraints, level
        let huge = format!("{}1{}", "0".repeat(31), "1".repeat(31));
        for _ in 0..3 {
            bits.push('1'); // sps id, log2 max frame num, poc type 0 → ue 0
        }
        bits.push('1'); // log2 max poc lsb
        bits.push('1'); // max ref frames
        bits.push('0'); // gaps
        bits.push_str(&huge); // width in mbs
        bits.push_str(&huge); // height in map units
        bits.push('1'); // frame mbs only
        bits.push('1'); // direct 8x8
        bits.push('1'); // cropping
        for _ in 0..4 {
            bits.push_str(&huge);
        }
        assert_eq!(parse_sps(&sps_from_bits(&bits)), None);
        // Small sizes with huge crops.
        let mut bits = String::from("01000010");
        bits.push_str(&"0".repeat(16));
        bits.push_str("111110");
        bits.push_str("00101"); // width 4 mbs → ue 4 = 00101
        bits.push_str("00101");
        bits.push_str("111");
        for _ in 0..4 {
            bits.push_str(&huge);
        }
        assert_eq!(parse_sps(&sps_from_bits(&bits)), None);
    }

    proptest::proptest! {
        /// Any bytes after an SPS header: a result or `None`, never a panic.
        #[test]
        fn arbitrary_sps_never_panics(body in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let mut nal = vec![0x67];
            nal.extend(body);
            let _ = parse_sps(&nal);
        }

        /// Any sequence of payloads: units or errors, never a panic, and every unit is whole
        /// length-prefixed NAL units.
        #[test]
        fn arbitrary_payloads_give_whole_units(
            packets in proptest::collection::vec(
                (0u32..4, proptest::bool::ANY, proptest::collection::vec(proptest::num::u8::ANY, 0..40)),
                0..40,
            )
        ) {
            let mut d = Depacketizer::new();
            for (ts, marker, payload) in packets {
                if let Ok(units) = d.push(ts, marker, &payload) {
                    for u in units {
                        let mut rest = &u.data[..];
                        while !rest.is_empty() {
                            proptest::prop_assert!(rest.len() >= 4);
                            let n = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                            proptest::prop_assert!(n > 0 && rest.len() >= 4 + n, "broken unit {:?}", u.data);
                            rest = &rest[4 + n..];
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn unsupported_packetization_is_named() {
        let mut d = Depacketizer::new();
        assert_eq!(
            d.push(1, true, &[0x1a, 0]),
            Err(DepayError::Unsupported(26))
        );
    }
}
