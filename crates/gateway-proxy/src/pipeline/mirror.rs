//! mirror plan and mirror submit: whether a dark launch mirrors this
//! request (decided without I/O), the copy of its body taken as it streams
//! to the primary, and the hand-over of both sides when the primary's
//! response has reached the client. The primary is never delayed.

use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use gateway_core::{Body, Problem};
use gateway_http1::splice::SpliceOffer;
use gateway_mirror::{ErrorKind, MirrorEngine, MirrorPlan, Observation};
use http::{Request, Response};
use http_body::Body as _;
use http_body_util::BodyExt as _;
use parking_lot::Mutex;

use super::context::{RequestContext, Routed};
use super::upstream::upstream_uri;
use crate::body::{ObservedBody, Observer};

/// A request chosen for mirroring: the plan and the request bytes copied so far.
pub(super) struct Mirroring {
    plan: MirrorPlan,
    request: Arc<Mutex<Captured>>,
}

/// mirror plan: sampling, method, rate and queue checks. The candidate is
/// a version of the upstream service, so it is asked for the path the
/// primary's upstream gets (after `strip_prefix` or `rewrite`).
pub(super) fn plan(
    engine: &MirrorEngine,
    req: Request<Body>,
    routed: &Routed,
    ctx: &RequestContext,
) -> (Request<Body>, Option<Mirroring>) {
    let route = routed.route();
    let (parts, body) = req.into_parts();
    let request_id = ctx.request_id.to_str().unwrap_or_default();
    let plan = if !route.rewrites_path() {
        engine.plan(&route.name, &parts, request_id, routed.consumer())
    } else {
        match upstream_uri(&routed.matched, &parts.uri) {
            Ok(uri) => {
                let (mut shadow, ()) = Request::new(()).into_parts();
                shadow.method = parts.method.clone();
                shadow.version = parts.version;
                shadow.headers = parts.headers.clone();
                shadow.uri = uri;
                engine.plan(&route.name, &shadow, request_id, routed.consumer())
            }
            // The primary is refused for it too.
            Err(_) => None,
        }
    };
    let Some(plan) = plan else {
        return (Request::from_parts(parts, body), None);
    };
    let captured = Arc::new(Mutex::new(Captured::default()));
    let body = if body.is_end_stream() {
        body
    } else {
        ObservedBody::new(
            body,
            Tee::new(plan.max_body_bytes(), captured.clone(), None),
        )
        .boxed_unsync()
    };
    (
        Request::from_parts(parts, body),
        Some(Mirroring {
            plan,
            request: captured,
        }),
    )
}

impl Mirroring {
    /// mirror submit: copies the primary response as it streams to the
    /// client; when it ends, hands both sides to the dark-launch queue
    /// (`try_send`, never waiting).
    pub(super) fn submit_on_end(self, res: Response<Body>, started: Instant) -> Response<Body> {
        let (mut parts, body) = res.into_parts();
        // The tee must see every byte: no splicing past it.
        parts.extensions.remove::<SpliceOffer>();
        let status = parts.status;
        let headers = parts.headers.clone();
        let cap = self.plan.max_body_bytes();
        let Mirroring { plan, request } = self;
        let on_end: OnEnd = Box::new(move |body, complete| {
            // A request body over the cap cannot be replayed to the candidate.
            let Some(request_body) = request.lock().take() else {
                return;
            };
            let primary = if complete {
                let mut obs = Observation::response(
                    status,
                    headers,
                    body.clone().unwrap_or_default(),
                    started.elapsed(),
                );
                obs.body = body;
                obs
            } else {
                Observation::failed(
                    ErrorKind::Reset,
                    "the primary response broke off",
                    started.elapsed(),
                )
            };
            let _ = plan.submit(request_body, primary);
        });
        let body =
            ObservedBody::new(body, Tee::new(cap, Arc::default(), Some(on_end))).boxed_unsync();
        Response::from_parts(parts, body)
    }

    /// mirror submit when the primary failed before answering: the
    /// comparison still counts it.
    pub(super) fn submit_failed(self, problem: &Problem, started: Instant) {
        if let Some(request_body) = self.request.lock().take() {
            let obs = Observation::failed(ErrorKind::Other, problem.code(), started.elapsed());
            let _ = self.plan.submit(request_body, obs);
        }
    }
}

/// Bytes copied off a streaming body, up to a cap.
#[derive(Default)]
struct Captured {
    bytes: BytesMut,
    over: bool,
}

impl Captured {
    /// The bytes, or `None` when the body went over the cap.
    fn take(&mut self) -> Option<Bytes> {
        (!self.over).then(|| std::mem::take(&mut self.bytes).freeze())
    }
}

/// Called when a teed body ends; `complete` is false when it broke off.
type OnEnd = Box<dyn FnOnce(Option<Bytes>, bool) + Send>;

/// Copies a body, up to `cap` bytes, as it streams through
/// [`ObservedBody`]; optionally hands the copy on when the body ends.
struct Tee {
    captured: Arc<Mutex<Captured>>,
    cap: usize,
    on_end: Option<OnEnd>,
}

impl Tee {
    fn new(cap: usize, captured: Arc<Mutex<Captured>>, on_end: Option<OnEnd>) -> Self {
        Self {
            captured,
            cap,
            on_end,
        }
    }
}

impl Observer for Tee {
    fn data(&mut self, chunk: &Bytes) {
        let mut c = self.captured.lock();
        if !c.over && c.bytes.len() + chunk.len() <= self.cap {
            c.bytes.extend_from_slice(chunk);
        } else {
            c.over = true;
            c.bytes = BytesMut::new();
        }
    }

    fn end(self, completed: bool) {
        if let Some(f) = self.on_end {
            let bytes = self.captured.lock().take();
            f(bytes, completed);
        }
    }
}
