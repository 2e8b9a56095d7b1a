//! The store's write connection: a plain TCP socket that sends a pipeline's RESP bytes
//! (`super::resp`) and counts Redis's replies without building them into values.
//!
//! Why not the `redis` crate's connection, as reads use: it parses every reply into a
//! `redis::Value` (an allocation per `XADD`'s entry id) through a general parser: a quarter of
//! the store thread's CPU in scenario 1a once the pipeline was hand-encoded (perf/NOTES.md,
//! "Replay store on the per-event path"), and it does not lend its socket. A write needs to know
//! only how many replies came and whether one was an error, which a scan of the bytes tells.
//!
//! The connection speaks RESP2 (it never sends `HELLO`), so replies are of five kinds:
//!
//! ```text
//! +<text>\r\n         simple string        -<text>\r\n   error (the command failed)
//! :<integer>\r\n      integer              $-1\r\n       null
//! $<len>\r\n<len bytes>\r\n  bulk string   *<n>\r\n<n replies>   array (*-1: null array)
//! ```
//!
//! Rules the scan applies, in order (anything else is a protocol error and drops the connection,
//! whose replies could no longer be matched to commands):
//! 1. a reply starts with one of `+ - : $ *`;
//! 2. its first line ends with `\r\n` within MAX_LINE bytes;
//! 3. a length or count is `-1` or decimal digits only (no sign, no spaces, no `+`), at most
//!    MAX_BULK for a bulk string;
//! 4. a bulk string's bytes are followed by `\r\n`;
//! 5. an array's elements are replies by the same rules (its errors do not count as a failed
//!    command: only a top-level `-` does).

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Longest first line of a reply (type byte to `\r\n`), in bytes. Past it: a protocol error and
/// the connection dropped. Redis's lines are an error message or a number; its longest error
/// messages are a few hundred bytes.
const MAX_LINE: usize = 4096;

/// Longest bulk string reply accepted, in bytes. Past it: a protocol error and the connection
/// dropped. A write's replies are entry ids (~20 bytes); the bound keeps a confused peer from
/// making the buffer grow without limit.
const MAX_BULK: usize = 1 << 20;

/// Most elements an array reply may announce (nested ones included). Past it: a protocol error
/// and the connection dropped. A write's replies hold no arrays at all.
const MAX_ELEMENTS: usize = 1 << 20;

/// The reply buffer's size at first, in bytes: a pipeline of 2048 `XADD`s answers ~45 KiB, read
/// in pieces of at most this much. It doubles when one reply does not fit (up to about
/// MAX_BULK), and never shrinks.
const READ_BUFFER: usize = 64 * 1024;

/// Why a write failed.
#[derive(Debug)]
pub(super) enum WireError {
    /// The socket failed, timed out or was closed: the connection is unusable.
    Io(io::Error),
    /// One or more commands answered an error (the connection is still in step). `first` is the
    /// first one's message, for the log.
    Server { first: String, errors: usize },
    /// Redis answered something that is not RESP2: the connection is dropped.
    Protocol { what: &'static str },
}

impl WireError {
    /// The connection cannot be used any more (its replies would be out of step).
    pub(super) fn is_broken(&self) -> bool {
        !matches!(self, WireError::Server { .. })
    }
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::Io(e) => write!(f, "{e}"),
            WireError::Server { first, errors: 1 } => write!(f, "Redis answered: {first}"),
            WireError::Server { first, errors } => {
                write!(f, "Redis answered {errors} errors, the first: {first}")
            }
            WireError::Protocol { what } => write!(f, "unexpected reply from Redis: {what}"),
        }
    }
}

impl From<io::Error> for WireError {
    fn from(e: io::Error) -> WireError {
        WireError::Io(e)
    }
}

/// Where and how to connect, taken from the `redis` crate's parse of `--replay-store` (so both
/// connections read the URL the same way).
#[derive(Clone)]
pub(super) struct Target {
    host: String,
    port: u16,
    username: Option<String>,
    password: Option<String>,
    db: i64,
}

impl Target {
    /// None: an address kind the store does not write to (only `redis://` reaches here).
    pub(super) fn from_info(info: &redis::ConnectionInfo) -> Option<Target> {
        let redis::ConnectionAddr::Tcp(host, port) = info.addr() else {
            return None;
        };
        let settings = info.redis_settings();
        Some(Target {
            host: host.clone(),
            port: *port,
            username: settings.username().map(str::to_string),
            password: settings.password().map(str::to_string),
            db: settings.db(),
        })
    }
}

/// A connected write connection.
pub(super) struct Wire {
    stream: TcpStream,
    /// The reply buffer, all of it usable (zeroed once, when allocated or grown): read into
    /// `replies[filled..]`, scanned from `scanned`.
    replies: Vec<u8>,
    /// Bytes read into `replies`.
    filled: usize,
    /// Bytes of `replies` that belong to replies already counted.
    scanned: usize,
}

impl Wire {
    /// Connects within `connect_timeout` per address, sets `io_timeout` on both directions, and
    /// authenticates and selects the database as the URL says.
    pub(super) fn connect(
        target: &Target,
        connect_timeout: Duration,
        io_timeout: Duration,
    ) -> Result<Wire, WireError> {
        let mut last = None;
        let mut stream = None;
        for addr in (target.host.as_str(), target.port).to_socket_addrs()? {
            match TcpStream::connect_timeout(&addr, connect_timeout) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let Some(stream) = stream else {
            return Err(WireError::Io(last.unwrap_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, "no address for the Redis host")
            })));
        };
        // A pipeline is one write followed by a wait for its answer: nothing to coalesce.
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(io_timeout))?;
        stream.set_write_timeout(Some(io_timeout))?;
        let mut wire = Wire {
            stream,
            replies: vec![0; READ_BUFFER],
            filled: 0,
            scanned: 0,
        };
        let mut hello = Vec::new();
        let mut commands = 0;
        if let Some(password) = &target.password {
            let mut args: Vec<&[u8]> = vec![b"AUTH"];
            if let Some(user) = &target.username {
                args.push(user.as_bytes());
            }
            args.push(password.as_bytes());
            super::resp::append_command(&mut hello, &args);
            commands += 1;
        }
        if target.db != 0 {
            let db = target.db.to_string();
            super::resp::append_command(&mut hello, &[b"SELECT", db.as_bytes()]);
            commands += 1;
        }
        if commands > 0 {
            wire.pipeline(&hello, commands)?;
        }
        Ok(wire)
    }

    /// Sends `bytes` (`commands` encoded commands) and reads their `commands` replies. Every reply
    /// is read even when one is an error, so the connection stays in step.
    pub(super) fn pipeline(&mut self, bytes: &[u8], commands: usize) -> Result<(), WireError> {
        self.stream.write_all(bytes)?;
        let mut errors = 0;
        let mut first = None;
        for _ in 0..commands {
            let reply = self.next_reply()?;
            if reply.is_error {
                errors += 1;
                if first.is_none() {
                    let line = &self.replies[reply.start + 1..reply.line_end];
                    first = Some(String::from_utf8_lossy(line).into_owned());
                }
            }
        }
        match first {
            None => Ok(()),
            Some(first) => Err(WireError::Server { first, errors }),
        }
    }

    /// Scans the next complete reply, reading from the socket until it is there.
    fn next_reply(&mut self) -> Result<Scanned, WireError> {
        loop {
            match scan_reply(&self.replies[..self.filled], self.scanned) {
                Ok(Some(reply)) => {
                    self.scanned = reply.end;
                    return Ok(reply);
                }
                Ok(None) => self.read_more()?,
                Err(what) => return Err(WireError::Protocol { what }),
            }
        }
    }

    /// Reads what the socket has (at least one byte, waiting up to the read timeout) after the
    /// bytes not yet scanned, first moving those to the front.
    fn read_more(&mut self) -> Result<(), WireError> {
        if self.scanned > 0 {
            self.replies.copy_within(self.scanned..self.filled, 0);
            self.filled -= self.scanned;
            self.scanned = 0;
        }
        if self.filled == self.replies.len() {
            // One reply longer than the buffer (the scan bounds it by MAX_BULK and MAX_LINE).
            self.replies.resize(self.replies.len() * 2, 0);
        }
        match self.stream.read(&mut self.replies[self.filled..]) {
            Ok(0) => Err(WireError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "Redis closed the connection",
            ))),
            Ok(n) => {
                self.filled += n;
                Ok(())
            }
            Err(e) => Err(WireError::Io(e)),
        }
    }
}

/// One reply found in a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Scanned {
    /// Where it starts (its type byte).
    pub(super) start: usize,
    /// Where its first line's `\r\n` starts (an error's message is `start + 1..line_end`).
    pub(super) line_end: usize,
    /// Just past its last byte.
    pub(super) end: usize,
    /// A top-level error (`-`).
    pub(super) is_error: bool,
}

/// Scans the reply starting at `buf[at]`: Ok(None) when it is not all there yet, Err when it breaks
/// the rules in the module doc.
///
/// ```text
/// pending = 1                                  (replies still to scan: arrays add theirs)
/// while pending > 0:
///     line = up to the next \r\n               (none within MAX_LINE: malformed; none yet: wait)
///     + - :   -> pending -= 1
///     $ len   -> skip len bytes and \r\n; pending -= 1   ($-1: pending -= 1)
///     * n     -> pending += n - 1                        (*-1: pending -= 1)
/// ```
pub(super) fn scan_reply(buf: &[u8], at: usize) -> Result<Option<Scanned>, &'static str> {
    let mut pos = at;
    let mut pending: usize = 1;
    let mut first_line_end = None;
    while pending > 0 {
        let Some(&kind) = buf.get(pos) else {
            return Ok(None);
        };
        let window = &buf[pos + 1..buf.len().min(pos + 1 + MAX_LINE)];
        let Some(cr) = memchr::memchr(b'\r', window) else {
            if window.len() >= MAX_LINE {
                return Err("a reply line is longer than MAX_LINE");
            }
            return Ok(None);
        };
        let line_end = pos + 1 + cr;
        match buf.get(line_end + 1) {
            None => return Ok(None),
            Some(b'\n') => {}
            Some(_) => return Err("a reply line has a bare \\r"),
        }
        first_line_end.get_or_insert(line_end);
        let line = &buf[pos + 1..line_end];
        pos = line_end + 2;
        match kind {
            b'+' | b'-' | b':' => pending -= 1,
            b'$' => {
                match length(line)? {
                    None => {}
                    Some(len) if len > MAX_BULK => {
                        return Err("a bulk reply is longer than MAX_BULK")
                    }
                    Some(len) => {
                        let Some(after) = buf.get(pos + len..pos + len + 2) else {
                            return Ok(None);
                        };
                        if after != b"\r\n" {
                            return Err("a bulk reply does not end with \\r\\n");
                        }
                        pos += len + 2;
                    }
                }
                pending -= 1;
            }
            b'*' => match length(line)? {
                None => pending -= 1,
                Some(n) if n > MAX_ELEMENTS => {
                    return Err("an array reply has more than MAX_ELEMENTS elements")
                }
                Some(n) => pending = pending - 1 + n,
            },
            _ => return Err("a reply starts with an unknown type byte"),
        }
    }
    Ok(Some(Scanned {
        start: at,
        line_end: first_line_end.unwrap_or(at),
        end: pos,
        is_error: buf[at] == b'-',
    }))
}

/// A bulk string's length or an array's count: `-1` (None: null) or decimal digits.
fn length(line: &[u8]) -> Result<Option<usize>, &'static str> {
    if line == b"-1" {
        return Ok(None);
    }
    // 19 digits always fit in a u64, hence a usize on the 64-bit targets tether runs on.
    if line.is_empty() || line.len() > 19 || !line.iter().all(u8::is_ascii_digit) {
        return Err("a reply length is not -1 or decimal digits");
    }
    let n = line.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    usize::try_from(n)
        .map(Some)
        .map_err(|_| "a reply length does not fit in memory")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A slow, obviously right oracle: the `redis` crate's parser, asked whether the bytes hold
    /// one complete value and how long it is.
    fn crate_parse(bytes: &[u8]) -> Option<(usize, bool)> {
        let mut parser = redis::Parser::new();
        let mut cursor = std::io::Cursor::new(bytes);
        match parser.parse_value(&mut cursor) {
            Ok(value) => Some((
                cursor.position() as usize,
                matches!(value, redis::Value::ServerError(_)),
            )),
            Err(_) => None,
        }
    }

    const REPLIES: &[&[u8]] = &[
        b"$15\r\n1733377000000-0\r\n",
        b":1\r\n",
        b":0\r\n",
        b"+OK\r\n",
        b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
        b"-ERR unknown command 'XADDD'\r\n",
        b"$-1\r\n",
        b"$0\r\n\r\n",
        b"$6\r\na\r\nb\r\n\r\n",
        b"*-1\r\n",
        b"*0\r\n",
        b"*2\r\n$1\r\na\r\n*2\r\n:1\r\n-ERR inner\r\n",
    ];

    #[test]
    fn every_reply_scans_to_its_end_as_the_crate_parses_it() {
        for reply in REPLIES {
            let got = scan_reply(reply, 0).unwrap().unwrap();
            let (len, is_error) = crate_parse(reply).unwrap();
            assert_eq!((got.end, got.is_error), (len, is_error), "{reply:?}");
        }
    }

    #[test]
    fn a_reply_cut_anywhere_waits_for_more_and_padding_is_left_alone() {
        // All replies back to back, with padding around: at every split point the scan asks for
        // more until the reply is whole, and never reads past its end.
        let mut all = b"PAD".to_vec();
        for reply in REPLIES {
            all.extend_from_slice(reply);
        }
        let data_end = all.len();
        all.extend_from_slice(b"$3\r\nxy");
        let mut at = 3;
        for reply in REPLIES {
            let end = at + reply.len();
            for cut in at..end {
                assert_eq!(
                    scan_reply(&all[..cut], at),
                    Ok(None),
                    "{reply:?} cut at {cut}"
                );
            }
            let got = scan_reply(&all, at).unwrap().unwrap();
            assert_eq!(got.end, end, "{reply:?}");
            at = end;
        }
        assert_eq!(at, data_end);
        assert_eq!(scan_reply(&all, at), Ok(None), "the trailing partial reply");
    }

    #[test]
    fn an_error_message_is_found_on_the_first_line() {
        let reply = b"-ERR no\r\n";
        let got = scan_reply(reply, 0).unwrap().unwrap();
        assert_eq!(&reply[got.start + 1..got.line_end], b"ERR no");
        assert!(got.is_error);
        // An error inside an array is not a failed command.
        let nested = b"*1\r\n-ERR inner\r\n";
        assert!(!scan_reply(nested, 0).unwrap().unwrap().is_error);
    }

    #[test]
    fn malformed_replies_are_refused() {
        for bad in [
            &b"?1\r\n"[..],
            b"$+5\r\nhello\r\n",
            b"$ 5\r\nhello\r\n",
            b"$-2\r\n",
            b"$\r\n",
            b"$5\r\nhelloXY",
            b"*x\r\n",
            b":1\rX",
            b"$99999999999999999999\r\n",
        ] {
            assert!(scan_reply(bad, 0).is_err(), "{bad:?} accepted");
        }
        let mut long = vec![b'+'];
        long.extend(std::iter::repeat_n(b'a', MAX_LINE + 1));
        assert!(scan_reply(&long, 0).is_err());
        let big = format!("${}\r\n", MAX_BULK + 1);
        assert!(scan_reply(big.as_bytes(), 0).is_err());
        let many = format!("*{}\r\n", MAX_ELEMENTS + 1);
        assert!(scan_reply(many.as_bytes(), 0).is_err());
    }
}
