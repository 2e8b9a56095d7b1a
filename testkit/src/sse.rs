//! Driving `tether::sse::EventFramer` the way the relay does (pieces of one growing body) and
//! comparing what it frames with the oracle. This file is the only one here that knows the
//! framer's API: a change of that API is adapted here, for the shotgun test, the fuzz target and
//! the corpus replay at once.

use bytes::Bytes;
use tether::sse::{EventFramer, FrameError};

use crate::oracle::sse::{Block, BOM};

/// What a framing produced: blocks, the cursor (last event id), dropped bytes, first error.
pub type Framed = (Vec<Block>, Vec<u8>, usize, Option<FrameError>);

/// Feeds `input` cut at `cuts`; returns blocks, cursor, dropped bytes, and the first error.
/// Also checks zero-copy (a block inside one piece points into it) and the memory bound.
pub fn framed(input: &[u8], cuts: &[usize], max: usize) -> Framed {
    let mut cuts: Vec<usize> = cuts.iter().map(|&c| c.min(input.len())).collect();
    cuts.push(0);
    cuts.push(input.len());
    cuts.sort_unstable();
    let whole = Bytes::copy_from_slice(input);
    let bom = if input.starts_with(BOM) { 3 } else { 0 };
    let mut framer = EventFramer::new(max);
    let mut blocks = Vec::new();
    let mut offset = 0; // body offset (after the BOM) of the next block
    let mut error = None;
    for w in cuts.windows(2) {
        let piece = whole.slice(w[0]..w[1]);
        let mut out = Vec::new();
        let result = framer.feed(piece.clone(), &mut out);
        assert!(
            framer.pending_bytes() <= max.max(2),
            "partial past the limit"
        );
        for block in out {
            let (start, end) = (bom + offset, bom + offset + block.raw.len());
            offset += block.raw.len();
            // Inside this piece, and not ended by a CR that is the piece's last byte (rule 2).
            let inside = w[0] <= start && end < w[1] || end == w[1] && input[end - 1] != b'\r';
            if inside && w[0] <= start {
                assert!(piece.as_ptr_range().contains(&block.raw.as_ptr()), "copied");
            }
            blocks.push(block);
        }
        if let Err(e) = result {
            error = Some(e);
            break;
        }
    }
    let dropped = if error.is_none() {
        framer.finish_into(&mut blocks)
    } else {
        0
    };
    let blocks: Vec<Block> = blocks
        .into_iter()
        .map(|b| {
            let id = b.id().map(<[u8]>::to_vec);
            (b.raw.to_vec(), id, b.retry, b.fires)
        })
        .collect();
    (
        join_split_crlf(blocks),
        framer.last_event_id().to_vec(),
        dropped,
        error,
    )
}

/// A block whose blank line ends in a CR that is the last byte of a piece is handed out at that
/// CR (a browser dispatches there; waiting for the next piece would delay the event by a whole
/// upstream write). When the next piece then starts with the LF of that CRLF, the LF comes out as
/// a block of its own ("\n": no field, no event). For comparing framings across splits, that LF
/// is put back on its block: the bytes, events and cursor are the same either way.
fn join_split_crlf(blocks: Vec<Block>) -> Vec<Block> {
    let mut out: Vec<Block> = Vec::with_capacity(blocks.len());
    for b in blocks {
        if b.0 == b"\n" && b.1.is_none() && b.2.is_none() && !b.3 {
            if let Some(prev) = out.last_mut().filter(|p| p.0.ends_with(b"\r")) {
                prev.0.push(b'\n');
                continue;
            }
        }
        out.push(b);
    }
    out
}
