//! `.env` files (`--env-file`, a service's `env_file`) read by docker compose's rules, those of
//! compose-go's `dotenv` package: blank lines and `#` lines skipped, `export ` allowed, keys of
//! letters, digits, `_`, `.`, `-`, `[`, `]` ended by `=` or `:`, a key alone on its line taken
//! from the environment (set only if it is there); unquoted values end at the line's end or at
//! ` #` (an inline comment), trimmed; single-quoted values are literal (`\'` is a quote) and
//! double-quoted ones take escapes (`\n`, `\t`, `\"`, `\\`, `\$`, `\0NNN`, ...); both may span
//! lines; unquoted and double-quoted values expand `${VAR}` from the environment, then from
//! the keys above them, an unset one being empty. Errors name the line, as compose's do.
//! Pure: the environment is a lookup function. Tested on compose-go's own fixtures.

use super::{SpecError, Vars, invalid};

/// Parses `text` (the file `name`) with `lookup` as the environment (the shell for the CLI's
/// `--env-file`, the deploy's variables for a service's `env_file`).
pub fn parse(
    text: &str,
    name: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<(String, String)>, SpecError> {
    let mut p = Parser {
        line: 1,
        name,
        out: Vec::new(),
    };
    let src = text.strip_prefix('\u{feff}').unwrap_or(text);
    p.run(src, lookup)?;
    Ok(p.out)
}

struct Parser<'a> {
    line: usize,
    name: &'a str,
    out: Vec<(String, String)>,
}

/// Blanks within a line (not the line break).
fn is_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\u{b}' | '\u{c}' | '\r' | ' ' | '\u{85}' | '\u{a0}'
    )
}

impl Parser<'_> {
    fn err(&self, message: String) -> SpecError {
        invalid(
            format!("env file {:?}, line {}", self.name, self.line),
            message,
        )
    }

    fn set(&mut self, key: String, value: String) {
        match self.out.iter_mut().find(|(k, _)| *k == key) {
            Some(e) => e.1 = value,
            None => self.out.push((key, value)),
        }
    }

    fn run(
        &mut self,
        mut src: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), SpecError> {
        loop {
            // The next statement: past blanks, line breaks and comment lines.
            let Some(pos) = src.find(|c: char| {
                if c == '\n' {
                    self.line += 1;
                }
                !c.is_whitespace()
            }) else {
                return Ok(());
            };
            src = &src[pos..];
            if src.starts_with('#') {
                match src.find('\n') {
                    Some(p) => {
                        src = &src[p..];
                        continue;
                    }
                    None => return Ok(()),
                }
            }
            if let Some(rest) = src.strip_prefix("export")
                && rest.starts_with(char::is_whitespace)
            {
                src = rest.trim_start_matches(is_space);
            }
            // The key, up to `=`, `:` or the line's end (then it is inherited).
            let mut end = None;
            for (i, c) in src.char_indices() {
                if is_space(c) {
                    continue;
                }
                match c {
                    '=' | ':' | '\n' => {
                        end = Some((i, c));
                        break;
                    }
                    '_' | '.' | '-' | '[' | ']' => {}
                    c if c.is_alphanumeric() => {}
                    c => {
                        let first = src.lines().next().unwrap_or_default();
                        return Err(self.err(format!(
                            "unexpected character {c:?} in variable name {first:?}: names are letters, digits, `_`, `.`, `-`, `[` and `]`"
                        )));
                    }
                }
            }
            // A last line without a break is a key alone too.
            let (at, stop) = end.unwrap_or((src.len(), '\n'));
            let key = src[..at].trim_end().to_string();
            if key.contains(' ') {
                return Err(self.err(format!(
                    "key {key:?} cannot contain a space: write KEY=VALUE"
                )));
            }
            src = src.get(at + stop.len_utf8()..).unwrap_or_default();
            if stop == '\n' {
                self.line += usize::from(end.is_some());
                if let Some(v) = lookup(&key) {
                    self.set(key, v);
                }
                continue;
            }
            src = src.trim_start_matches(is_space);
            let (value, rest) = self.value(src, lookup)?;
            self.set(key, value);
            src = rest;
        }
    }

    /// A value and what follows it.
    fn value<'s>(
        &mut self,
        src: &'s str,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(String, &'s str), SpecError> {
        let quote = match src.chars().next() {
            Some(q @ ('"' | '\'')) => q,
            _ => {
                let (value, rest) = src.split_once('\n').unwrap_or((src, ""));
                self.line += 1;
                let value = value.split_once(" #").map_or(value, |(v, _)| v);
                let value = self.expand(value.trim_end(), lookup)?;
                return Ok((value, rest));
            }
        };
        let mut chars = String::new();
        let mut escaped = false;
        let start_line = self.line;
        for (i, c) in src.char_indices().skip(1) {
            if c == '\n' {
                self.line += 1;
            }
            if c != quote {
                if !escaped && c == '\\' {
                    escaped = true;
                    continue;
                }
                if escaped {
                    escaped = false;
                    chars.push('\\');
                }
                chars.push(c);
                continue;
            }
            if escaped {
                escaped = false;
                chars.push(c);
                continue;
            }
            let value = if quote == '"' {
                self.expand(&unescape(&chars), lookup)?
            } else {
                chars
            };
            return Ok((value, &src[i + c.len_utf8()..]));
        }
        self.line = start_line;
        let first = src.lines().next().unwrap_or_default();
        Err(self.err(format!(
            "unterminated quoted value {first}: close it with {quote}"
        )))
    }

    /// `$VAR`/`${VAR...}` from the environment, then from the keys above; unset is empty.
    fn expand(
        &self,
        value: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<String, SpecError> {
        if !value.contains('$') {
            return Ok(value.to_string());
        }
        let mut vars = Vars::new();
        for name in super::referenced_vars(value) {
            let found = lookup(&name).or_else(|| {
                self.out
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.clone())
            });
            if let Some(v) = found {
                vars.insert(name, v);
            }
        }
        let loc = format!("env file {:?}, line {}", self.name, self.line);
        super::interpolate::interpolate_lenient(value, &vars, &loc)
    }
}

/// Double-quoted escapes as compose-go's `expandEscapes`: `\a \b \f \n \r \t \v \" \\` as
/// in Go strings, `\$` a literal `$` (kept as `$$` for the expansion that follows), `\0NNN`
/// an octal byte; any other backslash stays.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.peek().copied() {
            Some(e @ ('a' | 'b' | 'f' | 'n' | 'r' | 't' | 'v' | '"' | '\\')) => {
                it.next();
                out.push(match e {
                    'a' => '\u{7}',
                    'b' => '\u{8}',
                    'f' => '\u{c}',
                    'n' => '\n',
                    'r' => '\r',
                    't' => '\t',
                    'v' => '\u{b}',
                    other => other,
                });
            }
            Some('$') => {
                it.next();
                out.push_str("$$");
            }
            Some('0') => {
                it.next();
                let mut digits = String::new();
                while digits.len() < 3 && it.peek().is_some_and(char::is_ascii_digit) {
                    digits.extend(it.next());
                }
                match u8::from_str_radix(&digits, 8) {
                    Ok(b) if digits.len() == 3 => out.push(char::from(b)),
                    _ => {
                        out.push('\\');
                        out.push_str(&digits);
                    }
                }
            }
            _ => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn comments_quotes_escapes_and_expansion() {
        let text = "# c\nexport A=1 # note\nB=x#y\nC='a # not a comment'\nD=\"a\\tb\\$c ${A}\"\nE: yaml style\nF=\"two\nlines\"\nG=${A}-${NOPE:-d}-${NOPE}\n";
        let got = parse(text, "t.env", &none).expect("parses");
        let get = |k: &str| got.iter().find(|(x, _)| x == k).map(|(_, v)| v.as_str());
        assert_eq!(get("A"), Some("1"));
        assert_eq!(get("B"), Some("x#y"), "a # without a blank before is kept");
        assert_eq!(get("C"), Some("a # not a comment"), "{got:?}");
        assert_eq!(get("D"), Some("a\tb$c 1"));
        assert_eq!(get("E"), Some("yaml style"));
        assert_eq!(get("F"), Some("two\nlines"));
        assert_eq!(get("G"), Some("1-d-"));
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse("A=1\nB=\"open\n\nC=2\n", "x.env", &none).unwrap_err();
        assert!(
            e.to_string().contains("line 2") && e.to_string().contains("unterminated"),
            "{e}"
        );
        let e = parse("A=1\nBAD KEY\n", "x.env", &none).unwrap_err();
        assert!(
            e.to_string().contains("line 2") && e.to_string().contains("space"),
            "{e}"
        );
        let e = parse("A=1\nB$=2\n", "x.env", &none).unwrap_err();
        assert!(
            e.to_string().contains("line 2") && e.to_string().contains("'$'"),
            "{e}"
        );
    }
}
