//! The `grpc.health.v1` check: the Check request a target is sent and the
//! verdict read from its answer. No IO here; `health` sends and receives.
//!
//! The messages are the two of `grpc/health/v1/health.proto`, declared with
//! prost's derive so no code generation runs at build time.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{header, HeaderMap, HeaderValue, Request, StatusCode, Uri};
use prost::Message;

/// The method a check calls.
pub(crate) const CHECK_PATH: &str = "/grpc.health.v1.Health/Check";

#[derive(Clone, PartialEq, Message)]
struct HealthCheckRequest {
    #[prost(string, tag = "1")]
    service: String,
}

#[derive(Clone, PartialEq, Message)]
struct HealthCheckResponse {
    #[prost(int32, tag = "1")]
    status: i32,
}

/// `HealthCheckResponse.ServingStatus.SERVING`.
const SERVING: i32 = 1;

fn status_name(status: i32) -> &'static str {
    match status {
        0 => "UNKNOWN",
        1 => "SERVING",
        2 => "NOT_SERVING",
        3 => "SERVICE_UNKNOWN",
        _ => "an unknown serving status",
    }
}

/// The Check request for `service` (empty: the server as a whole) to the
/// target at `base` (`scheme://host:port`).
pub(crate) fn request(
    base: &str,
    service: &str,
    user_agent: &'static str,
) -> Result<Request<Bytes>, String> {
    let uri: Uri = format!("{base}{CHECK_PATH}")
        .parse()
        .map_err(|e| format!("bad health check URI: {e}"))?;
    let message = HealthCheckRequest {
        service: service.to_string(),
    }
    .encode_to_vec();
    // One uncompressed length-prefixed message (the gRPC wire framing).
    let mut frame = BytesMut::with_capacity(5 + message.len());
    frame.put_u8(0);
    frame.put_u32(message.len() as u32);
    frame.put_slice(&message);
    Request::post(uri)
        .header(header::CONTENT_TYPE, "application/grpc")
        .header(header::TE, "trailers")
        .header(header::USER_AGENT, user_agent)
        .body(frame.freeze())
        .map_err(|e| format!("bad health check request: {e}"))
}

/// Whether the answer says SERVING; otherwise why not. `trailers` is
/// `None` for a trailers-only answer, whose status sits in `headers`.
pub(crate) fn verdict(
    status: StatusCode,
    headers: &HeaderMap,
    mut body: Bytes,
    trailers: Option<&HeaderMap>,
) -> Result<(), String> {
    if status != StatusCode::OK {
        return Err(format!(
            "gRPC health check got HTTP status {}",
            status.as_u16()
        ));
    }
    let meta = trailers
        .filter(|t| t.contains_key("grpc-status"))
        .unwrap_or(headers);
    let text = |name: &str| meta.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
    match text("grpc-status") {
        Some("0") => {}
        Some(code) => {
            return Err(format!(
                "gRPC health check got grpc-status {code}{}",
                text("grpc-message")
                    .map(|m| format!(" ({})", percent_decode(m)))
                    .unwrap_or_default()
            ))
        }
        None => return Err("gRPC health check answer has no grpc-status".into()),
    }
    if body.len() < 5 {
        return Err("gRPC health check answer has no message".into());
    }
    let compressed = body.get_u8();
    let len = body.get_u32() as usize;
    if compressed != 0 {
        return Err(
            "gRPC health check answer is compressed, which the check does not ask for".into(),
        );
    }
    if body.len() < len {
        return Err("gRPC health check answer is cut short".into());
    }
    let answer = HealthCheckResponse::decode(&body[..len])
        .map_err(|e| format!("gRPC health check answer is not a HealthCheckResponse: {e}"))?;
    if answer.status == SERVING {
        Ok(())
    } else {
        Err(format!(
            "gRPC health service reports {}",
            status_name(answer.status)
        ))
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: i32) -> Bytes {
        let message = HealthCheckResponse { status }.encode_to_vec();
        let mut frame = BytesMut::new();
        frame.put_u8(0);
        frame.put_u32(message.len() as u32);
        frame.put_slice(&message);
        frame.freeze()
    }

    fn ok_trailers() -> HeaderMap {
        let mut t = HeaderMap::new();
        t.insert("grpc-status", HeaderValue::from_static("0"));
        t
    }

    #[test]
    fn the_request_is_one_framed_check_message() {
        let req = request("http://10.0.0.1:50051", "orders", "ua").unwrap();
        assert_eq!(
            req.uri(),
            "http://10.0.0.1:50051/grpc.health.v1.Health/Check"
        );
        assert_eq!(req.headers()[header::CONTENT_TYPE], "application/grpc");
        assert_eq!(req.headers()[header::TE], "trailers");
        let mut body = req.into_body();
        assert_eq!(body.get_u8(), 0);
        assert_eq!(body.get_u32() as usize, body.len());
        assert_eq!(HealthCheckRequest::decode(body).unwrap().service, "orders");
    }

    #[test]
    fn only_serving_passes() {
        let h = HeaderMap::new();
        assert_eq!(
            verdict(StatusCode::OK, &h, answer(1), Some(&ok_trailers())),
            Ok(())
        );
        assert_eq!(
            verdict(StatusCode::OK, &h, answer(2), Some(&ok_trailers())),
            Err("gRPC health service reports NOT_SERVING".into())
        );
        assert_eq!(
            verdict(StatusCode::OK, &h, answer(3), Some(&ok_trailers())),
            Err("gRPC health service reports SERVICE_UNKNOWN".into())
        );
    }

    #[test]
    fn failures_say_why() {
        let h = HeaderMap::new();
        let mut not_found = HeaderMap::new();
        not_found.insert("grpc-status", HeaderValue::from_static("5"));
        not_found.insert(
            "grpc-message",
            HeaderValue::from_static("unknown%20service"),
        );
        assert_eq!(
            verdict(StatusCode::OK, &not_found, Bytes::new(), None),
            Err("gRPC health check got grpc-status 5 (unknown service)".into())
        );
        assert_eq!(
            verdict(StatusCode::NOT_FOUND, &h, Bytes::new(), None),
            Err("gRPC health check got HTTP status 404".into())
        );
        assert_eq!(
            verdict(StatusCode::OK, &h, answer(1), None),
            Err("gRPC health check answer has no grpc-status".into())
        );
        assert_eq!(
            verdict(
                StatusCode::OK,
                &h,
                answer(1).slice(..6),
                Some(&ok_trailers())
            ),
            Err("gRPC health check answer is cut short".into())
        );
    }
}
