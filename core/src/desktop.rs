//! Desktop Entry files (`.desktop`), as the freedesktop.org Desktop Entry Specification 1.5
//! defines them: the `[Desktop Entry]` group, string escapes, and the `Exec` key's quoting
//! and field codes.
//!
//! Errors name the line, so a user can fix the file.

use std::collections::BTreeMap;

/// An application entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesktopEntry {
    /// `Name` (the untranslated one).
    pub name: String,
    /// `Exec`, split into arguments, field codes kept as [`ExecArg::Field`].
    pub exec: Vec<ExecArg>,
    /// `TryExec`: a program that must exist for the entry to be usable.
    pub try_exec: Option<String>,
    /// `Path`: the working directory.
    pub path: Option<String>,
    /// `Icon`: a theme icon name or an absolute path.
    pub icon: Option<String>,
    /// `Terminal=true`: the app wants a terminal.
    pub terminal: bool,
    /// Line of `Exec`, for messages about it.
    pub exec_line: usize,
}

/// One argument of `Exec`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecArg {
    /// Literal text, with field codes inside it already expanded where they are allowed
    /// (`%%`, `%c`, `%k` and deprecated codes, which are dropped).
    Text(String),
    /// A field code standing alone as an argument: `%f %F %u %U %i`.
    Field(char),
}

/// Why a `.desktop` file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct DesktopError {
    pub line: usize,
    pub message: String,
}

fn err(line: usize, message: impl Into<String>) -> DesktopError {
    DesktopError {
        line,
        message: message.into(),
    }
}

/// Undoes the escapes of a `string` value: `\s \n \t \r \\`.
fn unescape_value(value: &str, line: usize) -> Result<String, DesktopError> {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('s') => out.push(' '),
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('\\') => out.push('\\'),
            // Kept for Exec's own quoting rules (`\"`, `\$`, `` \` ``), and `\;` of lists.
            Some(other @ ('"' | '$' | '`' | ';')) => {
                out.push('\\');
                out.push(other);
            }
            Some(other) => {
                return Err(err(line, format!("unknown escape `\\{other}`")));
            }
            None => return Err(err(line, "the value ends with a lone `\\`")),
        }
    }
    Ok(out)
}

/// Splits an (unescaped) `Exec` value into arguments by the spec's quoting rules.
pub fn split_exec(
    exec: &str,
    name: &str,
    file: &str,
    line: usize,
) -> Result<Vec<ExecArg>, DesktopError> {
    let mut args = Vec::new();
    let mut chars = exec.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ' ' || *c == '\t') {
            chars.next();
        }
        let Some(&first) = chars.peek() else { break };
        if first == '"' {
            chars.next();
            let mut arg = String::new();
            loop {
                match chars.next() {
                    None => return Err(err(line, "Exec has a quote that is never closed")),
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some(c @ ('"' | '`' | '$' | '\\')) => arg.push(c),
                        Some(c) => {
                            return Err(err(
                                line,
                                format!(
                                    "Exec quotes `\\{c}`: only \\\" \\` \\$ \\\\ may be escaped"
                                ),
                            ));
                        }
                        None => return Err(err(line, "Exec has a quote that is never closed")),
                    },
                    Some(c @ ('`' | '$')) => {
                        return Err(err(
                            line,
                            format!("Exec has an unescaped `{c}` inside quotes"),
                        ));
                    }
                    Some(c) => arg.push(c),
                }
            }
            if chars.peek().is_some_and(|c| *c != ' ' && *c != '\t') {
                return Err(err(line, "Exec has text right after a closing quote"));
            }
            args.push(ExecArg::Text(arg));
            continue;
        }
        let mut word = String::new();
        while let Some(&c) = chars.peek() {
            if c == ' ' || c == '\t' {
                break;
            }
            if c == '"' {
                return Err(err(line, "Exec has a quote in the middle of an argument"));
            }
            for reserved in [
                '\\', '`', '$', '\'', '>', '<', '~', '|', '&', ';', '*', '?', '#', '(', ')',
            ] {
                if c == reserved && reserved != '~' {
                    return Err(err(
                        line,
                        format!("Exec has a reserved character `{c}` outside quotes"),
                    ));
                }
            }
            word.push(c);
            chars.next();
        }
        match expand_codes(&word, name, file, line)? {
            // An argument made only of deprecated codes disappears.
            ExecArg::Text(t) if t.is_empty() => {}
            arg => args.push(arg),
        }
    }
    if args.is_empty() {
        return Err(err(line, "Exec is empty"));
    }
    match &args[0] {
        ExecArg::Field(_) => {
            return Err(err(
                line,
                "Exec starts with a field code instead of a program",
            ));
        }
        ExecArg::Text(program) if program.is_empty() => {
            return Err(err(line, "Exec's program is empty (\"\")"));
        }
        ExecArg::Text(_) => {}
    }
    Ok(args)
}

/// Field codes of an unquoted argument.
fn expand_codes(word: &str, name: &str, file: &str, line: usize) -> Result<ExecArg, DesktopError> {
    if let [b'%', code] = word.as_bytes()
        && "fFuUi".contains(*code as char)
    {
        return Ok(ExecArg::Field(*code as char));
    }
    let mut out = String::new();
    let mut chars = word.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some('c') => out.push_str(name),
            Some('k') => out.push_str(file),
            // Deprecated codes are removed.
            Some('d' | 'D' | 'n' | 'N' | 'v' | 'm') => {}
            Some(code @ ('f' | 'F' | 'u' | 'U' | 'i')) => {
                return Err(err(
                    line,
                    format!("Exec uses %{code} inside an argument; it must stand alone"),
                ));
            }
            Some(code) => return Err(err(line, format!("Exec has an unknown field code %{code}"))),
            None => return Err(err(line, "Exec ends with a lone %")),
        }
    }
    Ok(ExecArg::Text(out))
}

impl DesktopEntry {
    /// Parses the text of a `.desktop` file found at `file` (used for `%k`).
    pub fn parse(text: &str, file: &str) -> Result<Self, DesktopError> {
        let mut group: Option<(String, usize)> = None;
        let mut entry_line = None;
        let mut keys: BTreeMap<String, (String, usize)> = BTreeMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let l = raw.trim_end_matches('\r');
            if l.trim().is_empty() || l.trim_start().starts_with('#') {
                continue;
            }
            if let Some(rest) = l.strip_prefix('[') {
                let Some(name) = rest.strip_suffix(']') else {
                    return Err(err(line, format!("`{l}` is not a group header")));
                };
                if name == "Desktop Entry" {
                    if entry_line.is_some() {
                        return Err(err(line, "a second [Desktop Entry] group"));
                    }
                    entry_line = Some(line);
                } else if entry_line.is_none() {
                    return Err(err(line, "the first group must be [Desktop Entry]"));
                }
                group = Some((name.to_owned(), line));
                continue;
            }
            let Some((key, value)) = l.split_once('=') else {
                return Err(err(
                    line,
                    format!("`{l}` is neither `Key=Value` nor a group"),
                ));
            };
            let Some((group_name, _)) = &group else {
                return Err(err(line, "a key before the [Desktop Entry] group"));
            };
            if group_name != "Desktop Entry" {
                continue;
            }
            let key = key.trim_end();
            if key.is_empty()
                || !key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-[]@_.".contains(c))
            {
                return Err(err(line, format!("`{key}` is not a valid key")));
            }
            if keys.contains_key(key) {
                return Err(err(line, format!("key `{key}` appears twice")));
            }
            keys.insert(key.to_owned(), (value.trim_start().to_owned(), line));
        }
        let Some(entry_line) = entry_line else {
            return Err(err(
                1,
                "no [Desktop Entry] group: this is not a desktop entry",
            ));
        };
        let get = |k: &str| -> Result<Option<(String, usize)>, DesktopError> {
            keys.get(k)
                .map(|(v, line)| Ok((unescape_value(v, *line)?, *line)))
                .transpose()
        };
        let boolean = |k: &str| -> Result<bool, DesktopError> {
            match keys.get(k) {
                None => Ok(false),
                Some((v, _)) if v == "true" => Ok(true),
                Some((v, _)) if v == "false" => Ok(false),
                Some((v, line)) => Err(err(*line, format!("{k}={v}: use true or false"))),
            }
        };
        match get("Type")? {
            Some((t, _)) if t == "Application" => {}
            Some((t, line)) => {
                return Err(err(
                    line,
                    format!("Type={t}: only Application entries can be launched"),
                ));
            }
            None => return Err(err(entry_line, "[Desktop Entry] has no Type key")),
        }
        let Some((name, _)) = get("Name")? else {
            return Err(err(entry_line, "[Desktop Entry] has no Name key"));
        };
        if boolean("Hidden")? {
            return Err(err(
                keys["Hidden"].1,
                "Hidden=true: this entry is marked as deleted",
            ));
        }
        let Some((exec, exec_line)) = get("Exec")? else {
            return Err(err(
                entry_line,
                "[Desktop Entry] has no Exec key: it says nothing to run (D-Bus activation is \
                 not supported)",
            ));
        };
        let exec = split_exec(&exec, &name, file, exec_line)?;
        Ok(Self {
            exec,
            try_exec: get("TryExec")?.map(|v| v.0),
            path: get("Path")?.map(|v| v.0).filter(|p| !p.is_empty()),
            icon: get("Icon")?.map(|v| v.0).filter(|p| !p.is_empty()),
            terminal: boolean("Terminal")?,
            name,
            exec_line,
        })
    }

    /// The command lines to run for `files` (paths or URLs): one, or one per file when
    /// `Exec` takes a single file (`%f`, `%u`) and several are given.
    pub fn command_lines(&self, files: &[String]) -> Vec<Vec<String>> {
        let single = self
            .exec
            .iter()
            .any(|a| matches!(a, ExecArg::Field('f' | 'u')));
        if single && files.len() > 1 {
            return files
                .iter()
                .map(|f| self.expand(std::slice::from_ref(f)))
                .collect();
        }
        vec![self.expand(files)]
    }

    fn expand(&self, files: &[String]) -> Vec<String> {
        let mut argv = Vec::new();
        for arg in &self.exec {
            match arg {
                ExecArg::Text(t) => argv.push(t.clone()),
                ExecArg::Field('f' | 'u') => argv.extend(files.first().cloned()),
                ExecArg::Field('F' | 'U') => argv.extend(files.iter().cloned()),
                ExecArg::Field('i') => {
                    if let Some(icon) = &self.icon {
                        argv.push("--icon".into());
                        argv.push(icon.clone());
                    }
                }
                ExecArg::Field(_) => {}
            }
        }
        argv
    }

    /// Whether `Exec` takes files at all.
    pub fn takes_files(&self) -> bool {
        self.exec
            .iter()
            .any(|a| matches!(a, ExecArg::Field('f' | 'F' | 'u' | 'U')))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<DesktopEntry, DesktopError> {
        DesktopEntry::parse(text, "/apps/x.desktop")
    }

    const EDITOR: &str = "# an editor\n[Desktop Entry]\nType=Application\nName=Text Editor\n\
        Name[de]=Texteditor\nExec=editor --title=%c \"two words\" %F %i\nIcon=editor\n\
        TryExec=editor\nPath=/tmp\n\n[Desktop Action new]\nName=New\nExec=editor --new\n";

    #[test]
    fn field_codes_expand_per_the_spec() {
        let e = parse(EDITOR).unwrap();
        assert_eq!(e.name, "Text Editor");
        assert_eq!(e.try_exec.as_deref(), Some("editor"));
        assert_eq!(e.path.as_deref(), Some("/tmp"));
        assert!(e.takes_files());
        let files = vec!["/a b.txt".to_owned(), "/c.txt".to_owned()];
        assert_eq!(
            e.command_lines(&files),
            vec![vec![
                "editor",
                "--title=Text Editor",
                "two words",
                "/a b.txt",
                "/c.txt",
                "--icon",
                "editor"
            ]]
        );
        // %f with several files: one instance per file; %u takes URLs alike; %k is the file.
        let e =
            parse("[Desktop Entry]\nType=Application\nName=V\nExec=viewer %f --from %k 100%%\n")
                .unwrap();
        assert_eq!(
            e.command_lines(&files),
            vec![
                vec!["viewer", "/a b.txt", "--from", "/apps/x.desktop", "100%"],
                vec!["viewer", "/c.txt", "--from", "/apps/x.desktop", "100%"],
            ]
        );
        assert_eq!(
            e.command_lines(&[]),
            vec![vec!["viewer", "--from", "/apps/x.desktop", "100%"]]
        );
        let e = parse("[Desktop Entry]\nType=Application\nName=V\nExec=browser %U %d\n").unwrap();
        assert_eq!(
            e.command_lines(&files),
            vec![vec!["browser", "/a b.txt", "/c.txt"]]
        );
    }

    #[test]
    fn quoting_and_escapes_follow_the_spec() {
        // In the file, a backslash in a quoted argument is written twice (string escape),
        // then once more for Exec's own quoting.
        let e = parse(
            "[Desktop Entry]\nType=Application\nName=Q\nExec=\"/opt/my app/run\" \"a \\\\\"q\\\\\" \\\\$HOME \\\\\\\\ b\"\n",
        )
        .unwrap();
        assert_eq!(
            e.command_lines(&[]),
            vec![vec!["/opt/my app/run", "a \"q\" $HOME \\ b"]]
        );
        // `\s` is a space once the string is unescaped, so it separates arguments in Exec.
        let e = parse("[Desktop Entry]\nType=Application\nName=S\nExec=run\\sme x\n").unwrap();
        assert_eq!(e.command_lines(&[]), vec![vec!["run", "me", "x"]]);
    }

    #[test]
    fn broken_files_name_the_line() {
        let cases = [
            (
                "[Desktop Entry]\nType=Application\nName=X\n",
                1,
                "no Exec key",
            ),
            (
                "[Desktop Entry]\nType=Application\nName=X\nExec=\"unclosed\n",
                4,
                "never closed",
            ),
            (
                "[Desktop Entry]\nType=Application\nName=X\nExec=a \"b\"c\n",
                4,
                "right after a closing quote",
            ),
            (
                "[Desktop Entry]\nType=Application\nName=X\nExec=a $HOME\n",
                4,
                "reserved character `$`",
            ),
            (
                "[Desktop Entry]\nType=Application\nName=X\nExec=a --x=%f\n",
                4,
                "must stand alone",
            ),
            (
                "[Desktop Entry]\nType=Application\nName=X\nExec=a %z\n",
                4,
                "unknown field code %z",
            ),
            (
                "[Desktop Entry]\nType=Application\nName=X\nExec=%f\n",
                4,
                "starts with a field code",
            ),
            (
                "[Desktop Entry]\nType=Application\nName=X\nExec=\"\" a\n",
                4,
                "program is empty",
            ),
            (
                "[Desktop Entry]\nType=Application\nName=X\nExec=\n",
                4,
                "Exec is empty",
            ),
            (
                "[Desktop Entry]\nType=Link\nName=X\nURL=x\n",
                2,
                "only Application",
            ),
            ("[Desktop Entry]\nName=X\nExec=a\n", 1, "no Type key"),
            (
                "[Desktop Entry]\nType=Application\nExec=a\n",
                1,
                "no Name key",
            ),
            ("Name=X\n", 1, "before the [Desktop Entry] group"),
            (
                "[Other]\nName=X\n",
                1,
                "first group must be [Desktop Entry]",
            ),
            (
                "[Desktop Entry]\nType=Application\nName=X\nExec=a\nExec=b\n",
                5,
                "appears twice",
            ),
            (
                "[Desktop Entry]\nType=Application\njunk\n",
                3,
                "neither `Key=Value`",
            ),
            (
                "[Desktop Entry]\nType=Application\nName=X\\q\nExec=a\n",
                3,
                "unknown escape",
            ),
            (
                "[Desktop Entry]\nType=Application\nName=X\nExec=a\nTerminal=yes\n",
                5,
                "use true or false",
            ),
            (
                "[Desktop Entry]\nType=Application\nName=X\nExec=a\nHidden=true\n",
                5,
                "deleted",
            ),
            ("", 1, "not a desktop entry"),
            ("\u{0}\u{1}binary", 1, "neither `Key=Value`"),
        ];
        for (text, line, want) in cases {
            let e = parse(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.message.contains(want), "{text:?}: {e}");
        }
        assert_eq!(
            parse("[Desktop Entry]\nType=Application\nName=X\n")
                .unwrap_err()
                .to_string(),
            "line 1: [Desktop Entry] has no Exec key: it says nothing to run (D-Bus activation is not supported)"
        );
    }
}
