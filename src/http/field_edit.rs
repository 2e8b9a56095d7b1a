//! Header changes asked for by interceptor rules (`crate::rules`), applied while a head is
//! written (`super::rewrite`): the received bytes stay as they are, the edited fields are left
//! out and the new ones written after the rest.

/// One change to a head's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderEdit {
    /// Every field of this name removed, then this one added.
    Set { name: String, value: String },
    /// Every field of this name removed.
    Remove { name: String },
}

impl HeaderEdit {
    /// The field name it changes.
    pub fn name(&self) -> &str {
        match self {
            HeaderEdit::Set { name, .. } | HeaderEdit::Remove { name } => name,
        }
    }
}

/// Fields whose names only the proxy writes: framing and connection management. An edit of
/// one of them is ignored (the configuration file refuses such rules; an embedding program's
/// own interceptor is not checked there).
const PROXY_OWNED: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
];

/// True when one of `edits` changes the field `name` (so the received field is left out).
pub(crate) fn edited(edits: &[HeaderEdit], name: &[u8]) -> bool {
    edits.iter().any(|e| {
        let n = e.name();
        n.as_bytes().eq_ignore_ascii_case(name) && !is_proxy_owned(n)
    })
}

fn is_proxy_owned(name: &str) -> bool {
    PROXY_OWNED.iter().any(|p| p.eq_ignore_ascii_case(name))
}

/// The fields `edits` add, in order: a `Set` counts only when no later edit names the same
/// field (the last word wins), and never for a proxy-owned field.
pub(crate) fn added(edits: &[HeaderEdit]) -> impl Iterator<Item = (&str, &str)> {
    edits.iter().enumerate().filter_map(move |(i, e)| match e {
        HeaderEdit::Set { name, value }
            if !is_proxy_owned(name)
                && !edits[i + 1..]
                    .iter()
                    .any(|later| later.name().eq_ignore_ascii_case(name)) =>
        {
            Some((name.as_str(), value.as_str()))
        }
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(name: &str, value: &str) -> HeaderEdit {
        HeaderEdit::Set {
            name: name.into(),
            value: value.into(),
        }
    }

    #[test]
    fn the_last_edit_of_a_name_wins() {
        let edits = [
            set("X-A", "1"),
            HeaderEdit::Remove { name: "x-a".into() },
            set("X-B", "2"),
            set("x-b", "3"),
        ];
        assert!(edited(&edits, b"X-A"));
        assert!(edited(&edits, b"x-b"));
        assert!(!edited(&edits, b"x-c"));
        assert_eq!(added(&edits).collect::<Vec<_>>(), vec![("x-b", "3")]);
    }

    #[test]
    fn framing_fields_are_never_edited() {
        let edits = [
            set("Content-Length", "0"),
            HeaderEdit::Remove {
                name: "Transfer-Encoding".into(),
            },
        ];
        assert!(!edited(&edits, b"content-length"));
        assert!(!edited(&edits, b"transfer-encoding"));
        assert_eq!(added(&edits).count(), 0);
    }
}
