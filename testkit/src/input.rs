//! One fuzz input read as a few header bytes that choose the reads (and a limit), then the
//! payload those reads cut:
//!
//! ```text
//! [mode] [knob] [cut: u16 LE] x (mode % 16, when mode % 16 < 15) [payload ...]
//! mode % 16 == 15: the payload arrives one byte per read
//! knob: a target-specific choice (which limits; 0 is always the defaults)
//! ```
//!
//! Cut offsets are taken modulo `payload.len() + 1`, sorted and deduplicated, so every input
//! is valid and small mutations of the header move the cuts a little. A short input simply has
//! no cut (or no payload).

/// `mode % 16` that means "one byte per read".
const BYTEWISE: u8 = 15;

/// A fuzz input decoded into its payload and the reads it arrives in.
#[derive(Debug, Clone)]
pub struct Reads<'a> {
    /// The bytes under test.
    pub payload: &'a [u8],
    /// The target's choice of limits or mode (0: defaults).
    pub knob: u8,
    /// Where reads end, strictly inside the payload, ascending; the last read ends at its end.
    pub cuts: Vec<usize>,
}

impl<'a> Reads<'a> {
    pub fn decode(data: &'a [u8]) -> Reads<'a> {
        let (mode, knob, rest) = match data {
            [mode, knob, rest @ ..] => (*mode, *knob, rest),
            [mode] => (*mode, 0, &[][..]),
            [] => (0, 0, &[][..]),
        };
        let count = mode % 16;
        if count == BYTEWISE {
            let cuts = (1..rest.len()).collect();
            return Reads {
                payload: rest,
                knob,
                cuts,
            };
        }
        let header = (usize::from(count) * 2).min(rest.len());
        let (raw_cuts, payload) = rest.split_at(header);
        let mut cuts: Vec<usize> = raw_cuts
            .chunks_exact(2)
            .map(|c| usize::from(u16::from_le_bytes([c[0], c[1]])) % (payload.len() + 1))
            .filter(|&c| c > 0 && c < payload.len())
            .collect();
        cuts.sort_unstable();
        cuts.dedup();
        Reads {
            payload,
            knob,
            cuts,
        }
    }

    /// The ends of the successive reads: each cut, then the payload's end.
    pub fn ends(&self) -> impl Iterator<Item = usize> + '_ {
        self.cuts
            .iter()
            .copied()
            .chain(std::iter::once(self.payload.len()))
    }

    /// The payload as the pieces the reads deliver.
    pub fn pieces(&self) -> Vec<&'a [u8]> {
        let mut start = 0;
        self.ends()
            .map(|end| {
                let piece = &self.payload[start..end];
                start = end;
                piece
            })
            .collect()
    }

    /// Encodes `payload` cut at `cuts` with `knob` (the inverse of [`Reads::decode`] for at most
    /// 14 cuts, each below 65536): for seeds and regression inputs written by hand.
    pub fn encode(payload: &[u8], knob: u8, cuts: &[usize]) -> Vec<u8> {
        assert!(cuts.len() < usize::from(BYTEWISE), "at most 14 cuts");
        let mut out = vec![cuts.len() as u8, knob];
        for &c in cuts {
            let c = u16::try_from(c).expect("cut below 65536");
            out.extend_from_slice(&c.to_le_bytes());
        }
        out.extend_from_slice(payload);
        out
    }

    /// Encodes `payload` to arrive one byte per read.
    pub fn encode_bytewise(payload: &[u8], knob: u8) -> Vec<u8> {
        let mut out = vec![BYTEWISE, knob];
        out.extend_from_slice(payload);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_inverts_encode() {
        let payload = b"GET / HTTP/1.1\r\n\r\n";
        let data = Reads::encode(payload, 7, &[3, 9]);
        let r = Reads::decode(&data);
        assert_eq!(
            (r.payload, r.knob, r.cuts.clone()),
            (&payload[..], 7, vec![3, 9])
        );
        assert_eq!(
            r.pieces(),
            vec![&payload[..3], &payload[3..9], &payload[9..]]
        );
        let r = Reads::decode(&[]);
        assert_eq!(r.pieces(), vec![&b""[..]]);
        let data = Reads::encode_bytewise(b"abc", 0);
        assert_eq!(Reads::decode(&data).pieces(), vec![&b"a"[..], b"b", b"c"]);
    }
}
