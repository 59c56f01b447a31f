//! Safe rendering of user-written message text.
//!
//! Text is never parsed as HTML: it is split into plain pieces, links, line
//! breaks and a little markup (`*bold*`, `_italic_`, `` `code` ``) by
//! [`split_text`] (pure, unit-tested), and each piece becomes a text node, an
//! `<a>`, a `<br/>`, or a `<strong>`/`<em>`/`<code>` holding a text node.

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
    /// `*bold*`, without the stars.
    Bold(&'a str),
    /// `_italic_`, without the underscores.
    Italic(&'a str),
    /// `` `code` ``, without the backticks; never holds links or markup.
    Code(&'a str),
}

const SCHEMES: [&str; 2] = ["https://", "http://"];

/// Splits `text` into plain pieces, links, line breaks and markup.
///
/// Within one line: `` `code` `` first (everything between two backticks
/// stays literal, URLs included), then links, then `*bold*` and `_italic_`
/// in the remaining text. A star or underscore only opens when it is at the
/// start or after a character that is not a letter or digit, and is followed
/// by a non-space; it closes after a non-space and before the end or a
/// character that is not a letter or digit. So `snake_case_words` and
/// `2*3*4` stay plain. Markup never spans line breaks and does not nest.
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

/// Splits one line at its code spans; the text between them goes to
/// [`split_links`].
fn split_line<'a>(line: &'a str, out: &mut Vec<Piece<'a>>) {
    let mut plain_start = 0;
    let mut pos = 0;
    while let Some(open) = line[pos..].find('`').map(|i| pos + i) {
        let Some(close) = line[open + 1..].find('`').map(|i| open + 1 + i) else {
            break;
        };
        if close == open + 1 {
            // "``" is no span: both backticks stay text.
            pos = close + 1;
            continue;
        }
        split_links(&line[plain_start..open], out);
        out.push(Piece::Code(&line[open + 1..close]));
        plain_start = close + 1;
        pos = close + 1;
    }
    split_links(&line[plain_start..], out);
}

fn split_links<'a>(line: &'a str, out: &mut Vec<Piece<'a>>) {
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
        split_emphasis(&line[plain_start..start], out);
        out.push(Piece::Link(&line[start..end]));
        plain_start = end;
        pos = end;
    }
    split_emphasis(&line[plain_start..], out);
}

/// Splits text (no links, no code, no line breaks) at `*bold*` and
/// `_italic_` spans.
fn split_emphasis<'a>(text: &'a str, out: &mut Vec<Piece<'a>>) {
    let mut plain_start = 0;
    let mut pos = 0;
    while let Some((open, marker)) = next_opener(text, pos) {
        match closer(text, open, marker) {
            Some(close) => {
                if open > plain_start {
                    out.push(Piece::Text(&text[plain_start..open]));
                }
                let inner = &text[open + 1..close];
                out.push(if marker == '*' {
                    Piece::Bold(inner)
                } else {
                    Piece::Italic(inner)
                });
                plain_start = close + 1;
                pos = close + 1;
            }
            None => pos = open + 1,
        }
    }
    if plain_start < text.len() {
        out.push(Piece::Text(&text[plain_start..]));
    }
}

/// The next `*` or `_` at or after `from` that can open a span: at the
/// start or after a non-alphanumeric character, and before a non-space.
fn next_opener(text: &str, from: usize) -> Option<(usize, char)> {
    text[from..]
        .char_indices()
        .map(|(i, c)| (from + i, c))
        .find(|&(i, c)| {
            (c == '*' || c == '_')
                && text[..i]
                    .chars()
                    .next_back()
                    .is_none_or(|p| !p.is_alphanumeric() && p != c)
                && text[i + 1..]
                    .chars()
                    .next()
                    .is_some_and(|n| !n.is_whitespace() && n != c)
        })
}

/// The offset of the marker closing the span opened at `open`: after a
/// non-space, before the end or a non-alphanumeric character.
fn closer(text: &str, open: usize, marker: char) -> Option<usize> {
    let body_start = open + marker.len_utf8();
    text[body_start..]
        .char_indices()
        .map(|(i, c)| (body_start + i, c))
        .find(|&(i, c)| {
            c == marker
                && i > body_start
                && text[..i]
                    .chars()
                    .next_back()
                    .is_some_and(|p| !p.is_whitespace())
                && text[i + 1..]
                    .chars()
                    .next()
                    .is_none_or(|n| !n.is_alphanumeric() && n != marker)
        })
        .map(|(i, _)| i)
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

/// The message text as views: text nodes, links, `<br/>`s and
/// `<strong>`/`<em>`/`<code>` around text nodes.
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
            Piece::Bold(t) => view! { <strong>{t.to_string()}</strong> }.into_any(),
            Piece::Italic(t) => view! { <em>{t.to_string()}</em> }.into_any(),
            Piece::Code(t) => view! { <code>{t.to_string()}</code> }.into_any(),
        })
        .collect_view()
}

#[cfg(test)]
mod tests {
    use super::Piece::{Bold, Break, Code, Italic, Link, Text};
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

    #[test]
    fn bold_italic_and_code() {
        assert_eq!(
            split_text("a *big* _deal_ with `x < y`"),
            vec![
                Text("a "),
                Bold("big"),
                Text(" "),
                Italic("deal"),
                Text(" with "),
                Code("x < y")
            ]
        );
        assert_eq!(split_text("*whole*"), vec![Bold("whole")]);
        assert_eq!(
            split_text("(*a b*), _c_!"),
            vec![Text("("), Bold("a b"), Text("), "), Italic("c"), Text("!")]
        );
        assert_eq!(split_text("*é*"), vec![Bold("é")]);
    }

    #[test]
    fn markers_inside_words_stay_text() {
        assert_eq!(
            split_text("snake_case_words"),
            vec![Text("snake_case_words")]
        );
        assert_eq!(split_text("2*3*4"), vec![Text("2*3*4")]);
        assert_eq!(split_text("a_b_ c"), vec![Text("a_b_ c")]);
        assert_eq!(split_text("_a_b"), vec![Text("_a_b")]);
        assert_eq!(split_text("* not bold *"), vec![Text("* not bold *")]);
        assert_eq!(split_text("**"), vec![Text("**")]);
        assert_eq!(split_text("** x **"), vec![Text("** x **")]);
        assert_eq!(split_text("5 * 3 = 15 *"), vec![Text("5 * 3 = 15 *")]);
        assert_eq!(split_text("__init__"), vec![Text("__init__")]);
    }

    #[test]
    fn unclosed_markup_stays_text() {
        assert_eq!(split_text("*open"), vec![Text("*open")]);
        assert_eq!(split_text("a ` b"), vec![Text("a ` b")]);
        assert_eq!(split_text("``"), vec![Text("``")]);
        assert_eq!(split_text("`` and `c`"), vec![Text("`` and "), Code("c")]);
    }

    #[test]
    fn markup_does_not_cross_lines() {
        assert_eq!(split_text("*a\nb*"), vec![Text("*a"), Break, Text("b*")]);
        assert_eq!(split_text("`a\nb`"), vec![Text("`a"), Break, Text("b`")]);
    }

    #[test]
    fn code_keeps_urls_and_markers_plain() {
        assert_eq!(
            split_text("run `curl https://a.io/*x*` now"),
            vec![Text("run "), Code("curl https://a.io/*x*"), Text(" now")]
        );
        assert_eq!(split_text("`<b>`"), vec![Code("<b>")]);
    }

    #[test]
    fn links_and_markup_together() {
        assert_eq!(
            split_text("*see* https://a.io/x_y_z _now_"),
            vec![
                Bold("see"),
                Text(" "),
                Link("https://a.io/x_y_z"),
                Text(" "),
                Italic("now")
            ]
        );
        // A star right after a URL is punctuation, not part of it.
        assert_eq!(
            split_text("*https://a.io*"),
            vec![Text("*"), Link("https://a.io"), Text("*")]
        );
    }

    #[test]
    fn emoji_stay_plain() {
        assert_eq!(
            split_text("👋 *hi* 🎉_x_"),
            vec![Text("👋 "), Bold("hi"), Text(" 🎉"), Italic("x")]
        );
    }
}
