//! Tool-name globs (`mcp-tool`, `filter-tools`): `*` any run of characters (none included), `?`
//! exactly one character, every other character itself. No character classes, no escapes: tool
//! names are identifiers, and a pattern language with fewer corners is one a policy author
//! reads right.
//!
//! Matching never backtracks more than one star, so no pattern can make it exponential:
//!
//! ```text
//! split the pattern at its stars into segments (each a run of literal characters and `?`)
//! no star:      the name is the one segment, exactly
//! first segment must match at the start, last one at the end (anchored)
//! each middle segment, in order: its leftmost match after the previous one
//!     (leftmost is optimal: a later match only leaves less room for the segments after it)
//! ```
//!
//! Cost: O(|name| · |segment|) per segment at worst, O(|name| · |pattern|) in all.

/// One character position of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Atom {
    /// `?`: any one character.
    Any,
    /// A character that matches only itself.
    Char(char),
}

/// A compiled glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Glob {
    /// The runs between stars, in order (empty runs dropped, except that a pattern without a
    /// star is one segment, possibly empty).
    segments: Vec<Vec<Atom>>,
    /// The pattern starts with `*`: the first segment is not anchored at the name's start.
    star_first: bool,
    /// The pattern ends with `*`: the last segment is not anchored at the name's end.
    star_last: bool,
    /// The pattern has at least one `*`.
    has_star: bool,
}

impl Glob {
    pub(crate) fn new(pattern: &str) -> Glob {
        let atoms = |s: &str| -> Vec<Atom> {
            s.chars()
                .map(|c| if c == '?' { Atom::Any } else { Atom::Char(c) })
                .collect()
        };
        let has_star = pattern.contains('*');
        let segments: Vec<Vec<Atom>> = if has_star {
            pattern
                .split('*')
                .filter(|s| !s.is_empty())
                .map(atoms)
                .collect()
        } else {
            vec![atoms(pattern)]
        };
        Glob {
            segments,
            star_first: pattern.starts_with('*'),
            star_last: pattern.ends_with('*'),
            has_star,
        }
    }

    /// Whether `name` matches the whole pattern.
    pub(crate) fn matches(&self, name: &str) -> bool {
        // Tool names are short; one small Vec buys indexing by character.
        let name: Vec<char> = name.chars().collect();
        if !self.has_star {
            return self
                .segments
                .first()
                .is_some_and(|seg| seg.len() == name.len() && fits_at(seg, &name, 0));
        }
        let mut segments: &[Vec<Atom>] = &self.segments;
        let mut start = 0;
        let mut end = name.len();
        if !self.star_first {
            let Some((first, rest)) = segments.split_first() else {
                return true;
            };
            if first.len() > name.len() || !fits_at(first, &name, 0) {
                return false;
            }
            start = first.len();
            segments = rest;
        }
        if !self.star_last {
            let Some((last, rest)) = segments.split_last() else {
                return true;
            };
            if last.len() > end - start || !fits_at(last, &name, end - last.len()) {
                return false;
            }
            end -= last.len();
            segments = rest;
        }
        for seg in segments {
            match find(seg, &name[..end], start) {
                Some(at) => start = at + seg.len(),
                None => return false,
            }
        }
        true
    }
}

/// `seg` matches `name` at `at` (the caller checked that it fits).
fn fits_at(seg: &[Atom], name: &[char], at: usize) -> bool {
    debug_assert!(at + seg.len() <= name.len());
    seg.iter().zip(&name[at..]).all(|(atom, &c)| match atom {
        Atom::Any => true,
        Atom::Char(want) => *want == c,
    })
}

/// The leftmost position at or after `from` where `seg` matches inside `name`.
fn find(seg: &[Atom], name: &[char], from: usize) -> Option<usize> {
    let last_start = name.len().checked_sub(seg.len())?;
    (from..=last_start).find(|&at| fits_at(seg, name, at))
}

#[cfg(test)]
mod tests {
    use super::Glob;

    /// The obviously right oracle: recursive, exponential, for short inputs only.
    fn oracle(p: &[char], n: &[char]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (None, Some(_)) => false,
            (Some('*'), _) => oracle(&p[1..], n) || (!n.is_empty() && oracle(p, &n[1..])),
            (Some('?'), Some(_)) => oracle(&p[1..], &n[1..]),
            (Some(c), Some(d)) => c == d && oracle(&p[1..], &n[1..]),
            (Some(_), None) => false,
        }
    }

    #[test]
    fn table() {
        let cases = [
            ("delete_*", "delete_file", true),
            ("delete_*", "delete_", true),
            ("delete_*", "undelete_file", false),
            ("exec_sql", "exec_sql", true),
            ("exec_sql", "exec_sql2", false),
            ("exec_?ql", "exec_sql", true),
            ("exec_?ql", "exec_ql", false),
            ("*", "", true),
            ("*", "anything", true),
            ("", "", true),
            ("", "a", false),
            ("?", "", false),
            ("?", "é", true),
            ("*_admin_*", "x_admin_y", true),
            ("*_admin_*", "_admin_", true),
            ("*_admin_*", "_admin", false),
            ("a*b*c", "abc", true),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "acb", false),
            ("a*a", "a", false),
            ("a*a", "aa", true),
            ("**", "x", true),
            ("*?", "", false),
            ("*?", "x", true),
        ];
        for (pattern, name, want) in cases {
            assert_eq!(
                Glob::new(pattern).matches(name),
                want,
                "{pattern:?} {name:?}"
            );
        }
    }

    #[test]
    fn agrees_with_oracle_on_all_short_inputs() {
        let alphabet = ['a', 'b', '*', '?'];
        let mut patterns = vec![String::new()];
        for _ in 0..4 {
            let longer: Vec<String> = patterns
                .iter()
                .flat_map(|p| alphabet.iter().map(move |c| format!("{p}{c}")))
                .collect();
            patterns.extend(longer);
        }
        patterns.sort();
        patterns.dedup();
        let mut names = vec![String::new()];
        for _ in 0..4 {
            let longer: Vec<String> = names
                .iter()
                .flat_map(|n| ['a', 'b'].iter().map(move |c| format!("{n}{c}")))
                .collect();
            names.extend(longer);
        }
        names.sort();
        names.dedup();
        for p in &patterns {
            let glob = Glob::new(p);
            let pc: Vec<char> = p.chars().collect();
            for n in &names {
                let nc: Vec<char> = n.chars().collect();
                assert_eq!(glob.matches(n), oracle(&pc, &nc), "{p:?} {n:?}");
            }
        }
    }

    #[test]
    fn pathological_patterns_stay_fast() {
        // A backtracking matcher takes exponential time on these; this one is quadratic at
        // worst, so 20k-character names finish at once.
        let name = "a".repeat(20_000);
        let pattern = format!("{}b*", "*a".repeat(30));
        let started = std::time::Instant::now();
        assert!(!Glob::new(&pattern).matches(&name));
        assert!(Glob::new(&"*a".repeat(30)).matches(&name));
        assert!(!Glob::new(&format!("*{}b*", "?".repeat(50))).matches(&name));
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }
}
