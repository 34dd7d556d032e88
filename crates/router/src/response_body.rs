//! [`ResponseBody`]: every response's body. Almost all are small and fully buffered; stored files
//! are streamed from disk through a bounded channel, so serving a large file holds a few chunks
//! in memory, not the file.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::mpsc;

/// A response body: buffered bytes, or chunks streamed by a producer task.
#[derive(Debug)]
pub struct ResponseBody(Kind);

#[derive(Debug)]
enum Kind {
    Full(Option<Bytes>),
    Streamed {
        chunks: mpsc::Receiver<std::io::Result<Bytes>>,
        remaining: u64,
    },
}

impl ResponseBody {
    pub fn new(bytes: Bytes) -> ResponseBody {
        ResponseBody(Kind::Full((!bytes.is_empty()).then_some(bytes)))
    }
    /// `length` bytes arriving through `chunks` (the producer stops when the receiver is
    /// dropped, e.g. when the client goes away).
    pub fn streamed(chunks: mpsc::Receiver<std::io::Result<Bytes>>, length: u64) -> ResponseBody {
        ResponseBody(Kind::Streamed {
            chunks,
            remaining: length,
        })
    }
}

impl Default for ResponseBody {
    fn default() -> Self {
        ResponseBody(Kind::Full(None))
    }
}

impl From<Bytes> for ResponseBody {
    fn from(bytes: Bytes) -> Self {
        ResponseBody::new(bytes)
    }
}

impl From<Vec<u8>> for ResponseBody {
    fn from(bytes: Vec<u8>) -> Self {
        ResponseBody::new(Bytes::from(bytes))
    }
}

impl From<String> for ResponseBody {
    fn from(text: String) -> Self {
        ResponseBody::new(Bytes::from(text))
    }
}

impl From<&'static str> for ResponseBody {
    fn from(text: &'static str) -> Self {
        ResponseBody::new(Bytes::from_static(text.as_bytes()))
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        match &mut self.get_mut().0 {
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Streamed { chunks, remaining } => match chunks.poll_recv(cx) {
                Poll::Ready(Some(Ok(bytes))) => {
                    *remaining = remaining.saturating_sub(bytes.len() as u64);
                    Poll::Ready(Some(Ok(Frame::data(bytes))))
                }
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
                Poll::Ready(None) if *remaining > 0 => Poll::Ready(Some(Err(
                    std::io::Error::other("the file ended before its length"),
                ))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Kind::Full(bytes) => bytes.is_none(),
            Kind::Streamed { remaining, .. } => *remaining == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Streamed { remaining, .. } => SizeHint::with_exact(*remaining),
        }
    }
}
