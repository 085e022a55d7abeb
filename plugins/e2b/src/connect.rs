//! Connect protocol framing for server streams (connectrpc.com/docs/protocol): each
//! message is a 5-byte envelope — flags (0x01 compressed, 0x02 end of stream) and a
//! big-endian u32 length — then the payload. [`Frames`] decodes envelopes as the bytes
//! arrive, so each event can be acted on before the stream ends.

use provider_kit::errors::unavailable;
use provider_kit::Error;

/// Largest envelope accepted: envd's data events carry a few tens of KiB, so anything
/// this big is a broken stream, not output (and must not grow the guest's memory).
const MAX_FRAME_BYTES: usize = 8 << 20;

/// One envelope's payload.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    Message(Vec<u8>),
    /// The end-of-stream envelope: `{}` or `{"error": {code, message}}`.
    End(Vec<u8>),
}

/// An envelope for a request body.
pub fn envelope(flags: u8, message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 5);
    out.push(flags);
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out
}

/// Bytes received and not yet decoded into a whole envelope.
#[derive(Debug, Default)]
pub struct Frames {
    pending: Vec<u8>,
}

impl Frames {
    pub fn feed(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
    }

    /// The next whole envelope, `None` until one has fully arrived.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, Error> {
        let Some(header) = self.pending.get(..5) else { return Ok(None) };
        let flags = header[0];
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        if flags & 0x01 != 0 {
            return Err(unavailable("envd sent a compressed frame, which was not negotiated"));
        }
        if len > MAX_FRAME_BYTES {
            return Err(unavailable(format!("envd sent a {len}-byte frame, over the {MAX_FRAME_BYTES}-byte bound")));
        }
        if self.pending.len() < 5 + len {
            return Ok(None);
        }
        let payload = self.pending[5..5 + len].to_vec();
        self.pending.drain(..5 + len);
        Ok(Some(if flags & 0x02 != 0 { Frame::End(payload) } else { Frame::Message(payload) }))
    }

    /// At the end of the body: bytes left over mean the stream was cut inside a frame.
    pub fn finish(&self) -> Result<(), Error> {
        if self.pending.is_empty() {
            Ok(())
        } else {
            Err(unavailable("envd's process stream was cut inside a frame"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_split_across_pieces_are_decoded_as_each_completes() {
        let mut body = envelope(0, br#"{"event":{"start":{"pid":7}}}"#);
        body.extend(envelope(2, b"{}"));
        let mut f = Frames::default();
        f.feed(&body[..3]);
        assert_eq!(f.next_frame().unwrap(), None, "a partial header waits");
        f.feed(&body[3..10]);
        assert_eq!(f.next_frame().unwrap(), None, "a partial payload waits");
        f.feed(&body[10..]);
        assert_eq!(f.next_frame().unwrap(), Some(Frame::Message(br#"{"event":{"start":{"pid":7}}}"#.to_vec())));
        assert_eq!(f.next_frame().unwrap(), Some(Frame::End(b"{}".to_vec())));
        assert_eq!(f.next_frame().unwrap(), None);
        assert!(f.finish().is_ok());
    }

    #[test]
    fn a_cut_stream_a_compressed_frame_and_a_huge_frame_are_errors() {
        let mut f = Frames::default();
        f.feed(&envelope(0, b"{}")[..4]);
        assert!(f.finish().is_err());
        let mut f = Frames::default();
        f.feed(&envelope(1, b"{}"));
        assert!(f.next_frame().is_err());
        let mut f = Frames::default();
        f.feed(&[0, 0xff, 0xff, 0xff, 0xff]);
        assert!(f.next_frame().is_err(), "rejected from the header alone");
    }
}
