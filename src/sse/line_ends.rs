//! Where the line ends (CR and LF) of one body piece are, found 64 bytes at a time.
//!
//! The framer asks for the next CR or LF from a position several times per event (an SSE event
//! is two or three short lines). `memchr2` answers each ask from scratch, and for haystacks of a
//! few dozen bytes its set-up dominates: in scenario 1b with 32-byte events the three memchr
//! entry points took ~120 instructions per event (callgrind). Here each 64-byte window of the
//! piece is compared once, into a bit mask with one bit per CR or LF byte (SSE2 on x86-64: four
//! 16-byte compares per byte value), and every later ask in that window is a trailing-zero count
//! on the mask. Each byte is still looked at once (rule 12 of the framer).

/// The CR and LF positions of `bytes`, handed out in order from any position at or after the
/// last one asked for.
pub(super) struct LineEnds<'a> {
    bytes: &'a [u8],
    /// Index of the 64-byte window `mask` describes (`usize::MAX` before the first).
    window: usize,
    /// Bit i set: byte `window * 64 + i` is a CR or LF not yet handed out or skipped.
    mask: u64,
}

impl<'a> LineEnds<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        LineEnds {
            bytes,
            window: usize::MAX,
            mask: 0,
        }
    }

    /// The first CR or LF at index `from` or later. `from` must not go back: positions before
    /// the last `from` may have been dropped from the mask.
    #[inline(always)]
    pub(super) fn next_from(&mut self, from: usize) -> Option<usize> {
        let mut window = from / 64;
        if window != self.window {
            if from >= self.bytes.len() {
                return None;
            }
            self.window = window;
            self.mask = window_mask(self.bytes, window);
        }
        // Ends before `from` were handed out already (or lie inside a CRLF the caller took).
        self.mask &= u64::MAX << (from % 64);
        loop {
            if self.mask != 0 {
                return Some(window * 64 + self.mask.trailing_zeros() as usize);
            }
            window += 1;
            if window * 64 >= self.bytes.len() {
                return None;
            }
            self.window = window;
            self.mask = window_mask(self.bytes, window);
        }
    }
}

/// The mask of window `window` (a full 64 bytes, or the piece's tail).
#[inline]
fn window_mask(bytes: &[u8], window: usize) -> u64 {
    let start = window * 64;
    match bytes.get(start..start + 64) {
        Some(full) => full_mask(full.try_into().expect("64 bytes")),
        // The piece's last 64 bytes hold the tail: their mask, shifted down to the tail's
        // first byte (a read of one ~100-byte event ends in such a tail; a byte loop over it
        // cost ~6 instructions a byte).
        None if bytes.len() >= 64 => {
            let last: &[u8; 64] = bytes[bytes.len() - 64..].try_into().expect("64 bytes");
            full_mask(last) >> (start + 64 - bytes.len())
        }
        None => tail_mask(&bytes[start..]),
    }
}

/// The LF bits and the CR bits of window `window` of `bytes` (as `window_mask`, in two masks),
/// for the framer's plain scan, which walks the LFs and stops at the first CR. The window must
/// begin inside `bytes`.
#[inline(always)]
pub(super) fn lf_cr_window(bytes: &[u8], window: usize) -> (u64, u64) {
    let start = window * 64;
    debug_assert!(start < bytes.len());
    match bytes.get(start..start + 64) {
        Some(full) => lf_cr_full(full.try_into().expect("64 bytes")),
        None if bytes.len() >= 64 => {
            let last: &[u8; 64] = bytes[bytes.len() - 64..].try_into().expect("64 bytes");
            let shift = start + 64 - bytes.len();
            let (lf, cr) = lf_cr_full(last);
            (lf >> shift, cr >> shift)
        }
        None => {
            let tail = &bytes[start..];
            (eq_mask(tail, b'\n'), eq_mask(tail, b'\r'))
        }
    }
}

/// The LF mask of `chunk`, and its CR mask (computed only when it has a CR: LF-only streams
/// are the common case).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn lf_cr_full(chunk: &[u8; 64]) -> (u64, u64) {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
        _mm_setzero_si128,
    };
    // SAFETY: SSE2 is part of the x86-64 baseline; the four unaligned 16-byte loads read
    // exactly the 64 bytes of `chunk`.
    let (lf, any_cr) = unsafe {
        let cr = _mm_set1_epi8(b'\r' as i8);
        let lf = _mm_set1_epi8(b'\n' as i8);
        let mut lf_mask = 0u64;
        let mut crs = _mm_setzero_si128();
        for part in 0..4 {
            let v = _mm_loadu_si128(chunk.as_ptr().add(part * 16) as *const __m128i);
            lf_mask |= u64::from(_mm_movemask_epi8(_mm_cmpeq_epi8(v, lf)) as u16) << (part * 16);
            crs = _mm_or_si128(crs, _mm_cmpeq_epi8(v, cr));
        }
        (lf_mask, _mm_movemask_epi8(crs) != 0)
    };
    let cr = if any_cr {
        eq_mask_cold(chunk, b'\r')
    } else {
        0
    };
    (lf, cr)
}

#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn lf_cr_full(chunk: &[u8; 64]) -> (u64, u64) {
    (eq_mask(chunk, b'\n'), eq_mask(chunk, b'\r'))
}

/// `eq_mask` of a window that has a CR, out of the plain scan's way.
#[cold]
#[inline(never)]
fn eq_mask_cold(chunk: &[u8; 64], byte: u8) -> u64 {
    eq_mask(chunk, byte)
}

/// Bit i set: `bytes[i]` is `byte` (at most 64 bytes), a byte at a time.
#[inline]
fn eq_mask(bytes: &[u8], byte: u8) -> u64 {
    debug_assert!(bytes.len() <= 64);
    let mut mask = 0u64;
    for (i, &b) in bytes.iter().enumerate() {
        mask |= u64::from(b == byte) << i;
    }
    mask
}

/// Bit i set: `chunk[i]` is CR or LF.
#[cfg(target_arch = "x86_64")]
#[inline]
fn full_mask(chunk: &[u8; 64]) -> u64 {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };
    // SAFETY: SSE2 is part of the x86-64 baseline; the four unaligned 16-byte loads read
    // exactly the 64 bytes of `chunk`.
    unsafe {
        let cr = _mm_set1_epi8(b'\r' as i8);
        let lf = _mm_set1_epi8(b'\n' as i8);
        let mut mask = 0u64;
        for part in 0..4 {
            let v = _mm_loadu_si128(chunk.as_ptr().add(part * 16) as *const __m128i);
            let hits = _mm_or_si128(_mm_cmpeq_epi8(v, cr), _mm_cmpeq_epi8(v, lf));
            mask |= u64::from(_mm_movemask_epi8(hits) as u16) << (part * 16);
        }
        mask
    }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn full_mask(chunk: &[u8; 64]) -> u64 {
    byte_mask(chunk)
}

/// The same for a piece of fewer than 64 bytes: 16 bytes at a time, the last 16 overlapping
/// the ones before (their bits are the same); a byte loop only under 16 bytes.
#[cfg(target_arch = "x86_64")]
#[inline]
fn tail_mask(bytes: &[u8]) -> u64 {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };
    debug_assert!(bytes.len() < 64);
    let len = bytes.len();
    if len < 16 {
        return byte_mask(bytes);
    }
    // SAFETY: SSE2 is part of the x86-64 baseline; every 16-byte load starts at an offset at
    // most `len - 16`, so it reads inside `bytes`.
    unsafe {
        let cr = _mm_set1_epi8(b'\r' as i8);
        let lf = _mm_set1_epi8(b'\n' as i8);
        let part_mask = |at: usize| {
            let v = _mm_loadu_si128(bytes.as_ptr().add(at) as *const __m128i);
            let hits = _mm_or_si128(_mm_cmpeq_epi8(v, cr), _mm_cmpeq_epi8(v, lf));
            u64::from(_mm_movemask_epi8(hits) as u16) << at
        };
        let mut mask = part_mask(len - 16);
        let mut at = 0;
        while at + 16 < len {
            mask |= part_mask(at);
            at += 16;
        }
        mask
    }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn tail_mask(bytes: &[u8]) -> u64 {
    byte_mask(bytes)
}

/// Bit i set: `bytes[i]` is CR or LF (at most 64 bytes), a byte at a time.
#[inline]
fn byte_mask(bytes: &[u8]) -> u64 {
    debug_assert!(bytes.len() <= 64);
    let mut mask = 0u64;
    for (i, &b) in bytes.iter().enumerate() {
        mask |= u64::from(b == b'\r' || b == b'\n') << i;
    }
    mask
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What `next_from` must answer: the naive scan.
    fn naive(bytes: &[u8], from: usize) -> Option<usize> {
        bytes
            .iter()
            .enumerate()
            .skip(from)
            .find(|(_, &b)| b == b'\r' || b == b'\n')
            .map(|(i, _)| i)
    }

    #[test]
    fn every_end_in_order_across_windows() {
        let mut text = Vec::new();
        for i in 0..50 {
            text.extend_from_slice(
                format!("id: {i}\ndata: {}\r\n\r", "x".repeat(i * 3)).as_bytes(),
            );
        }
        let mut ends = LineEnds::new(&text);
        let mut from = 0;
        let mut got = Vec::new();
        while let Some(i) = ends.next_from(from) {
            got.push(i);
            from = i + 1;
        }
        let want: Vec<usize> = (0..text.len())
            .filter(|&i| text[i] == b'\r' || text[i] == b'\n')
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn empty_and_endless_pieces() {
        assert_eq!(LineEnds::new(b"").next_from(0), None);
        let long = vec![b'a'; 200];
        assert_eq!(LineEnds::new(&long).next_from(0), None);
        let mut ends = LineEnds::new(&long);
        assert_eq!(ends.next_from(199), None);
        assert_eq!(ends.next_from(200), None);
    }

    proptest! {
        /// Any bytes (CR and LF made common), asked from positions that only go forward by
        /// random steps (a CRLF skips one; a line of many bytes skips a window): the answer is
        /// the naive scan's.
        #[test]
        fn answers_as_the_naive_scan(
            raw in proptest::collection::vec(prop_oneof![Just(b'\r'), Just(b'\n'), any::<u8>()], 0..400),
            steps in proptest::collection::vec(0usize..130, 1..40),
        ) {
            let mut ends = LineEnds::new(&raw);
            let mut from = 0;
            for step in steps {
                let got = ends.next_from(from);
                prop_assert_eq!(got, naive(&raw, from), "from {}", from);
                from = match got {
                    Some(i) => i + 1 + step % 3,
                    None => from + step,
                };
            }
        }
    }
}
