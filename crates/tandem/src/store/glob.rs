//! Glob-style pattern matching as Redis's `KEYS`, `SCAN MATCH` and
//! `PSUBSCRIBE` use it: `*`, `?`, `[abc]`, `[^a-z]`, and `\` to escape.
//!
//! Matching backtracks only to the last `*`, so it runs in
//! O(pattern × subject) time whatever the pattern (no exponential blow-up).

/// Whether `subject` matches the glob `pattern`.
pub fn matches(pattern: &[u8], subject: &[u8]) -> bool {
    let mut pattern_at = 0;
    let mut subject_at = 0;
    // Where to resume after the most recent `*`: (pattern after it, subject position).
    let mut star: Option<(usize, usize)> = None;
    while subject_at < subject.len() {
        if pattern_at < pattern.len() {
            match pattern[pattern_at] {
                b'*' => {
                    while pattern_at < pattern.len() && pattern[pattern_at] == b'*' {
                        pattern_at += 1;
                    }
                    if pattern_at == pattern.len() {
                        return true;
                    }
                    star = Some((pattern_at, subject_at));
                    continue;
                }
                _ => {
                    if let Some(next) = match_one(pattern, pattern_at, subject[subject_at]) {
                        pattern_at = next;
                        subject_at += 1;
                        continue;
                    }
                }
            }
        }
        match star {
            Some((resume_pattern, resume_subject)) => {
                pattern_at = resume_pattern;
                subject_at = resume_subject + 1;
                star = Some((resume_pattern, resume_subject + 1));
            }
            None => return false,
        }
    }
    pattern[pattern_at..].iter().all(|&byte| byte == b'*')
}

/// Matches one subject byte against the pattern element at `at`; returns
/// the position after that element on a match.
fn match_one(pattern: &[u8], at: usize, byte: u8) -> Option<usize> {
    match pattern[at] {
        b'?' => Some(at + 1),
        b'[' => match_class(pattern, at + 1, byte),
        b'\\' if at + 1 < pattern.len() => (pattern[at + 1] == byte).then_some(at + 2),
        literal => (literal == byte).then_some(at + 1),
    }
}

/// Matches a `[...]` class starting after its `[`, as Redis does: a missing
/// `]` ends the class at the end of the pattern.
fn match_class(pattern: &[u8], mut at: usize, byte: u8) -> Option<usize> {
    let negate = pattern.get(at) == Some(&b'^');
    if negate {
        at += 1;
    }
    let mut matched = false;
    while at < pattern.len() && pattern[at] != b']' {
        if pattern[at] == b'\\' && at + 1 < pattern.len() {
            matched |= pattern[at + 1] == byte;
            at += 2;
        } else if at + 2 < pattern.len() && pattern[at + 1] == b'-' && pattern[at + 2] != b']' {
            let (low, high) = (pattern[at].min(pattern[at + 2]), pattern[at].max(pattern[at + 2]));
            matched |= (low..=high).contains(&byte);
            at += 3;
        } else {
            matched |= pattern[at] == byte;
            at += 1;
        }
    }
    let after = if at < pattern.len() { at + 1 } else { at };
    (matched != negate).then_some(after)
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn redis_examples() {
        assert!(matches(b"h?llo", b"hello"));
        assert!(matches(b"h*llo", b"heeeello"));
        assert!(matches(b"h*llo", b"hllo"));
        assert!(matches(b"h[ae]llo", b"hallo"));
        assert!(!matches(b"h[ae]llo", b"hillo"));
        assert!(matches(b"h[^e]llo", b"hallo"));
        assert!(!matches(b"h[^e]llo", b"hello"));
        assert!(matches(b"h[a-b]llo", b"hbllo"));
        assert!(!matches(b"h[a-b]llo", b"hcllo"));
        assert!(matches(b"*", b""));
        assert!(matches(b"user:*:name", b"user:42:name"));
        assert!(!matches(b"user:*:name", b"user:42:age"));
        assert!(matches(b"a\\*b", b"a*b"));
        assert!(!matches(b"a\\*b", b"axb"));
        assert!(!matches(b"abc", b"ab"));
        assert!(!matches(b"ab", b"abc"));
    }

    #[test]
    fn pathological_patterns_finish() {
        let subject = vec![b'a'; 10_000];
        let pattern = b"*a*a*a*a*a*a*a*a*a*a*a*a*b";
        assert!(!matches(pattern, &subject));
    }
}
