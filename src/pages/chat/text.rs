//! Safe rendering of user-written message text.
//!
//! Text is never parsed as HTML: it is split into plain pieces, links and
//! line breaks by [`split_text`] (pure, unit-tested), and each piece becomes
//! a text node, an `<a>` or a `<br/>`.

use leptos::prelude::*;

/// One piece of a message's text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Piece<'a> {
    /// Plain text, shown as is.
    Text(&'a str),
    /// An `http://` or `https://` URL.
    Link(&'a str),
    /// A line break (`\n`).
    Break,
}

const SCHEMES: [&str; 2] = ["https://", "http://"];

/// Splits `text` into plain pieces, links and line breaks.
///
/// A link starts with `http://` or `https://` (any case) at the start of the
/// text or after a character that is not a letter or digit, and runs up to
/// the next whitespace or `<`, `>`, `"`. Trailing punctuation (`.`, `,`,
/// `!`, `?`, ...) and an unbalanced closing bracket are left out of it.
/// `\r\n` counts as one line break.
pub fn split_text(text: &str) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push(Piece::Break);
        }
        let line = line.strip_suffix('\r').unwrap_or(line);
        split_line(line, &mut out);
    }
    out
}

fn split_line<'a>(line: &'a str, out: &mut Vec<Piece<'a>>) {
    // ASCII lowercasing keeps every byte offset, so indices found in `lower`
    // are valid in `line`.
    let lower = line.to_ascii_lowercase();
    let mut plain_start = 0;
    let mut pos = 0;
    while pos < line.len() {
        let Some((start, scheme_len)) = next_scheme(&lower, pos) else {
            break;
        };
        let preceded_ok = line[..start]
            .chars()
            .next_back()
            .is_none_or(|c| !c.is_alphanumeric());
        let end = start + url_len(&line[start..], scheme_len);
        if !preceded_ok || end == start {
            pos = start + scheme_len;
            continue;
        }
        if start > plain_start {
            out.push(Piece::Text(&line[plain_start..start]));
        }
        out.push(Piece::Link(&line[start..end]));
        plain_start = end;
        pos = end;
    }
    if plain_start < line.len() {
        out.push(Piece::Text(&line[plain_start..]));
    }
}

/// The first scheme at or after `from`: (its offset, its length).
fn next_scheme(lower: &str, from: usize) -> Option<(usize, usize)> {
    SCHEMES
        .iter()
        .filter_map(|s| lower[from..].find(s).map(|i| (from + i, s.len())))
        .min_by_key(|(i, _)| *i)
}

/// The length of the URL at the start of `s` (which starts with a scheme of
/// `scheme_len` bytes), or 0 when there is nothing after the scheme.
fn url_len(s: &str, scheme_len: usize) -> usize {
    let mut end = s
        .char_indices()
        .find(|(_, c)| c.is_whitespace() || matches!(c, '<' | '>' | '"'))
        .map_or(s.len(), |(i, _)| i);
    // Drop trailing punctuation, and closing brackets without an opener.
    while let Some(last) = s[..end].chars().next_back() {
        let strip = match last {
            '.' | ',' | ';' | ':' | '!' | '?' | '\'' | '*' => true,
            ')' => count(&s[..end], '(') < count(&s[..end], ')'),
            ']' => count(&s[..end], '[') < count(&s[..end], ']'),
            '}' => count(&s[..end], '{') < count(&s[..end], '}'),
            _ => false,
        };
        if !strip || end <= scheme_len {
            break;
        }
        end -= last.len_utf8();
    }
    if end <= scheme_len {
        0
    } else {
        end
    }
}

fn count(s: &str, c: char) -> usize {
    s.chars().filter(|&x| x == c).count()
}

/// The message text as views: text nodes, links and `<br/>`s.
pub fn render_text(text: &str) -> impl IntoView {
    split_text(text)
        .into_iter()
        .map(|piece| match piece {
            Piece::Text(t) => t.to_string().into_any(),
            Piece::Link(url) => view! {
                <a href=url.to_string() target="_blank" rel="noopener noreferrer">
                    {url.to_string()}
                </a>
            }
            .into_any(),
            Piece::Break => view! { <br /> }.into_any(),
        })
        .collect_view()
}

#[cfg(test)]
mod tests {
    use super::Piece::{Break, Link, Text};
    use super::*;

    #[test]
    fn plain_text_is_one_piece() {
        assert_eq!(split_text("hello there"), vec![Text("hello there")]);
        assert_eq!(split_text(""), vec![]);
    }

    #[test]
    fn markup_stays_text() {
        assert_eq!(
            split_text("<b>hi</b> & <script>alert(1)</script>"),
            vec![Text("<b>hi</b> & <script>alert(1)</script>")]
        );
    }

    #[test]
    fn links_are_found() {
        assert_eq!(
            split_text("see https://redis.io/docs now"),
            vec![Text("see "), Link("https://redis.io/docs"), Text(" now")]
        );
        assert_eq!(
            split_text("http://a.b/c?d=1&e=2#f"),
            vec![Link("http://a.b/c?d=1&e=2#f")]
        );
        assert_eq!(
            split_text("two: http://a.io and HTTPS://B.io"),
            vec![
                Text("two: "),
                Link("http://a.io"),
                Text(" and "),
                Link("HTTPS://B.io")
            ]
        );
    }

    #[test]
    fn trailing_punctuation_is_not_part_of_a_link() {
        assert_eq!(
            split_text("go to https://example.com."),
            vec![Text("go to "), Link("https://example.com"), Text(".")]
        );
        assert_eq!(
            split_text("(https://example.com/x)"),
            vec![Text("("), Link("https://example.com/x"), Text(")")]
        );
        assert_eq!(
            split_text("https://en.wikipedia.org/wiki/Rust_(language)!"),
            vec![
                Link("https://en.wikipedia.org/wiki/Rust_(language)"),
                Text("!")
            ]
        );
    }

    #[test]
    fn not_links() {
        assert_eq!(split_text("https://"), vec![Text("https://")]);
        assert_eq!(split_text("https://..."), vec![Text("https://...")]);
        assert_eq!(split_text("xhttp://a.b"), vec![Text("xhttp://a.b")]);
        assert_eq!(
            split_text("javascript:alert(1)"),
            vec![Text("javascript:alert(1)")]
        );
        assert_eq!(split_text("ftp://a.b"), vec![Text("ftp://a.b")]);
    }

    #[test]
    fn links_end_at_markup_characters() {
        assert_eq!(
            split_text("<https://a.io/x>\"y"),
            vec![Text("<"), Link("https://a.io/x"), Text(">\"y")]
        );
    }

    #[test]
    fn line_breaks() {
        assert_eq!(
            split_text("a\nb\r\n\nc"),
            vec![Text("a"), Break, Text("b"), Break, Break, Text("c")]
        );
        assert_eq!(split_text("\n"), vec![Break]);
        assert_eq!(
            split_text("https://a.io\nnext"),
            vec![Link("https://a.io"), Break, Text("next")]
        );
    }

    #[test]
    fn unicode_is_kept() {
        assert_eq!(
            split_text("héllo 👋 https://ex.com/é ok"),
            vec![Text("héllo 👋 "), Link("https://ex.com/é"), Text(" ok")]
        );
        assert_eq!(split_text("ééhttps://a.io"), vec![Text("ééhttps://a.io")]);
    }
}
