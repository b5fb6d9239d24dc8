//! Text an app wrote, made safe to show a person: its control characters (the escape
//! sequences a terminal obeys, `ESC[6n` makes a terminal type into the user's input) and the
//! Unicode marks that reorder or break what is shown (bidirectional overrides and isolates,
//! line and paragraph separators) are shown as visible escapes instead of being passed on.

use std::borrow::Cow;

/// `text` with every control character but newline and tab written as a visible escape:
/// `\e` for ESC, `\r`, `\xHH` for the other C0 controls and DEL, `\u{HH}` for C1 controls and
/// the reordering marks. Text without any comes back borrowed.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if !needs_escape(c) {
            out.push(c);
            continue;
        }
        match c {
            '\x1b' => out.push_str("\\e"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push_str(&format!("\\u{{{:02x}}}", c as u32)),
        }
    }
    Cow::Owned(out)
}

/// Like [`escape_controls`], for one line of a table: newlines and tabs are escaped too.
pub fn escape_line(text: &str) -> Cow<'_, str> {
    match escape_controls(text) {
        Cow::Borrowed(t) if !t.contains(['\n', '\t']) => Cow::Borrowed(t),
        other => Cow::Owned(other.replace('\n', "\\n").replace('\t', "\\t")),
    }
}

fn needs_escape(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t') || reorders(c)
}

/// Marks that change the order or the lines of what is shown (a file name could otherwise
/// read backwards, or as another line): bidirectional embeddings, overrides, isolates and
/// marks, and the Unicode line and paragraph separators.
fn reorders(c: char) -> bool {
    matches!(
        c,
        '\u{061c}'
            | '\u{200e}'
            | '\u{200f}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_become_visible_and_plain_text_is_untouched() {
        assert!(matches!(
            escape_controls("plain text\nwith a\ttab, ünïcödé"),
            Cow::Borrowed(_)
        ));
        assert_eq!(
            escape_controls("\x1b[6n\x1b]0;title\x07 done\r\n\x7f\u{9b}31m"),
            "\\e[6n\\e]0;title\\x07 done\\r\n\\x7f\\u{9b}31m"
        );
        assert_eq!(escape_line("a\tb\nc\x1b"), "a\\tb\\nc\\e");
        // A name that would read backwards, or as a line of its own.
        assert_eq!(
            escape_controls("evil\u{202e}txt.exe\u{2028}hutch: ok"),
            "evil\\u{202e}txt.exe\\u{2028}hutch: ok"
        );
        assert!(matches!(escape_controls("emoji 👩‍💻 stay"), Cow::Borrowed(_)));
        assert!(matches!(escape_line("ps -e"), Cow::Borrowed(_)));
    }
}
