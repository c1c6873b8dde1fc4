//! One exchange on an upstream connection, driven in the caller's task.
//!
//! [`send`] writes the request head (with a small body in the same write),
//! streams the rest of the body, reads the response head (relaying 1xx
//! heads to the client, see [`crate::interim`]) and returns a response
//! whose body reads from the connection. There is no connection task and
//! no channel: the request's own task does every read and write, which is
//! what makes a small exchange cheap. When the body has been read to its
//! end and the connection can carry another exchange, it is handed back
//! through [`Checkin`] (a keep-alive pool) at once, before the consumer
//! even sees the end of the body. A large `Content-Length` body may
//! instead be handed to the server and spliced to the client by the
//! kernel ([`crate::splice`]); the connection then goes back when the
//! relay has moved its last byte.
//!
//! Anything the upstream sends that could frame a response two ways is an
//! error (see [`crate::head`]); such a connection is never reused.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt as _;
use gateway_core::{Body, BoxError};
use http::header::UPGRADE;
use http::{Method, Request, Response, StatusCode, Version};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::chunked::{Chunk, ChunkedDecoder};
pub use crate::connection::Connection;
use crate::encode::{self, Framing};
use crate::framing::ResponseBody;
use crate::head::{take_response_head, HeadLimits};
use crate::splice::{Grant, Job, SpliceOffer, SPLICE_MIN};
use crate::HeadError;

/// A request body up to this size is sent in the same write as the head.
const COPY_MAX: usize = 16 * 1024;
/// How much is read from the upstream at a time.
const READ_CHUNK: usize = 64 * 1024;

/// Takes back a connection whose exchange ended cleanly.
pub trait Checkin: Send + Unpin + 'static {
    /// `conn` can carry another exchange.
    fn checkin(self, conn: Connection);
}

/// The upstream connection after `101 Switching Protocols`: the stream
/// and any bytes the upstream sent after the 101's head. Put in the 101
/// response's extensions.
#[derive(Clone)]
pub struct UpstreamUpgrade(std::sync::Arc<parking_lot::Mutex<Option<crate::Prefixed<TcpStream>>>>);

impl UpstreamUpgrade {
    /// Takes the connection (the first caller gets it).
    pub fn take(&self) -> Option<crate::Prefixed<TcpStream>> {
        self.0.lock().take()
    }
}

impl std::fmt::Debug for UpstreamUpgrade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UpstreamUpgrade")
    }
}

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Reading or writing the connection failed.
    #[error("{0}")]
    Io(#[source] std::io::Error),
    /// The upstream closed the connection before a complete response head.
    #[error("the upstream closed the connection before a complete response")]
    Closed {
        /// Whether no byte of a response had arrived.
        before_response: bool,
    },
    /// The response head is not valid or is framed ambiguously.
    #[error("invalid response head: {0}")]
    Head(#[source] HeadError),
    /// Reading the request body (from the client) failed.
    #[error("{0}")]
    RequestBody(#[source] BoxError),
}

impl ClientError {
    /// Whether nothing of a response had arrived when it failed: on a
    /// reused connection, the upstream may have closed it while idle.
    pub fn before_response(&self) -> bool {
        match self {
            ClientError::Closed { before_response } => *before_response,
            ClientError::Io(e) => matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::ConnectionAborted
            ),
            _ => false,
        }
    }
}

/// A request head encoded for the wire, with what the exchange needs to
/// remember of it. A request without a body can be sent again from it (on
/// a fresh connection) without re-encoding or copying its fields.
#[derive(Debug, Clone)]
pub struct Outgoing {
    head: Bytes,
    method: Method,
    upgrade: bool,
    framing: Framing,
}

/// Encodes the head of a request (origin-form URI; `Host` and every other
/// field as they should reach the upstream, hop-by-hop fields already
/// removed) whose body is `body`.
pub fn prepare(parts: &http::request::Parts, body: &Body) -> Outgoing {
    let upgrade = parts.headers.contains_key(UPGRADE);
    let framing = request_framing(&parts.method, body);
    let mut out = BytesMut::with_capacity(512);
    encode::request_head(
        &mut out,
        &parts.method,
        &parts.uri,
        Version::HTTP_11,
        &parts.headers,
        framing,
    );
    if upgrade {
        // `request_head` writes no `Connection`; an upgrade needs one.
        out.truncate(out.len() - 2);
        out.extend_from_slice(b"connection: upgrade\r\n\r\n");
    }
    Outgoing {
        head: out.freeze(),
        method: parts.method.clone(),
        upgrade,
        framing,
    }
}

/// Sends `req` on `conn` and reads the response head ([`prepare`], then
/// [`send_prepared`]). The body of the response streams from the
/// connection; `checkin` gets the connection back when it ends and the
/// connection can be reused.
pub async fn send<C: Checkin>(
    conn: Connection,
    req: Request<Body>,
    limits: &HeadLimits,
    checkin: C,
) -> Result<Response<Body>, ClientError> {
    let (parts, body) = req.into_parts();
    let outgoing = prepare(&parts, &body);
    send_prepared(conn, &outgoing, body, limits, checkin).await
}

/// Sends a prepared head and `body` on `conn` and reads the response head.
pub async fn send_prepared<C: Checkin>(
    mut conn: Connection,
    outgoing: &Outgoing,
    mut body: Body,
    limits: &HeadLimits,
    checkin: C,
) -> Result<Response<Body>, ClientError> {
    let framing = outgoing.framing;
    if http_body::Body::is_end_stream(&body) {
        // No body: the head goes out as it is, in one write, batched with
        // the other requests of this round (see `gateway_sendbatch`).
        match gateway_sendbatch::queue(&conn.io, outgoing.head.clone()) {
            Some(ticket) => sent_with_the_round(&mut conn, &outgoing.head, ticket).await?,
            None => conn
                .io
                .write_all(&outgoing.head)
                .await
                .map_err(ClientError::Io)?,
        }
        return read_response(conn, outgoing, true, limits, checkin).await;
    }
    // What of the body is ready now goes with the head.
    let mut out = BytesMut::with_capacity(outgoing.head.len() + 1024);
    out.extend_from_slice(&outgoing.head);
    let mut body_done = false;
    while !body_done && out.len() < COPY_MAX {
        match body.frame().now_or_never() {
            None => break,
            Some(frame) => body_done = put_frame(&mut out, frame, framing)?,
        }
    }
    let mut complete_request = true;
    if body_done {
        conn.io.write_all(&out).await.map_err(ClientError::Io)?;
    } else {
        // Stream the rest while watching for an early response (a 413, a
        // redirect): then the rest is not sent and the connection is not
        // reused.
        let (rd, mut wr) = conn.io.split();
        let buf = &mut conn.buf;
        let writing = async {
            wr.write_all(&out).await.map_err(ClientError::Io)?;
            out.clear();
            loop {
                let frame = body.frame().await;
                let done = put_frame(&mut out, frame, framing)?;
                wr.write_all(&out).await.map_err(ClientError::Io)?;
                out.clear();
                if done {
                    return Ok::<_, ClientError>(());
                }
            }
        };
        let early = async {
            loop {
                rd.readable().await.map_err(ClientError::Io)?;
                buf.reserve(READ_CHUNK);
                match rd.try_read_buf(buf) {
                    Ok(0) => {
                        return Err(ClientError::Closed {
                            before_response: true,
                        })
                    }
                    Ok(_) => return Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Err(ClientError::Io(e)),
                }
            }
        };
        tokio::select! {
            biased;
            written = writing => written?,
            answered = early => {
                answered?;
                complete_request = false;
            }
        }
    }

    read_response(conn, outgoing, complete_request, limits, checkin).await
}

/// Waits for the round's flush to send `head` (see `gateway_sendbatch`)
/// and writes what it left. The flush wakes this task only when something
/// is left: a head that went out whole is seen here when the response's
/// first bytes wake it, so a request costs no extra wake-up for the batch.
///
/// The socket is watched while the flush is pending: anything on it then
/// (the upstream closing an idle connection, or speaking unasked) comes
/// before the request, which is withdrawn unsent and the exchange fails.
async fn sent_with_the_round(
    conn: &mut Connection,
    head: &Bytes,
    ticket: gateway_sendbatch::Ticket,
) -> Result<(), ClientError> {
    let sent = std::future::poll_fn(|cx| loop {
        if let Poll::Ready(sent) = ticket.poll_sent(cx) {
            return Poll::Ready(sent.map_err(ClientError::Io));
        }
        if let Err(e) = ready!(conn.io.poll_read_ready(cx)) {
            return Poll::Ready(Err(ClientError::Io(e)));
        }
        conn.buf.reserve(4 * 1024);
        return Poll::Ready(Err(match conn.io.try_read_buf(&mut conn.buf) {
            // Readiness left from the last exchange, cleared by this read.
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Ok(0) => ClientError::Closed {
                before_response: true,
            },
            Ok(_) => ClientError::Head(HeadError::Malformed(
                "the upstream sent data before the request",
            )),
            Err(e) => ClientError::Io(e),
        }));
    })
    .await?;
    if let Some(rest) = head.get(sent..).filter(|rest| !rest.is_empty()) {
        conn.io.write_all(rest).await.map_err(ClientError::Io)?;
    }
    Ok(())
}

/// Reads the response head (relaying 1xx) and builds the response whose
/// body streams from `conn`.
async fn read_response<C: Checkin>(
    mut conn: Connection,
    outgoing: &Outgoing,
    complete_request: bool,
    limits: &HeadLimits,
    checkin: C,
) -> Result<Response<Body>, ClientError> {
    let upgrade = outgoing.upgrade;
    let head = loop {
        if let Some(head) = take_response_head(&mut conn.buf, limits).map_err(ClientError::Head)? {
            match head.status.as_u16() {
                // 100 answers the request's own `Expect`; the client side
                // has its own. Other 1xx go to the client.
                100 => continue,
                101 => break head,
                102..=199 => {
                    crate::interim::relay(head.status, &head.headers);
                    continue;
                }
                _ => break head,
            }
        }
        let before_response = conn.buf.is_empty();
        conn.buf.reserve(8 * 1024);
        match conn.io.read_buf(&mut conn.buf).await {
            Ok(0) => return Err(ClientError::Closed { before_response }),
            Ok(_) => {}
            Err(e) => return Err(ClientError::Io(e)),
        }
    };

    let mut res = Response::new(gateway_core::body::empty());
    *res.status_mut() = head.status;
    *res.version_mut() = Version::HTTP_11;
    if head.status == StatusCode::SWITCHING_PROTOCOLS {
        if !upgrade {
            return Err(ClientError::Head(HeadError::Malformed(
                "101 Switching Protocols to a request that asked for no upgrade",
            )));
        }
        {
            let rest = std::mem::take(&mut conn.buf).freeze();
            let io = crate::Prefixed::new(rest, conn.io);
            res.extensions_mut()
                .insert(UpstreamUpgrade(std::sync::Arc::new(
                    parking_lot::Mutex::new(Some(io)),
                )));
        }
        *res.headers_mut() = head.headers;
        return Ok(res);
    }
    let framing = head.body_for(&outgoing.method);
    let reusable = head.keep_alive && complete_request && !head.headers.contains_key(UPGRADE);
    *res.headers_mut() = head.headers;
    let decoder = match framing {
        ResponseBody::None => {
            finish(conn, reusable, checkin);
            return Ok(res);
        }
        ResponseBody::Length(0) => {
            finish(conn, reusable, checkin);
            return Ok(res);
        }
        ResponseBody::Length(n) => Decoder::Length(n),
        ResponseBody::Chunked => Decoder::Chunked(ChunkedDecoder::new()),
        ResponseBody::CloseDelimited => Decoder::Close,
    };
    let splice = match decoder {
        Decoder::Length(n) if n.saturating_sub(conn.buf.len() as u64) >= SPLICE_MIN => {
            let offer = SpliceOffer::new();
            res.extensions_mut().insert(offer.clone());
            Some(offer)
        }
        _ => None,
    };
    *res.body_mut() = UpstreamBody {
        conn: Some(conn),
        decoder,
        reusable,
        checkin: Some(checkin),
        splice,
    }
    .boxed_unsync();
    Ok(res)
}

/// How the request body is framed: none for a request with no body (and
/// `Content-Length: 0` for the methods that carry one), its exact length
/// when known, else chunked.
fn request_framing(method: &Method, body: &Body) -> Framing {
    if http_body::Body::is_end_stream(body) {
        if method == Method::POST || method == Method::PUT || method == Method::PATCH {
            Framing::Length(0)
        } else {
            Framing::None
        }
    } else {
        match http_body::Body::size_hint(body).exact() {
            Some(n) => Framing::Length(n),
            None => Framing::Chunked,
        }
    }
}

/// Appends one request body frame to `out`; whether the body is done.
fn put_frame(
    out: &mut BytesMut,
    frame: Option<Result<Frame<Bytes>, BoxError>>,
    framing: Framing,
) -> Result<bool, ClientError> {
    match frame {
        None => {
            if framing == Framing::Chunked {
                encode::last_chunk(out, None);
            }
            Ok(true)
        }
        Some(Err(e)) => Err(ClientError::RequestBody(e)),
        Some(Ok(frame)) => match frame.into_data() {
            Ok(data) if data.is_empty() => Ok(false),
            Ok(data) => {
                if framing == Framing::Chunked {
                    encode::chunk_start(out, data.len());
                    out.extend_from_slice(&data);
                    encode::chunk_end(out);
                } else {
                    out.extend_from_slice(&data);
                }
                Ok(false)
            }
            Err(frame) => {
                if let (Framing::Chunked, Ok(trailers)) = (framing, frame.into_trailers()) {
                    encode::last_chunk(out, Some(&trailers));
                    return Ok(true);
                }
                Ok(false)
            }
        },
    }
}

/// Hands the connection back if it can carry another exchange: the
/// upstream keeps it open and sent nothing beyond this response.
fn finish<C: Checkin>(mut conn: Connection, reusable: bool, checkin: C) {
    if reusable && conn.buf.is_empty() {
        conn.served += 1;
        checkin.checkin(conn);
    }
}

enum Decoder {
    /// This many bytes left.
    Length(u64),
    Chunked(ChunkedDecoder),
    /// Until the upstream closes.
    Close,
}

/// What polling a response body gives.
type Polled = Poll<Option<Result<Frame<Bytes>, BoxError>>>;

/// A response body read from the upstream connection.
struct UpstreamBody<C: Checkin> {
    /// `None` once the body ended (the connection went back or closed),
    /// or while the server relays it (`splice`).
    conn: Option<Connection>,
    decoder: Decoder,
    reusable: bool,
    checkin: Option<C>,
    /// Set when the rest of the body may be spliced (see
    /// [`crate::splice`]).
    splice: Option<SpliceOffer>,
}

impl<C: Checkin> UpstreamBody<C> {
    /// Hands the connection to the server when it asked for it: the rest
    /// of the body is then spliced, and the body yields an empty frame.
    /// Only with nothing buffered, so every byte read so far has gone out.
    fn grant(&mut self) -> bool {
        let (Some(offer), Decoder::Length(left)) = (&self.splice, &self.decoder) else {
            return false;
        };
        if !offer.requested() {
            return false;
        }
        let Some(conn) = self.conn.take() else {
            return false;
        };
        offer.grant(Job { conn, left: *left });
        true
    }

    /// After a hand-over: the connection back, or how the relay ended.
    /// `None`: read on from the connection.
    fn settle(&mut self) -> Option<Polled> {
        let offer = self.splice.as_ref()?;
        match offer.settle() {
            Grant::NotGiven => None,
            Grant::Returned(job) => {
                // Read again before the server took it: read on here.
                self.decoder = Decoder::Length(job.left);
                self.conn = Some(job.conn);
                self.splice = None;
                None
            }
            Grant::Complete(conn) => {
                self.decoder = Decoder::Length(0);
                if let (Some(conn), Some(checkin)) = (conn, self.checkin.take()) {
                    finish(conn, self.reusable, checkin);
                }
                Some(Poll::Ready(None))
            }
            Grant::Broken => Some(Poll::Ready(Some(Err(
                "the spliced response body broke off".into(),
            )))),
            Grant::Busy => Some(Poll::Ready(Some(Err(
                "the response body is being spliced".into()
            )))),
        }
    }

    /// The body is complete: the connection goes back or closes.
    fn end(&mut self) {
        if let (Some(conn), Some(checkin)) = (self.conn.take(), self.checkin.take()) {
            let reusable = self.reusable && !matches!(self.decoder, Decoder::Close);
            finish(conn, reusable, checkin);
        }
    }
}

impl<C: Checkin> Drop for UpstreamBody<C> {
    fn drop(&mut self) {
        // A relayed body is usually dropped without being read again: the
        // connection the relay gave back goes to the pool from here.
        if self.conn.is_none() && self.splice.is_some() {
            let _ = self.settle();
        }
    }
}

/// Reads more from the connection into its buffer; `Ok(0)` at its end.
fn poll_fill(
    conn: &mut Connection,
    cx: &mut Context<'_>,
    want: usize,
) -> Poll<std::io::Result<usize>> {
    conn.buf.reserve(want.clamp(4 * 1024, READ_CHUNK));
    tokio_util::io::poll_read_buf(Pin::new(&mut conn.io), cx, &mut conn.buf)
}

impl<C: Checkin> http_body::Body for UpstreamBody<C> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Polled {
        let this = self.get_mut();
        loop {
            if this.conn.is_none() {
                if let Some(settled) = this.settle() {
                    return settled;
                }
            }
            if this.conn.as_ref().is_some_and(|c| c.buf.is_empty()) && this.grant() {
                return Poll::Ready(Some(Ok(Frame::data(Bytes::new()))));
            }
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match &mut this.decoder {
                Decoder::Length(left) => {
                    if !conn.buf.is_empty() {
                        let n = usize::try_from(*left)
                            .unwrap_or(usize::MAX)
                            .min(conn.buf.len());
                        let data = conn.buf.split_to(n).freeze();
                        *left -= n as u64;
                        if *left == 0 {
                            this.end();
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    let want = usize::try_from(*left).unwrap_or(usize::MAX);
                    match ready!(poll_fill(conn, cx, want)) {
                        Ok(0) => {
                            this.conn = None;
                            return Poll::Ready(Some(Err(
                                "the upstream closed the connection before the end of the body"
                                    .into(),
                            )));
                        }
                        Ok(_) => {}
                        Err(e) => {
                            this.conn = None;
                            return Poll::Ready(Some(Err(e.into())));
                        }
                    }
                }
                Decoder::Chunked(decoder) => match decoder.decode(&mut conn.buf, READ_CHUNK) {
                    Ok(Some(Chunk::Data(data))) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    Ok(Some(Chunk::Trailers(trailers))) => {
                        return Poll::Ready(Some(Ok(Frame::trailers(trailers))))
                    }
                    Ok(Some(Chunk::End)) => {
                        this.end();
                        return Poll::Ready(None);
                    }
                    Ok(None) => match ready!(poll_fill(conn, cx, READ_CHUNK)) {
                        Ok(0) => {
                            this.conn = None;
                            return Poll::Ready(Some(Err(
                                "the upstream closed the connection inside a chunked body".into(),
                            )));
                        }
                        Ok(_) => {}
                        Err(e) => {
                            this.conn = None;
                            return Poll::Ready(Some(Err(e.into())));
                        }
                    },
                    Err(e) => {
                        this.conn = None;
                        return Poll::Ready(Some(Err(e.into())));
                    }
                },
                Decoder::Close => {
                    if !conn.buf.is_empty() {
                        let data = conn.buf.split().freeze();
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    match ready!(poll_fill(conn, cx, READ_CHUNK)) {
                        Ok(0) => {
                            this.conn = None;
                            return Poll::Ready(None);
                        }
                        Ok(_) => {}
                        Err(e) => {
                            this.conn = None;
                            return Poll::Ready(Some(Err(e.into())));
                        }
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.splice {
            // Handed over: over only once the relay moved every byte.
            Some(offer) if self.conn.is_none() && !matches!(self.decoder, Decoder::Length(0)) => {
                offer.complete()
            }
            _ => self.conn.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self.decoder {
            Decoder::Length(left) if self.conn.is_some() || self.splice.is_some() => {
                SizeHint::with_exact(left)
            }
            _ if self.conn.is_none() => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}
