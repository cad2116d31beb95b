//! A camera (or something posing as one) whose answers are hostile: the source fails with an
//! error that names the step, and the camera's task goes on to reconnect — never a panic that
//! would end the task and, silently, the recording.

use kordon_media::source::retina::RetinaSource;
use kordon_media::{StreamConfig, Transport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// An RTSP "camera" on 127.0.0.1 that answers every request with `body` as its SDP.
async fn camera(body: &'static [u8]) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(n) = s.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                        buf.drain(..end + 4);
                        let cseq = head
                            .lines()
                            .find_map(|l| l.strip_prefix("CSeq: "))
                            .unwrap_or("1")
                            .to_string();
                        let mut answer = format!(
                            "RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\nContent-Type: application/sdp\r\n\
                             Content-Base: rtsp://127.0.0.1:{port}/cam/\r\n\
                             Content-Length: {}\r\n\r\n",
                            body.len()
                        )
                        .into_bytes();
                        answer.extend_from_slice(body);
                        if s.write_all(&answer).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    format!("rtsp://127.0.0.1:{port}/cam")
}

fn spec(url: String) -> StreamConfig {
    StreamConfig {
        name: "hostile".into(),
        url,
        transport: Transport::Tcp,
        username: None,
        password: None,
    }
}

/// Found by `kordon-fuzz run sdp`: this session description makes `sdp-types` (under retina's
/// DESCRIBE) fail an assertion.
#[tokio::test]
async fn a_describe_answer_that_panics_the_sdp_parser_is_a_refusal() {
    let sdp = include_bytes!("../../../tools/fuzz/regressions/sdp/sdp-types-assert-media-line");
    let err = match RetinaSource::open(&spec(camera(sdp).await)).await {
        Ok(_) => panic!("a malformed DESCRIBE answer was accepted"),
        Err(e) => e,
    };
    assert!(err.is_refusal(), "{err:?}");
    assert!(err.to_string().contains("DESCRIBE"), "{err}");
    assert!(err.to_string().contains("malformed"), "{err}");
}

/// A description without a video stream: refused with the reason, as before.
#[tokio::test]
async fn a_describe_answer_without_video_is_a_refusal() {
    let sdp: &[u8] = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=x\r\nt=0 0\r\n\
        m=audio 0 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    let err = match RetinaSource::open(&spec(camera(sdp).await)).await {
        Ok(_) => panic!("a camera without video was accepted"),
        Err(e) => e,
    };
    assert!(err.is_refusal(), "{err:?}");
}
