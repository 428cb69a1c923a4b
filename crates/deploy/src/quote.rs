//! Quoting for the two interpreters our words pass through: the device's
//! POSIX shell (an SSH command is one string the remote shell parses) and
//! systemd's `ExecStart=` (which has its own quotes and expands `$` and `%`).

/// `word` as one POSIX shell word that the shell reads back unchanged,
/// whatever it holds (spaces, quotes, `;`, `$(...)`, newlines).
pub fn shell(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"@%+=:,./_-".contains(&b));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// A command line of shell words, each quoted.
pub fn shell_line<S: AsRef<str>>(words: &[S]) -> String {
    words
        .iter()
        .map(|w| shell(w.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `word` as one argument of a systemd `ExecStart=` line: double quotes
/// with C escapes, `$` and `%` doubled so systemd expands neither.
pub fn systemd(word: &str) -> String {
    let mut out = String::from("\"");
    for c in word.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '$' => out.push_str("$$"),
            '%' => out.push_str("%%"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// What `sh` makes of `line`: its words, one per line.
    fn words_as_sh_reads_them(line: &str) -> Vec<String> {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("for w in {line}; do printf '%s\\0' \"$w\"; done"))
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout)
            .unwrap()
            .split_terminator('\0')
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn hostile_words_reach_the_shell_unchanged() {
        let words = [
            "plain",
            "two words",
            "it's",
            "a;rm -rf /",
            "$(touch /tmp/pwned)",
            "`id`",
            "\"quoted\"",
            "new\nline",
            "",
            "back\\slash",
            "*",
        ];
        assert_eq!(words_as_sh_reads_them(&shell_line(&words)), words);
    }

    #[test]
    fn systemd_words_escape_quotes_dollars_and_percents() {
        assert_eq!(systemd("/opt/a b/run"), "\"/opt/a b/run\"");
        assert_eq!(systemd("$(x) 100%"), "\"$$(x) 100%%\"");
        assert_eq!(systemd("say \"hi\"\\"), "\"say \\\"hi\\\"\\\\\"");
    }
}
