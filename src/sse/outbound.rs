//! What waits to be written to an SSE client: blocks framed for its connection (one chunk per
//! batch for HTTP/1.1, raw bytes for a close-delimited HTTP/1.0 response), heartbeats, the last
//! chunk, and the one writev that sends them.

use std::cell::RefCell;
use std::io;

use bytes::{Bytes, BytesMut};

use crate::client_stream::ClientStream;
use crate::conn_io::BytesVec;
use crate::http::{small_chunk_line, ChunkHeader, OutFraming, CHUNK_END, LAST_CHUNK};

/// What tether sends when nothing was sent for `--sse-heartbeat`: a comment block, which no
/// client dispatches and every intermediary forwards.
pub const HEARTBEAT: &[u8] = b": keep-alive\n\n";

/// The heartbeat's chunk-size line (its length in hex).
const HEARTBEAT_CHUNK_LINE: &[u8] = b"e\r\n";

/// Room for many chunk-size lines per allocation of the scratch buffer.
const SCRATCH_BLOCK: usize = 512;

thread_local! {
    /// Chunk-size lines are cut from this small buffer instead of one allocation each: one per
    /// worker thread, shared by its streams (a line's `Bytes` keeps its block alive until it is
    /// sent), not one per stream (32 bytes of every stream's future, and a block that a quiet
    /// stream had to let go).
    static CHUNK_LINES: RefCell<BytesMut> = RefCell::new(BytesMut::new());
}

/// The bytes queued for one client, framed for its connection.
pub struct ClientQueue {
    pub framing: OutFraming,
    /// Bytes framed for the client and not yet handed to a write.
    pending: BytesVec,
}

impl ClientQueue {
    pub fn new(framing: OutFraming) -> Self {
        ClientQueue {
            framing,
            pending: BytesVec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Bytes queued.
    pub fn len(&self) -> usize {
        self.pending.remaining()
    }

    /// Queues bytes as they are (the response head).
    pub fn push_raw(&mut self, bytes: Bytes) {
        self.pending.push(bytes);
    }

    /// Queues blocks as one chunk.
    pub fn push_blocks(&mut self, blocks: impl IntoIterator<Item = Bytes>, len: usize) {
        if len == 0 {
            return;
        }
        if self.framing == OutFraming::Chunked {
            // A small chunk's line is static (no scratch slice, no reference count).
            match small_chunk_line(len) {
                Some(line) => self.pending.push_static(line),
                None => self.pending.push(cut(ChunkHeader::new(len).as_bytes())),
            }
        }
        for b in blocks {
            self.pending.push(b);
        }
        if self.framing == OutFraming::Chunked {
            self.pending.push_static(CHUNK_END);
        }
    }

    /// Queues the heartbeat comment.
    pub fn push_heartbeat(&mut self) {
        if self.framing == OutFraming::Chunked {
            self.pending.push_static(HEARTBEAT_CHUNK_LINE);
            self.pending.push_static(HEARTBEAT);
            self.pending.push_static(CHUNK_END);
        } else {
            self.pending.push_static(HEARTBEAT);
        }
    }

    /// Queues the end of the response body (the last chunk; nothing for close-delimited).
    pub fn push_end(&mut self) {
        if self.framing == OutFraming::Chunked {
            self.pending.push_static(LAST_CHUNK);
        }
    }

    /// Everything queued, for one write; the queue is left empty.
    pub fn take(&mut self) -> BytesVec {
        std::mem::take(&mut self.pending)
    }

    /// Puts back what a short write left: it goes before anything queued since.
    pub fn put_back(&mut self, mut rest: BytesVec) {
        if !rest.is_empty() {
            rest.append(&mut self.pending);
            self.pending = rest;
        }
    }

    /// Sends what the client's socket takes right now (`ClientStream::send_now`: for plain TCP
    /// `BytesVec::send_now`; a TLS client encrypts it all, what the socket refuses then waits
    /// in its session as `unsent`): the bytes sent, 0 when its buffer is full.
    pub fn send_to<C: ClientStream>(&mut self, client: &C) -> io::Result<usize> {
        client.send_now(&mut self.pending)
    }

    /// Ends the response: the last chunk after what is queued, written within `send_timeout`,
    /// then (close-delimited) the write side shut. Err: the client is gone or took nothing.
    pub async fn end_response(
        &mut self,
        client: &mut impl ClientStream,
        send_timeout: std::time::Duration,
    ) -> Result<(), ()> {
        self.push_end();
        let out = self.take();
        if crate::conn_io::write_vec_within(client, out, send_timeout)
            .await
            .is_err()
        {
            return Err(());
        }
        if self.framing == OutFraming::CloseDelimited {
            let _ = client.close_write().await;
        }
        Ok(())
    }

    /// Drops what is queued: nobody will read it (the stream's client left).
    pub fn clear(&mut self) {
        self.pending = BytesVec::new();
    }

    /// Frees the queue's buffers while the stream is quiet (a quiet stream holds no buffer).
    pub fn shrink(&mut self) {
        if self.pending.is_empty() {
            self.pending = BytesVec::new();
        }
    }
}

/// Copies `bytes` into the worker's scratch buffer and hands them out as a slice of it.
fn cut(bytes: &[u8]) -> Bytes {
    CHUNK_LINES.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        if scratch.capacity() - scratch.len() < bytes.len() {
            *scratch = BytesMut::with_capacity(SCRATCH_BLOCK);
        }
        scratch.extend_from_slice(bytes);
        scratch.split().freeze()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(v: BytesVec) -> Vec<u8> {
        v.to_vec()
    }

    #[test]
    fn blocks_become_one_chunk_and_heartbeats_their_own() {
        let mut q = ClientQueue::new(OutFraming::Chunked);
        q.push_blocks([Bytes::from("data: a\n\n"), Bytes::from("data: b\n\n")], 18);
        q.push_heartbeat();
        q.push_end();
        assert_eq!(
            flat(q.take()),
            b"12\r\ndata: a\n\ndata: b\n\n\r\ne\r\n: keep-alive\n\n\r\n0\r\n\r\n".to_vec()
        );
        assert!(q.is_empty());
        let mut q = ClientQueue::new(OutFraming::CloseDelimited);
        q.push_blocks([Bytes::from("data: a\n\n")], 9);
        q.push_end();
        assert_eq!(flat(q.take()), b"data: a\n\n".to_vec());
    }
}
