//! The gRPC codec for the two calls that carry payloads (scroll, get points): prost's decoding,
//! after one pass over the wire bytes that measures how deep each point's payload nests.
//!
//! prost decodes nested messages recursively, three messages per payload level (`Value`,
//! `Struct`, map entry). Its limit of 100 nested messages stopped payloads at about 32 levels,
//! well short of what Qdrant stores, so this build lifts it (`no-recursion-limit`, Cargo.toml).
//! That leaves the decoder's depth — and so its stack — to the server. This codec bounds it:
//! before decoding, it walks the message with an explicit stack, entering only the fields that
//! lead to payload values (vectors are skipped by their length), and refuses a message where a
//! payload nests deeper than [`MAX_PAYLOAD_DEPTH`], naming the point. Every other message in
//! these responses has a depth fixed by the schema.

use std::marker::PhantomData;

use bytes::Buf;
use prost::Message;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::ProstEncoder;

use crate::payload::MAX_PAYLOAD_DEPTH;
use crate::point_id::PointKey;

/// A point whose payload nests deeper than [`MAX_PAYLOAD_DEPTH`]; carried as the `source` of
/// the gRPC status the decoder fails with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{} has a payload nested deeper than {MAX_PAYLOAD_DEPTH} levels, deeper than Qdrant itself \
     can store (see the README's type mapping)",
    match .point { Some(key) => format!("point {key}"), None => "a point".to_owned() }
)]
pub struct PayloadTooDeep {
    pub point: Option<PointKey>,
}

/// Which response a codec decodes: where its points are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Response {
    /// `ScrollResponse`: points in field 2.
    Scroll,
    /// `GetResponse`: points in field 1.
    Get,
}

/// prost's codec for `Req` → `Resp`, with the payload depth checked before decoding.
pub struct DepthCheckedCodec<Req, Resp> {
    response: Response,
    _types: PhantomData<fn(Req) -> Resp>,
}

impl<Req, Resp> DepthCheckedCodec<Req, Resp> {
    pub fn new(response: Response) -> Self {
        DepthCheckedCodec {
            response,
            _types: PhantomData,
        }
    }
}

impl<Req, Resp> Codec for DepthCheckedCodec<Req, Resp>
where
    Req: Message + Send + 'static,
    Resp: Message + Default + Send + 'static,
{
    type Encode = Req;
    type Decode = Resp;
    type Encoder = ProstEncoder<Req>;
    type Decoder = DepthCheckedDecoder<Resp>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        DepthCheckedDecoder {
            response: self.response,
            _type: PhantomData,
        }
    }
}

pub struct DepthCheckedDecoder<Resp> {
    response: Response,
    _type: PhantomData<fn() -> Resp>,
}

impl<Resp: Message + Default> Decoder for DepthCheckedDecoder<Resp> {
    type Item = Resp;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Resp>, Status> {
        // Over tonic's buffer this takes the message without copying it.
        let bytes = buf.copy_to_bytes(buf.remaining());
        check_depth(&bytes, self.response).map_err(|refusal| match refusal {
            Refusal::TooDeep(too_deep) => {
                let mut status = Status::out_of_range(too_deep.to_string());
                status.set_source(std::sync::Arc::new(too_deep));
                status
            }
            Refusal::Malformed(what) => {
                Status::internal(format!("malformed response from the server: {what}"))
            }
        })?;
        Resp::decode(bytes)
            .map(Some)
            .map_err(|e| Status::internal(e.to_string()))
    }
}

/// Why a message was refused before decoding.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    TooDeep(PayloadTooDeep),
    Malformed(&'static str),
}

/// A message being walked, by what it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Frame {
    Response(Response),
    Point,
    PointId,
    /// A `map<string, Value>` entry: the payload's or a `Struct`'s.
    Entry,
    Value,
    Struct,
    List,
}

impl Frame {
    /// The frame a length-delimited field opens, or `None` to skip its bytes.
    fn child(self, field: u64) -> Option<Frame> {
        match (self, field) {
            (Frame::Response(Response::Scroll), 2) | (Frame::Response(Response::Get), 1) => {
                Some(Frame::Point)
            }
            (Frame::Point, 1) => Some(Frame::PointId),
            (Frame::Point, 2) | (Frame::Struct, 1) => Some(Frame::Entry),
            (Frame::Entry, 2) | (Frame::List, 1) => Some(Frame::Value),
            (Frame::Value, 6) => Some(Frame::Struct),
            (Frame::Value, 7) => Some(Frame::List),
            _ => None,
        }
    }
}

/// Walks `bytes` as a `response` and checks every payload's depth (the payload map is level
/// 1, each `Struct` or `ListValue` inside one more).
fn check_depth(bytes: &[u8], response: Response) -> Result<(), Refusal> {
    let malformed = Refusal::Malformed;
    let mut stack: Vec<(usize, Frame)> = vec![(bytes.len(), Frame::Response(response))];
    let mut at = 0;
    // The current point's id, once its `id` field has been read (prost writes it first).
    let mut point: Option<PointKey> = None;
    let mut levels = 0;
    while let Some(&(end, frame)) = stack.last() {
        if at >= end {
            if at > end {
                return Err(malformed("a field runs past its message"));
            }
            stack.pop();
            if matches!(frame, Frame::Struct | Frame::List) {
                levels -= 1;
            }
            continue;
        }
        let key = varint(bytes, &mut at).ok_or(malformed("a truncated field key"))?;
        let field = key >> 3;
        match key & 7 {
            0 => {
                let value = varint(bytes, &mut at).ok_or(malformed("a truncated varint"))?;
                if frame == Frame::PointId && field == 1 {
                    point = Some(PointKey::Num(value));
                }
            }
            1 => at += 8,
            5 => at += 4,
            2 => {
                let len = varint(bytes, &mut at).ok_or(malformed("a truncated length"))?;
                let stop = usize::try_from(len)
                    .ok()
                    .and_then(|len| at.checked_add(len))
                    .filter(|&stop| stop <= end)
                    .ok_or(malformed("a length runs past its message"))?;
                match frame.child(field) {
                    Some(child) => {
                        if matches!(child, Frame::Struct | Frame::List) {
                            levels += 1;
                            if 1 + levels > MAX_PAYLOAD_DEPTH {
                                return Err(Refusal::TooDeep(PayloadTooDeep { point }));
                            }
                        }
                        if child == Frame::Point {
                            point = None;
                        }
                        stack.push((stop, child));
                    }
                    None => {
                        if frame == Frame::PointId && field == 2 {
                            point = std::str::from_utf8(&bytes[at..stop])
                                .ok()
                                .and_then(|text| text.parse().ok());
                        }
                        at = stop;
                    }
                }
            }
            // Groups: never sent by Qdrant, and prost skips them recursively.
            _ => return Err(malformed("a group or unknown wire type")),
        }
    }
    Ok(())
}

/// A protobuf varint at `at`, advancing past it.
fn varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*at)?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use qdrant_client::qdrant::value::Kind;
    use qdrant_client::qdrant::{
        DenseVector, GetResponse, ListValue, RetrievedPoint, ScrollResponse, Struct, Value,
        VectorOutput, VectorsOutput, vector_output, vectors_output,
    };

    use super::*;

    /// A payload `{"k": {"k": … [ … 1 …] … }}` nesting `depth` levels, objects and lists
    /// alternating.
    fn payload(depth: usize) -> HashMap<String, Value> {
        let mut value = Value {
            kind: Some(Kind::IntegerValue(1)),
        };
        for level in 1..depth {
            value = Value {
                kind: Some(if level % 2 == 0 {
                    Kind::StructValue(Struct {
                        fields: HashMap::from([("k".to_owned(), value)]),
                    })
                } else {
                    Kind::ListValue(ListValue {
                        values: vec![value],
                    })
                }),
            };
        }
        HashMap::from([("k".to_owned(), value)])
    }

    fn point(id: PointKey, depth: usize) -> RetrievedPoint {
        RetrievedPoint {
            id: Some(id.to_proto()),
            payload: payload(depth),
            vectors: Some(VectorsOutput {
                vectors_options: Some(vectors_output::VectorsOptions::Vector(VectorOutput {
                    vector: Some(vector_output::Vector::Dense(DenseVector {
                        data: vec![0.5; 64],
                    })),
                    ..Default::default()
                })),
            }),
            ..Default::default()
        }
    }

    fn scroll(points: Vec<RetrievedPoint>) -> Vec<u8> {
        ScrollResponse {
            next_page_offset: Some(PointKey::Num(99).to_proto()),
            result: points,
            time: 0.5,
            usage: None,
        }
        .encode_to_vec()
    }

    fn decode_scroll(bytes: &[u8]) -> Result<ScrollResponse, Refusal> {
        check_depth(bytes, Response::Scroll)?;
        Ok(ScrollResponse::decode(bytes).expect("prost decodes what passed"))
    }

    #[test]
    fn payloads_as_deep_as_qdrant_stores_pass_and_decode_whole() {
        let uuid: PointKey = "5c56c793-69f3-4fbf-87e6-c4bf54c28c26".parse().unwrap();
        let points = vec![
            point(PointKey::Num(1), 1),
            point(uuid, MAX_PAYLOAD_DEPTH),
            point(PointKey::Num(3), 40),
        ];
        let decoded = decode_scroll(&scroll(points.clone())).unwrap();
        assert_eq!(decoded.result, points);
        let get = GetResponse {
            result: points,
            time: 0.1,
            usage: None,
        }
        .encode_to_vec();
        assert_eq!(check_depth(&get, Response::Get), Ok(()));
    }

    /// Prepends a length-delimited field's key and length to `reversed`, the reversed bytes of
    /// its content: nesting built back to front, in linear time, without prost (whose encoder
    /// and drop would recurse as deep as the message).
    fn wrap(reversed: &mut Vec<u8>, field: u64) {
        let mut head = Vec::new();
        for value in [(field << 3) | 2, reversed.len() as u64] {
            let mut v = value;
            while v >= 0x80 {
                head.push((v as u8) | 0x80);
                v >>= 7;
            }
            head.push(v as u8);
        }
        reversed.extend(head.iter().rev());
    }

    /// A `ScrollResponse` holding one point `id` whose payload nests `depth` levels.
    fn deep_scroll(id: u64, depth: usize) -> Vec<u8> {
        // The innermost value, `integer_value: 1`.
        let mut reversed = vec![1, 3 << 3];
        for level in 1..depth {
            if level % 2 == 0 {
                wrap(&mut reversed, 2); // entry.value
                reversed.extend([b'k', 1, (1 << 3) | 2]); // entry.key = "k"
                wrap(&mut reversed, 1); // Struct.fields
                wrap(&mut reversed, 6); // Value.struct_value
            } else {
                wrap(&mut reversed, 1); // ListValue.values
                wrap(&mut reversed, 7); // Value.list_value
            }
        }
        wrap(&mut reversed, 2); // payload entry.value
        reversed.extend([b'k', 1, (1 << 3) | 2]);
        wrap(&mut reversed, 2); // RetrievedPoint.payload
        let mut id_field = PointKey::Num(id).to_proto().encode_to_vec();
        id_field.reverse();
        wrap(&mut id_field, 1); // RetrievedPoint.id
        reversed.extend(id_field);
        wrap(&mut reversed, 2); // ScrollResponse.result
        reversed.reverse();
        reversed
    }

    #[test]
    fn a_deeper_payload_is_refused_naming_its_point() {
        let uuid: PointKey = "5c56c793-69f3-4fbf-87e6-c4bf54c28c26".parse().unwrap();
        let bytes = scroll(vec![
            point(PointKey::Num(1), 3),
            point(uuid, MAX_PAYLOAD_DEPTH + 1),
        ]);
        assert_eq!(
            check_depth(&bytes, Response::Scroll),
            Err(Refusal::TooDeep(PayloadTooDeep { point: Some(uuid) }))
        );
        // The hand-built message agrees with prost's at the limit …
        let at_limit = deep_scroll(5, MAX_PAYLOAD_DEPTH);
        assert_eq!(check_depth(&at_limit, Response::Scroll), Ok(()));
        let decoded = ScrollResponse::decode(&at_limit[..]).unwrap();
        assert_eq!(
            decoded.result[0].payload,
            point(PointKey::Num(5), MAX_PAYLOAD_DEPTH).payload
        );
        // … and a hostile depth is refused without a recursion that could overflow.
        assert_eq!(
            check_depth(&deep_scroll(7, 1_000_000), Response::Scroll),
            Err(Refusal::TooDeep(PayloadTooDeep {
                point: Some(PointKey::Num(7))
            }))
        );
        let message = PayloadTooDeep {
            point: Some(PointKey::Num(7)),
        }
        .to_string();
        assert!(
            message.starts_with("point 7 has a payload nested deeper than 127"),
            "{message}"
        );
    }

    #[test]
    fn malformed_bytes_are_refused_not_walked() {
        let good = scroll(vec![point(PointKey::Num(1), 5)]);
        for cut in [1, good.len() / 2, good.len() - 1] {
            assert!(
                matches!(
                    check_depth(&good[..cut], Response::Scroll),
                    Err(Refusal::Malformed(_))
                ),
                "cut at {cut}"
            );
        }
        // A group (wire type 3), which prost would skip recursively.
        assert!(matches!(
            check_depth(&[0x0b, 0x0c], Response::Scroll),
            Err(Refusal::Malformed(_))
        ));
    }
}
