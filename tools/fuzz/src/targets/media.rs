//! fMP4 segments read back from the bucket: the box walk transcode uses to place a
//! segment on its media timeline (first `tfdt` and the track's `mdhd` timescale). Seeds are
//! segments written by Kordon's own fMP4 writer.

use bytes::Bytes;
use kordon_media::fmp4::{Sample, SegmentWriter};
use kordon_media::{Codec, TrackConfig};

pub fn run(input: &[u8]) -> String {
    match kordon_transcode::pipeline::first_decode_time(input) {
        Some((tfdt, timescale)) => format!("ok: tfdt {tfdt} at {timescale}"),
        None => "not a fragment".into(),
    }
}

fn segment(codec: Codec, base: u64, frames: u64) -> Vec<u8> {
    let (codec_data, nal) = match codec {
        // avcC: version 1, profile 66, level 30, 4-byte lengths, one SPS, one PPS
        Codec::H264 => (
            vec![
                1, 0x42, 0xc0, 0x1e, 0xff, 0xe1, 0, 5, 0x67, 0x42, 0xc0, 0x1e, 0xd9, 1, 0, 4, 0x68,
                0xce, 0x3c, 0x80,
            ],
            0x65u8,
        ),
        Codec::H265 => unreachable!("the seeds are H.264 (an hvcC needs real parameter sets)"),
    };
    let track = TrackConfig {
        codec,
        codec_data,
        width: 320,
        height: 240,
        timescale: 90_000,
    };
    let mut w = SegmentWriter::new_at(Vec::new(), &track, base).expect("writer");
    for i in 0..frames {
        let dts = base + i * 3600;
        let mut data = vec![0, 0, 0, 5, nal, 0x88, 0x84, 0x00, (i & 0xff) as u8];
        data[4] = if i == 0 { nal } else { nal & 0xe0 | 1 };
        w.push(Sample {
            dts,
            pts: dts + 3600,
            keyframe: i == 0,
            data: Bytes::from(data),
        })
        .expect("sample");
    }
    w.finish(3600).expect("finish").0
}

pub fn seeds() -> Vec<Vec<u8>> {
    vec![
        segment(Codec::H264, 0, 4),
        segment(Codec::H264, 900_000_000_000, 3),
        segment(Codec::H264, u64::from(u32::MAX) + 7, 2),
    ]
}

pub const WORDS: &[&[u8]] = &[
    b"ftyp",
    b"moov",
    b"trak",
    b"mdia",
    b"mdhd",
    b"moof",
    b"traf",
    b"tfdt",
    b"trun",
    b"mdat",
    b"\x00\x00\x00\x00",
    b"\x00\x00\x00\x01",
    b"\x00\x00\x00\x08",
    b"\xff\xff\xff\xff",
    b"\x01\x00\x00\x00",
];
