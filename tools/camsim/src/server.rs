//! Starting a simulator, and the handle that controls it.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use gstreamer as gst;

use crate::{
    CamsimConfig, CamsimError,
    camera::{Camera, CameraState, CameraStatus},
    config::{CLIP_PHASES, ClipSource, FRAME_NS, GOP_FRAMES, Source, StreamKind},
    control,
    encode::{self, Picture, Variant},
    media::EncodedStream,
    rtsp::{ChannelSpec, RtspServer, payloader},
};

/// Starts simulators. See the crate documentation for what is served.
pub struct Camsim;

impl Camsim {
    /// Encodes (or loads from the cache) every variant the configuration needs, then serves RTSP
    /// and, when `control_listen` is set, the HTTP control endpoint. Returns once both listen.
    ///
    /// The first start with a new configuration encodes for seconds (tens of seconds for H.265);
    /// later starts load the cache in milliseconds.
    pub async fn start(config: CamsimConfig) -> Result<CamsimHandle, CamsimError> {
        config.validate()?;
        gst::init().map_err(CamsimError::GstInit)?;
        encode::check_elements(&["appsrc", payloader(config.codec)])?;

        let prepared = config.clone();
        let (channels, cameras) = tokio::task::spawn_blocking(move || plan(&prepared))
            .await
            .map_err(|e| CamsimError::Runtime {
                what: "the encoder",
                message: e.to_string(),
            })??;
        let cameras: Arc<[Arc<Camera>]> = cameras.into();
        let rtsp = RtspServer::start(
            config.listen,
            config.codec,
            config.refuse_tcp,
            &channels,
            cameras.clone(),
        )?;
        let shared = Arc::new(Shared { cameras, rtsp });

        let control = match config.control_listen {
            Some(addr) => Some(control::serve(addr, shared.clone()).await?),
            None => None,
        };
        Ok(CamsimHandle { shared, control })
    }
}

/// Encodes or loads the streams, and assigns cameras to channels.
///
/// Clip: every camera shows the same clip, so its cameras share `CLIP_PHASES` channels per
/// stream kind, each at a different point of the loop (camera `i` on phase `(i - 1) % phases`).
/// Pattern: each camera shows its own name, so each has its own two channels.
fn plan(config: &CamsimConfig) -> Result<(Vec<ChannelSpec>, Vec<Arc<Camera>>), CamsimError> {
    std::fs::create_dir_all(&config.cache_dir).map_err(|source| CamsimError::Cache {
        path: config.cache_dir.clone(),
        source,
    })?;
    let obtain = |picture: &Picture| -> Result<[Arc<EncodedStream>; 2], CamsimError> {
        let mut streams = Vec::with_capacity(2);
        for kind in StreamKind::ALL {
            let variant = Variant {
                picture: picture.clone(),
                codec: config.codec,
                kind,
                bframes: config.bframes,
            };
            streams.push(encode::obtain(&variant, &config.cache_dir)?);
        }
        let [main, sub] = <[_; 2]>::try_from(streams).map_err(|_| CamsimError::Encode {
            variant: "main and sub".into(),
            message: "missing stream".into(),
        })?;
        Ok([main, sub])
    };

    let mut channels = Vec::new();
    let mut cameras = Vec::with_capacity(config.cameras);
    match config.source {
        Source::Clip => {
            let picture = match &config.clip {
                ClipSource::Embedded => encode::embedded_clip(&config.cache_dir)?,
                ClipSource::File(path) => encode::clip_file(path)?,
            };
            let streams = obtain(&picture)?;
            let phases = config.cameras.min(CLIP_PHASES);
            for stream in &streams {
                let loop_ns = stream.frames.len() as u64 * FRAME_NS;
                for phase in 0..phases {
                    // Spread the phases over the loop, on GOP boundaries.
                    let gops = (loop_ns / (u64::from(GOP_FRAMES) * FRAME_NS)).max(1);
                    let gop = phase as u64 * gops / phases as u64;
                    channels.push(ChannelSpec {
                        stream: stream.clone(),
                        offset_ns: gop * u64::from(GOP_FRAMES) * FRAME_NS,
                    });
                }
            }
            for index in 1..=config.cameras {
                let phase = (index - 1) % phases;
                cameras.push(Arc::new(Camera::new(
                    index,
                    [phase, phases + phase],
                    streams.clone(),
                )));
            }
        }
        Source::Pattern => {
            for index in 1..=config.cameras {
                if index % 10 == 0 {
                    tracing::info!(
                        camera = index,
                        of = config.cameras,
                        "preparing test patterns"
                    );
                }
                let streams = obtain(&Picture::Pattern {
                    camera: format!("cam{index}"),
                })?;
                let first = channels.len();
                for stream in &streams {
                    channels.push(ChannelSpec {
                        stream: stream.clone(),
                        offset_ns: 0,
                    });
                }
                cameras.push(Arc::new(Camera::new(index, [first, first + 1], streams)));
            }
        }
    }
    Ok((channels, cameras))
}

/// State shared by the handle and the control endpoint.
pub(crate) struct Shared {
    cameras: Arc<[Arc<Camera>]>,
    rtsp: RtspServer,
}

impl Shared {
    fn camera(&self, index: usize) -> Result<&Arc<Camera>, CamsimError> {
        index
            .checked_sub(1)
            .and_then(|i| self.cameras.get(i))
            .ok_or(CamsimError::UnknownCamera {
                index,
                cameras: self.cameras.len(),
            })
    }

    fn status_of(&self, camera: &Camera) -> CameraStatus {
        camera.status(
            |kind| self.rtsp.url(&camera.path(kind)),
            |kind| self.rtsp.session_count(&camera.path(kind)),
        )
    }

    pub fn statuses(&self) -> Vec<CameraStatus> {
        self.cameras.iter().map(|c| self.status_of(c)).collect()
    }

    pub fn status(&self, index: usize) -> Result<CameraStatus, CamsimError> {
        Ok(self.status_of(self.camera(index)?))
    }

    pub fn stop(&self, index: usize) -> Result<CameraStatus, CamsimError> {
        let camera = self.camera(index)?;
        // Unmount first, so that a request racing the stop gets 404 rather than a dead stream.
        self.rtsp.unmount(camera);
        if camera.stop() {
            tracing::info!(camera = %camera.name, "stopped");
            self.rtsp.end_sessions(camera);
        }
        Ok(self.status_of(camera))
    }

    pub fn start(&self, index: usize) -> Result<CameraStatus, CamsimError> {
        let camera = self.camera(index)?;
        let (previous, stalled) = camera.start();
        match previous {
            CameraState::Stopped => self.rtsp.mount(camera),
            CameraState::Stalled => self.rtsp.resume(camera, stalled),
            CameraState::Running => {}
        }
        if previous != CameraState::Running {
            tracing::info!(camera = %camera.name, "running");
        }
        Ok(self.status_of(camera))
    }

    pub fn stall(
        &self,
        index: usize,
        duration: Option<Duration>,
    ) -> Result<CameraStatus, CamsimError> {
        let camera = self.camera(index)?;
        let generation = camera.stall(duration)?;
        tracing::info!(
            camera = %camera.name,
            seconds = ?duration.map(|d| d.as_secs_f64()),
            "stalled"
        );
        self.rtsp.stall(camera.clone());
        if let Some(duration) = duration {
            self.rtsp
                .end_stall_after(duration, camera.clone(), generation);
        }
        Ok(self.status_of(camera))
    }
}

/// A running simulator. Dropping it stops the RTSP server; [`CamsimHandle::shutdown`] also waits
/// for the HTTP control endpoint to finish.
pub struct CamsimHandle {
    shared: Arc<Shared>,
    control: Option<control::ControlServer>,
}

impl CamsimHandle {
    /// The RTSP address listened on (with the actual port when port 0 was asked for).
    pub fn rtsp_addr(&self) -> SocketAddr {
        self.shared.rtsp.addr
    }

    /// The HTTP control endpoint's address, when it is served.
    pub fn control_addr(&self) -> Option<SocketAddr> {
        self.control.as_ref().map(|c| c.addr)
    }

    pub fn camera_count(&self) -> usize {
        self.shared.cameras.len()
    }

    /// `rtsp://<addr>/cam<index>/<main|sub>`.
    pub fn url(&self, index: usize, kind: StreamKind) -> Result<String, CamsimError> {
        let camera = self.shared.camera(index)?;
        Ok(self.shared.rtsp.url(&camera.path(kind)))
    }

    /// Status of every camera, in camera order.
    pub fn cameras(&self) -> Vec<CameraStatus> {
        self.shared.statuses()
    }

    pub fn camera(&self, index: usize) -> Result<CameraStatus, CamsimError> {
        self.shared.status(index)
    }

    /// Stops camera `index`: its clients get an RTCP BYE (EOS) and are disconnected shortly
    /// after, and new requests for its streams get `404 Not Found` until
    /// [`CamsimHandle::start_camera`].
    pub fn stop_camera(&self, index: usize) -> Result<CameraStatus, CamsimError> {
        self.shared.stop(index)
    }

    /// Serves camera `index` again after a stop, or ends its stall. Idempotent.
    pub fn start_camera(&self, index: usize) -> Result<CameraStatus, CamsimError> {
        self.shared.start(index)
    }

    /// Stalls camera `index`: sessions stay open (and new clients can connect) but no media
    /// flows for `duration`, or until [`CamsimHandle::start_camera`] when `None`. Afterwards the
    /// media goes on where the camera is by then: RTP timestamps and sequence numbers jump
    /// forward by the stall. Refused for a stopped camera.
    pub fn stall_camera(
        &self,
        index: usize,
        duration: Option<Duration>,
    ) -> Result<CameraStatus, CamsimError> {
        self.shared.stall(index, duration)
    }

    /// An `axum` router with the control routes (see [`crate::control`]), for serving them
    /// elsewhere.
    pub fn control_router(&self) -> axum::Router {
        control::router(self.shared.clone())
    }

    /// Disconnects every client, stops listening and waits for the background work to end.
    pub async fn shutdown(mut self) {
        if let Some(control) = self.control.take() {
            control.shutdown().await;
        }
        let shared = self.shared.clone();
        // Joining the main loop thread blocks briefly; keep it off the async workers.
        let _ = tokio::task::spawn_blocking(move || shared.rtsp.shutdown()).await;
    }
}

impl Drop for CamsimHandle {
    fn drop(&mut self) {
        if let Some(control) = &self.control {
            control.cancel();
        }
        self.shared.rtsp.shutdown();
    }
}
