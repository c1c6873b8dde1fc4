//! The spans of one sampled request: its server span, with the stages as
//! events, and a client span per call it makes (each upstream attempt).
//!
//! Recorded in plain fields and turned into the SDK's `SpanData` once, at
//! the end, rather than through the generic `Span` API: a sampled request
//! pays for a few vectors and one lock per stage, and a request that is
//! not sampled pays for nothing (it has no `ServerSpan`).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::SystemTime;

use opentelemetry::trace::{Event, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceState};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use parking_lot::Mutex;

use crate::context::TraceContext;
use crate::export::SpanSink;

/// A sampled request's server span. Clones share it: the upstream stage,
/// the cache's callbacks and the log stage all add to the same span. It is
/// exported by [`ServerSpan::end`], or when its last clone is dropped
/// without one (a request abandoned mid-way), marked cancelled.
#[derive(Clone, Debug)]
pub struct ServerSpan {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    context: SpanContext,
    /// The caller's span, when the request continued a trace.
    parent: Option<SpanId>,
    start: SystemTime,
    sink: SpanSink,
    scope: InstrumentationScope,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    name: Cow<'static, str>,
    attributes: Vec<KeyValue>,
    events: Vec<Event>,
    /// Client spans started and not yet ended.
    open: Vec<OpenChild>,
    ended: bool,
}

#[derive(Debug)]
struct OpenChild {
    id: SpanId,
    name: Cow<'static, str>,
    start: SystemTime,
    attributes: Vec<KeyValue>,
}

impl ServerSpan {
    pub(crate) fn start(
        trace: &TraceContext,
        name: Cow<'static, str>,
        attributes: Vec<KeyValue>,
        sink: SpanSink,
        scope: InstrumentationScope,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                context: SpanContext::new(
                    trace.otel_trace_id(),
                    trace.otel_span_id(),
                    TraceFlags::SAMPLED,
                    false,
                    TraceState::NONE,
                ),
                parent: trace.otel_parent_id(),
                start: SystemTime::now(),
                sink,
                scope,
                state: Mutex::new(State {
                    name,
                    attributes,
                    events: Vec::new(),
                    open: Vec::new(),
                    ended: false,
                }),
            }),
        }
    }

    /// This span's id.
    pub fn span_id(&self) -> SpanId {
        self.shared.context.span_id()
    }

    /// Renames the span (once the route, and so `http.route`, is known).
    pub fn set_name(&self, name: impl Into<Cow<'static, str>>) {
        self.shared.state.lock().name = name.into();
    }

    /// Sets an attribute, replacing one of the same key.
    pub fn set_attribute(&self, attribute: KeyValue) {
        set(&mut self.shared.state.lock().attributes, attribute);
    }

    /// Records that a stage happened now.
    pub fn add_event(&self, name: &'static str, attributes: Vec<KeyValue>) {
        let event = Event::new(name, SystemTime::now(), attributes, 0);
        self.shared.state.lock().events.push(event);
    }

    /// Starts a client span under this one (an upstream attempt) and
    /// returns its id, to send as the callee's parent and to end it with.
    pub fn start_client(
        &self,
        name: impl Into<Cow<'static, str>>,
        attributes: Vec<KeyValue>,
    ) -> SpanId {
        let id = SpanId::from_bytes(rand::random::<u64>().max(1).to_be_bytes());
        self.shared.state.lock().open.push(OpenChild {
            id,
            name: name.into(),
            start: SystemTime::now(),
            attributes,
        });
        id
    }

    /// Ends the client span `id` with `attributes` added, as an error
    /// when `error` says why; it is exported at once.
    pub fn end_client(&self, id: SpanId, attributes: Vec<KeyValue>, error: Option<String>) {
        let child = {
            let mut state = self.shared.state.lock();
            let Some(i) = state.open.iter().position(|c| c.id == id) else {
                return;
            };
            state.open.swap_remove(i)
        };
        let mut all = child.attributes;
        for a in attributes {
            set(&mut all, a);
        }
        let shared = &self.shared;
        shared.sink.submit(SpanData {
            span_context: SpanContext::new(
                shared.context.trace_id(),
                child.id,
                TraceFlags::SAMPLED,
                false,
                TraceState::NONE,
            ),
            parent_span_id: shared.context.span_id(),
            parent_span_is_remote: false,
            span_kind: SpanKind::Client,
            name: child.name,
            start_time: child.start,
            end_time: SystemTime::now(),
            attributes: all,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: error.map_or(Status::Unset, Status::error),
            instrumentation_scope: shared.scope.clone(),
        });
    }

    /// Ends the span with `attributes` added, as an error when `error`
    /// says why, and exports it. Later calls do nothing.
    pub fn end(&self, attributes: Vec<KeyValue>, error: Option<String>) {
        self.shared.finish(attributes, error);
    }
}

impl Shared {
    fn finish(&self, attributes: Vec<KeyValue>, error: Option<String>) {
        let (name, mut all, events) = {
            let mut state = self.state.lock();
            if state.ended {
                return;
            }
            state.ended = true;
            (
                std::mem::take(&mut state.name),
                std::mem::take(&mut state.attributes),
                std::mem::take(&mut state.events),
            )
        };
        for a in attributes {
            set(&mut all, a);
        }
        let mut span_events = SpanEvents::default();
        span_events.events = events;
        self.sink.submit(SpanData {
            span_context: self.context.clone(),
            parent_span_id: self.parent.unwrap_or(SpanId::INVALID),
            parent_span_is_remote: self.parent.is_some(),
            span_kind: SpanKind::Server,
            name,
            start_time: self.start,
            end_time: SystemTime::now(),
            attributes: all,
            dropped_attributes_count: 0,
            events: span_events,
            links: SpanLinks::default(),
            status: error.map_or(Status::Unset, Status::error),
            instrumentation_scope: self.scope.clone(),
        });
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // A request dropped before its end (the client went away while it
        // waited) still shows in its trace.
        self.finish(
            vec![KeyValue::new("error.type", "cancelled")],
            Some("the request was abandoned before it ended".into()),
        );
    }
}

fn set(attributes: &mut Vec<KeyValue>, attribute: KeyValue) {
    match attributes.iter_mut().find(|a| a.key == attribute.key) {
        Some(existing) => *existing = attribute,
        None => attributes.push(attribute),
    }
}
