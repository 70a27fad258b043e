//! `synchronous_standby_names` as text and as keel-core's [`SyncNames`].
//!
//! The grammar is Postgres' `syncrep_gram.y`: `FIRST n (list)`,
//! `ANY n (list)`, `n (list)` (which means FIRST) or a bare `list` (FIRST 1);
//! list members are identifiers, numbers, `"double-quoted names"` (`""`
//! inside for a quote) or `*`. Keywords are case-insensitive. The empty
//! string means asynchronous commit.

use std::collections::BTreeSet;
use std::fmt;

use keel_core::SyncNames;

/// Parses the setting. Errors are for text Postgres itself would reject.
pub fn parse_sync_names(text: &str) -> Result<SyncNames, SyncNamesError> {
    let tokens = tokenize(text)?;
    let mut at = tokens.as_slice();
    if at.is_empty() {
        return Ok(SyncNames::default());
    }
    let keyword = match at {
        [Token::Word(w), Token::Word(n), Token::Open, ..] if is_number(n) => {
            let quorum = if w.eq_ignore_ascii_case("ANY") {
                true
            } else if w.eq_ignore_ascii_case("FIRST") {
                false
            } else {
                return Err(SyncNamesError("expected FIRST or ANY before the number"));
            };
            at = &at[1..];
            Some(quorum)
        }
        _ => None,
    };
    let (num, quorum, list) = match at {
        [Token::Word(n), Token::Open, list @ .., Token::Close] if is_number(n) => {
            let num = n.parse::<u32>().map_err(|_| SyncNamesError("the number of standbys is too large"))?;
            (num, keyword.unwrap_or(false), list)
        }
        _ if keyword.is_some() => return Err(SyncNamesError("expected (names) after the number")),
        list => (1, false, list),
    };
    if num == 0 {
        return Err(SyncNamesError("the number of synchronous standbys must be greater than zero"));
    }
    let mut members = BTreeSet::new();
    for (i, token) in list.iter().enumerate() {
        match (i % 2, token) {
            (0, Token::Word(name) | Token::Quoted(name)) => {
                members.insert(name.clone());
            }
            (1, Token::Comma) => {}
            _ => return Err(SyncNamesError("expected names separated by commas")),
        }
    }
    if list.len() % 2 == 0 {
        return Err(SyncNamesError("expected a name after each comma"));
    }
    Ok(SyncNames { members, num, quorum })
}

/// Formats for `postgresql.conf`: `FIRST n ("a", "b")` or `ANY n (...)`,
/// every name quoted so that hyphens and upper case survive; empty for no
/// members.
pub fn format_sync_names(names: &SyncNames) -> String {
    if names.members.is_empty() {
        return String::new();
    }
    let list: Vec<String> = names
        .members
        .iter()
        .map(|m| if m == "*" { "*".to_owned() } else { format!("\"{}\"", m.replace('"', "\"\"")) })
        .collect();
    let kind = if names.quorum { "ANY" } else { "FIRST" };
    // Postgres refuses 0 and would keep the previous value; waiting for one
    // standby more than asked is the safe side of rule 3.
    format!("{kind} {} ({})", names.num.max(1), list.join(", "))
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncNamesError(pub &'static str);

impl fmt::Display for SyncNamesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "synchronous_standby_names: {}", self.0)
    }
}

impl std::error::Error for SyncNamesError {}

#[derive(Debug, PartialEq, Eq)]
enum Token {
    /// An identifier, a number or `*`.
    Word(String),
    Quoted(String),
    Open,
    Close,
    Comma,
}

fn is_number(word: &str) -> bool {
    !word.is_empty() && word.bytes().all(|b| b.is_ascii_digit())
}

fn tokenize(text: &str) -> Result<Vec<Token>, SyncNamesError> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '(' => tokens.push(Token::Open),
            ')' => tokens.push(Token::Close),
            ',' => tokens.push(Token::Comma),
            '*' => tokens.push(Token::Word("*".into())),
            '"' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('"') if chars.peek() == Some(&'"') => {
                            chars.next();
                            name.push('"');
                        }
                        Some('"') => break,
                        Some(c) => name.push(c),
                        None => return Err(SyncNamesError("unterminated quoted name")),
                    }
                }
                tokens.push(Token::Quoted(name));
            }
            // Identifiers start with a letter, '_' or any non-ASCII byte and
            // go on with digits and '$' too; numbers are digits only.
            c if c.is_alphanumeric() || c == '_' || !c.is_ascii() => {
                let mut word = String::from(c);
                while let Some(&next) = chars.peek() {
                    if next.is_alphanumeric() || next == '_' || next == '$' || !next.is_ascii() {
                        word.push(next);
                        chars.next();
                    } else {
                        break;
                    }
                }
                tokens.push(Token::Word(word));
            }
            _ => return Err(SyncNamesError("unexpected character")),
        }
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(members: &[&str], num: u32, quorum: bool) -> SyncNames {
        SyncNames { members: members.iter().map(|m| (*m).to_owned()).collect(), num, quorum }
    }

    #[test]
    fn every_form_of_the_grammar_parses() {
        assert_eq!(parse_sync_names("FIRST 2 (a, b)"), Ok(names(&["a", "b"], 2, false)));
        assert_eq!(parse_sync_names("any 1 (a, \"b-c\")"), Ok(names(&["a", "b-c"], 1, true)));
        assert_eq!(parse_sync_names("2 (a, b)"), Ok(names(&["a", "b"], 2, false)));
        assert_eq!(parse_sync_names("a, b"), Ok(names(&["a", "b"], 1, false)));
        assert_eq!(parse_sync_names("*"), Ok(names(&["*"], 1, false)));
        assert_eq!(parse_sync_names(""), Ok(SyncNames::default()));
        assert_eq!(parse_sync_names("  \t"), Ok(SyncNames::default()));
    }

    #[test]
    fn quoted_names_keep_quotes_spaces_and_case() {
        assert_eq!(
            parse_sync_names(r#"FIRST 1 ("Pg ""1""", pg_2$x, 42)"#),
            Ok(names(&["Pg \"1\"", "pg_2$x", "42"], 1, false))
        );
    }

    #[test]
    fn formatted_names_parse_back_to_the_same_set() {
        for original in [
            names(&["pg1", "pg-2", "Pg \"3\""], 2, false),
            names(&["a"], 1, true),
            names(&["*"], 1, false),
            SyncNames::default(),
        ] {
            assert_eq!(parse_sync_names(&format_sync_names(&original)), Ok(original.clone()), "{original:?}");
        }
        assert_eq!(format_sync_names(&names(&["pg2", "pg1"], 1, true)), "ANY 1 (\"pg1\", \"pg2\")");
        assert_eq!(format_sync_names(&names(&["pg2"], 0, false)), "FIRST 1 (\"pg2\")");
    }

    #[test]
    fn text_postgres_rejects_is_an_error_not_a_panic() {
        for bad in [
            "FIRST (a)",
            "ANY 1 a",
            "FIRST 1 (a",
            "FIRST 1 a)",
            "0 (a)",
            "ANY 0 (a)",
            "FIRST 99999999999 (a)",
            "a,,b",
            "a b",
            ",",
            "a,",
            "()",
            "1 ()",
            "\"unterminated",
            "a; drop",
            "SOME 1 (a)",
            "first(a)",
        ] {
            assert!(parse_sync_names(bad).is_err(), "{bad:?} parsed");
        }
    }
}
