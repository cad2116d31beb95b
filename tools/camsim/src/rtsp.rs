//! gst-rtsp-server: channels, mounts, the GLib main loop thread, and per-camera faults.
//!
//! A *channel* is one shared media (one `appsrc ! rtph26xpay` pipeline) that serves every client
//! of every camera mounted on it: the RTP packets are made once and written to each client's
//! transport. Per-client pipelines would cost a pipeline's worth of thread wake-ups per frame and
//! client; sharing is what lets one core serve hundreds of cameras.
//!
//! Faults are therefore applied per client *transport*, on the main loop thread: a stall
//! switches a camera's transports off and on again (sessions stay, media stops), a stop sends
//! them an RTCP BYE (the player sees EOS), switches them off and closes their connections.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::{Arc, Mutex, PoisonError},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use gstreamer::{self as gst, glib, prelude::*};
use gstreamer_app as gst_app;
use gstreamer_rtsp_server::{self as rtsp_server, gst_rtsp, prelude::*};

use crate::{
    CamsimError,
    camera::{Camera, CameraState},
    config::{Codec, StreamKind},
    feeder::Feeder,
    media::EncodedStream,
};

/// Time between a camera's stop (RTCP BYE to its clients) and the server closing their
/// connections: long enough for the BYE to arrive first.
const CLOSE_AFTER_STOP: Duration = Duration::from_millis(500);
/// How often sessions of clients that vanished without TEARDOWN are cleaned up.
const SESSION_CLEANUP_INTERVAL: Duration = Duration::from_secs(2);

/// What one channel plays.
pub(crate) struct ChannelSpec {
    pub stream: Arc<EncodedStream>,
    /// Where in the loop the channel is at the server's start, so that channels showing the same
    /// clip are at different points of it.
    pub offset_ns: u64,
}

mod factory {
    use gstreamer::glib;
    use gstreamer_rtsp_server::{self as rtsp_server, gst_rtsp, subclass::prelude::*};

    mod imp {
        use super::*;

        /// A media factory whose media is shared by every URL it is mounted at.
        #[derive(Default)]
        pub struct ChannelFactory;

        #[glib::object_subclass]
        impl ObjectSubclass for ChannelFactory {
            const NAME: &'static str = "KordonCamsimChannelFactory";
            type Type = super::ChannelFactory;
            type ParentType = rtsp_server::RTSPMediaFactory;
        }

        impl ObjectImpl for ChannelFactory {}

        impl RTSPMediaFactoryImpl for ChannelFactory {
            // The default key is the request URL, which would give each camera path its own
            // media; one key for all makes the channel's cameras share one.
            fn gen_key(&self, _url: &gst_rtsp::RTSPUrl) -> Option<glib::GString> {
                Some("channel".into())
            }
        }
    }

    glib::wrapper! {
        pub struct ChannelFactory(ObjectSubclass<imp::ChannelFactory>)
            @extends rtsp_server::RTSPMediaFactory;
    }

    impl ChannelFactory {
        pub fn new() -> ChannelFactory {
            glib::Object::new()
        }
    }
}

use factory::ChannelFactory;

pub(crate) fn payloader(codec: Codec) -> &'static str {
    match codec {
        Codec::H264 => "rtph264pay",
        Codec::H265 => "rtph265pay",
    }
}

fn channel_factory(
    spec: &ChannelSpec,
    codec: Codec,
    refuse_tcp: bool,
    epoch: Instant,
) -> ChannelFactory {
    let factory = ChannelFactory::new();
    if refuse_tcp {
        // A SETUP asking for RTP over TCP is answered 461 Unsupported Transport.
        factory.set_protocols(gst_rtsp::RTSPLowerTrans::UDP);
    }
    // Parameter sets are in-band before every keyframe, so the payloader needs no
    // config-interval.
    factory.set_launch(&format!(
        "( appsrc name=src ! {} name=pay0 pt=96 )",
        payloader(codec)
    ));
    factory.set_shared(true);
    factory.set_eos_shutdown(false);
    let stream = spec.stream.clone();
    let offset_ns = spec.offset_ns;
    factory.connect_media_configure(move |_, media| {
        let appsrc = media
            .element()
            .downcast::<gst::Bin>()
            .ok()
            .and_then(|bin| bin.by_name("src"))
            .and_then(|src| src.downcast::<gst_app::AppSrc>().ok());
        match appsrc {
            Some(appsrc) => {
                let elapsed = u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
                Feeder::attach(&appsrc, stream.clone(), elapsed.saturating_add(offset_ns));
            }
            None => tracing::error!("channel media without appsrc"),
        }
    });
    factory
}

/// gst-rtsp-server on its own GLib main loop thread.
pub(crate) struct RtspServer {
    server: rtsp_server::RTSPServer,
    mounts: rtsp_server::RTSPMountPoints,
    factories: Vec<ChannelFactory>,
    context: glib::MainContext,
    main_loop: glib::MainLoop,
    source: Mutex<Option<glib::SourceId>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    pub addr: SocketAddr,
    /// Address put into URLs (loopback when listening on every interface).
    url_addr: SocketAddr,
}

impl RtspServer {
    pub fn start(
        listen: SocketAddr,
        codec: Codec,
        refuse_tcp: bool,
        channels: &[ChannelSpec],
        cameras: Arc<[Arc<Camera>]>,
    ) -> Result<RtspServer, CamsimError> {
        let server = rtsp_server::RTSPServer::new();
        server.set_address(&listen.ip().to_string());
        server.set_service(&listen.port().to_string());
        let mounts = server
            .mount_points()
            .ok_or_else(|| CamsimError::Server("no mount points".into()))?;
        let epoch = Instant::now();
        let factories = channels
            .iter()
            .map(|spec| channel_factory(spec, codec, refuse_tcp, epoch))
            .collect();

        // A client that starts playing a stalled camera is switched off like the others.
        let stall_cameras = cameras.clone();
        server.connect_client_connected(move |_, client| {
            let cameras = stall_cameras.clone();
            client.connect_play_request(move |_, ctx| {
                let camera = ctx
                    .uri()
                    .and_then(|url| camera_index(&url.decode_path_components()))
                    .and_then(|index| cameras.get(index.checked_sub(1)?));
                if let Some(camera) = camera
                    && camera.state() == CameraState::Stalled
                    && let Some(session) = ctx.session()
                {
                    let paths = camera.paths();
                    session.filter(Some(&mut |_, media| {
                        if serves_any(media, &paths) && camera.add_stalled(media.clone()) {
                            set_transports_active(media, false);
                        }
                        rtsp_server::RTSPFilterResult::Keep
                    }));
                }
            });
        });

        let context = glib::MainContext::new();
        let source = server
            .attach(Some(&context))
            .map_err(|e| CamsimError::Bind {
                what: "RTSP",
                addr: listen,
                message: e.to_string(),
            })?;
        let port = u16::try_from(server.bound_port()).map_err(|_| CamsimError::Bind {
            what: "RTSP",
            addr: listen,
            message: "no port bound".into(),
        })?;
        let url_ip = match listen.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };

        if let Some(pool) = server.session_pool() {
            glib::timeout_source_new(
                SESSION_CLEANUP_INTERVAL,
                Some("camsim-session-cleanup"),
                glib::Priority::DEFAULT,
                move || {
                    pool.cleanup();
                    glib::ControlFlow::Continue
                },
            )
            .attach(Some(&context));
        }

        let main_loop = glib::MainLoop::new(Some(&context), false);
        let thread = {
            let context = context.clone();
            let main_loop = main_loop.clone();
            std::thread::Builder::new()
                .name("camsim-rtsp".into())
                .spawn(move || {
                    if let Err(error) = context.with_thread_default(|| main_loop.run()) {
                        tracing::error!(%error, "cannot run the RTSP main loop");
                    }
                })
                .map_err(|e| CamsimError::Runtime {
                    what: "the RTSP thread",
                    message: e.to_string(),
                })?
        };

        let rtsp = RtspServer {
            server,
            mounts,
            factories,
            context,
            main_loop,
            source: Mutex::new(Some(source)),
            thread: Mutex::new(Some(thread)),
            addr: SocketAddr::new(listen.ip(), port),
            url_addr: SocketAddr::new(url_ip, port),
        };
        for camera in cameras.iter() {
            rtsp.mount(camera);
        }
        Ok(rtsp)
    }

    pub fn url(&self, path: &str) -> String {
        format!("rtsp://{}{path}", self.url_addr)
    }

    pub fn mount(&self, camera: &Camera) {
        for (kind, channel) in StreamKind::ALL.iter().zip(camera.channels) {
            if let Some(factory) = self.factories.get(channel) {
                self.mounts
                    .add_factory(&camera.path(*kind), factory.clone());
            }
        }
    }

    pub fn unmount(&self, camera: &Camera) {
        for path in camera.paths() {
            self.mounts.remove_factory(&path);
        }
    }

    /// RTSP sessions on `path` right now.
    pub fn session_count(&self, path: &str) -> usize {
        let paths = [path.to_owned()];
        sessions_on(&self.server, &paths).len()
    }

    /// Runs `f` on the main loop thread, after `delay` when given.
    fn on_main_loop(&self, delay: Option<Duration>, f: impl FnOnce() + Send + 'static) {
        match delay {
            None => self.context.invoke(f),
            Some(delay) => {
                let mut f = Some(f);
                glib::timeout_source_new(delay, None, glib::Priority::DEFAULT, move || {
                    if let Some(f) = f.take() {
                        f();
                    }
                    glib::ControlFlow::Break
                })
                .attach(Some(&self.context));
            }
        }
    }

    /// Switches off the media of every session on `camera`, and remembers them for the resume.
    pub fn stall(&self, camera: Arc<Camera>) {
        let server = self.server.clone();
        self.on_main_loop(None, move || {
            for (_, media) in sessions_on(&server, &camera.paths()) {
                if camera.add_stalled(media.clone()) {
                    set_transports_active(&media, false);
                }
            }
        });
    }

    /// Ends stall `generation` of `camera` after `delay`, unless a start or another stall came
    /// first.
    pub fn end_stall_after(&self, delay: Duration, camera: Arc<Camera>, generation: u64) {
        let server = self.server.clone();
        self.on_main_loop(Some(delay), move || {
            if let Some(stalled) = camera.end_stall(generation) {
                tracing::info!(camera = %camera.name, "stall over");
                reactivate(&server, &camera.paths(), &stalled);
            }
        });
    }

    /// Switches the `stalled` sessions' media on again, those still connected to `camera`.
    pub fn resume(&self, camera: &Camera, stalled: Vec<rtsp_server::RTSPSessionMedia>) {
        if stalled.is_empty() {
            return;
        }
        let server = self.server.clone();
        let paths = camera.paths();
        self.on_main_loop(None, move || reactivate(&server, &paths, &stalled));
    }

    /// Ends every session on `camera`: RTCP BYE (the player sees EOS), no more media, and the
    /// connection closed shortly after.
    pub fn end_sessions(&self, camera: &Camera) {
        let server = self.server.clone();
        let context = self.context.clone();
        let paths = camera.paths();
        self.on_main_loop(None, move || {
            let mut clients: Vec<rtsp_server::RTSPClient> = Vec::new();
            for (client, media) in sessions_on(&server, &paths) {
                for transport in media.transports() {
                    if let Some(stream) = transport.stream() {
                        let _ =
                            transport.send_rtcp(&gst::Buffer::from_slice(rtcp_bye(stream.ssrc())));
                    }
                    let _ = transport.set_active(false);
                }
                if !clients.contains(&client) {
                    clients.push(client);
                }
            }
            if !clients.is_empty() {
                let mut clients = Some(clients);
                glib::timeout_source_new(
                    CLOSE_AFTER_STOP,
                    None,
                    glib::Priority::DEFAULT,
                    move || {
                        for client in clients.take().into_iter().flatten() {
                            client.close();
                        }
                        glib::ControlFlow::Break
                    },
                )
                .attach(Some(&context));
            }
        });
    }

    /// Disconnects every client, stops listening and ends the main loop thread.
    pub fn shutdown(&self) {
        let Some(thread) = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        else {
            return;
        };
        let source = self
            .source
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let server = self.server.clone();
        let context = self.context.clone();
        let main_loop = self.main_loop.clone();
        self.context.invoke(move || {
            let clients =
                server.client_filter(Some(&mut |_, _| rtsp_server::RTSPFilterResult::Ref));
            for client in clients {
                client.close();
            }
            if let Some(source) = source.and_then(|id| context.find_source_by_id(&id)) {
                source.destroy();
            }
            main_loop.quit();
        });
        if thread.join().is_err() {
            tracing::error!("the RTSP main loop thread panicked");
        }
    }
}

impl Drop for RtspServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The camera number in a request path `/cam<N>/...`.
fn camera_index(components: &[glib::GString]) -> Option<usize> {
    components
        .iter()
        .find(|c| !c.is_empty())?
        .strip_prefix("cam")?
        .parse()
        .ok()
}

/// Whether a session media serves exactly one of `paths`.
fn serves_any(media: &rtsp_server::RTSPSessionMedia, paths: &[String]) -> bool {
    paths
        .iter()
        .any(|path| media.matches(path) == i32::try_from(path.len()).ok())
}

/// Every (client, session media) on one of `paths`.
fn sessions_on(
    server: &rtsp_server::RTSPServer,
    paths: &[String],
) -> Vec<(rtsp_server::RTSPClient, rtsp_server::RTSPSessionMedia)> {
    let mut found = Vec::new();
    server.client_filter(Some(&mut |_, client| {
        client.session_filter(Some(&mut |_, session| {
            session.filter(Some(&mut |_, media| {
                if serves_any(media, paths) {
                    found.push((client.clone(), media.clone()));
                }
                rtsp_server::RTSPFilterResult::Keep
            }));
            rtsp_server::RTSPFilterResult::Keep
        }));
        rtsp_server::RTSPFilterResult::Keep
    }));
    found
}

/// Switches on the transports of those `stalled` sessions that are still on `paths` (a client
/// that left during the stall must not get its transport back).
fn reactivate(
    server: &rtsp_server::RTSPServer,
    paths: &[String],
    stalled: &[rtsp_server::RTSPSessionMedia],
) {
    for (_, media) in sessions_on(server, paths) {
        if stalled.contains(&media) {
            set_transports_active(&media, true);
        }
    }
}

fn set_transports_active(media: &rtsp_server::RTSPSessionMedia, active: bool) {
    for transport in media.transports() {
        // Fails only when already in that state.
        let _ = transport.set_active(active);
    }
}

/// A compound RTCP packet, an empty receiver report then a BYE, for `ssrc` (RFC 3550 6.6: a
/// compound packet starts with SR or RR).
fn rtcp_bye(ssrc: u32) -> Vec<u8> {
    let ssrc = ssrc.to_be_bytes();
    let mut packet = vec![0x80, 201, 0, 1];
    packet.extend_from_slice(&ssrc);
    packet.extend_from_slice(&[0x81, 203, 0, 1]);
    packet.extend_from_slice(&ssrc);
    packet
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn camera_index_comes_from_the_first_path_segment() {
        let parse = |parts: &[&str]| {
            let parts: Vec<glib::GString> = parts.iter().map(|p| (*p).into()).collect();
            camera_index(&parts)
        };
        assert_eq!(parse(&["", "cam12", "main"]), Some(12));
        assert_eq!(parse(&["", "cam3", "sub", "stream=0"]), Some(3));
        assert_eq!(parse(&["", "camera1", "main"]), None);
        assert_eq!(parse(&["", "x", "cam1"]), None);
        assert_eq!(parse(&[]), None);
    }

    #[test]
    fn rtcp_bye_is_a_valid_compound_packet() {
        let packet = rtcp_bye(0x0102_0304);
        assert_eq!(packet.len(), 16);
        // RR: version 2, no reports, length 1 word after the header.
        assert_eq!(&packet[..4], &[0x80, 201, 0, 1]);
        // BYE: version 2, one source.
        assert_eq!(&packet[8..12], &[0x81, 203, 0, 1]);
        assert_eq!(&packet[12..], &[1, 2, 3, 4]);
    }
}
