//! `$VAR` / `${VAR}` substitution as compose does it, applied to every scalar value (not to
//! keys): `${VAR:-default}` (unset or empty), `${VAR-default}` (unset), `${VAR:?message}`,
//! `${VAR?message}`, `${VAR:+alt}`, `${VAR+alt}`, and `$$` for a literal `$`. A `$` followed by
//! anything else (`$2a$...` in a bcrypt hash, `$(cmd)`) stays literal text, as in docker compose
//! (compose-go's pattern only matches `$$`, `$NAME` and `${...}`).

use super::{SpecError, Vars};
use yaml_rust2::Yaml;
use yaml_rust2::yaml::Hash;

pub(super) fn interpolate_tree(y: Yaml, vars: &Vars, loc: &str) -> Result<Yaml, SpecError> {
    Ok(match y {
        Yaml::String(s) => Yaml::String(interpolate(&s, vars, loc)?),
        Yaml::Array(a) => Yaml::Array(
            a.into_iter()
                .map(|v| interpolate_tree(v, vars, loc))
                .collect::<Result<_, _>>()?,
        ),
        Yaml::Hash(h) => {
            let mut out = Hash::new();
            for (k, v) in h {
                let here = match &k {
                    Yaml::String(s) => s.clone(),
                    _ => loc.to_string(),
                };
                let v = interpolate_tree(v, vars, &here)?;
                out.insert(k, v);
            }
            Yaml::Hash(out)
        }
        other => other,
    })
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}
fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Substitutes variables in one string. `loc` names where it is, for errors. An unset
/// variable without a default is an error (berth refuses to guess).
pub fn interpolate(s: &str, vars: &Vars, loc: &str) -> Result<String, SpecError> {
    substitute(s, vars, loc, false)
}

/// As [`interpolate`], an unset variable being empty (compose's rule inside `.env` files).
pub(super) fn interpolate_lenient(s: &str, vars: &Vars, loc: &str) -> Result<String, SpecError> {
    substitute(s, vars, loc, true)
}

fn substitute(s: &str, vars: &Vars, loc: &str, lenient: bool) -> Result<String, SpecError> {
    if !s.contains('$') {
        return Ok(s.to_string());
    }
    let bad = |message: String| SpecError::BadSubstitution {
        location: format!("`{loc}`"),
        message,
    };
    let mut out = String::with_capacity(s.len());
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c != '$' {
            out.push(c);
            i += 1;
            continue;
        }
        match chars.get(i + 1) {
            Some('$') => {
                out.push('$');
                i += 2;
            }
            Some('{') => {
                let close = chars[i + 2..]
                    .iter()
                    .position(|&c| c == '}')
                    .ok_or_else(|| bad(format!("`${{` without a closing `}}` in {s:?}")))?;
                let body: String = chars[i + 2..i + 2 + close].iter().collect();
                out.push_str(&expand_braced(&body, vars, s, &bad, lenient)?);
                i += 3 + close;
            }
            Some(&n) if is_name_start(n) => {
                let mut j = i + 1;
                while j < chars.len() && is_name_char(chars[j]) {
                    j += 1;
                }
                let name: String = chars[i + 1..j].iter().collect();
                match vars.get(&name) {
                    Some(v) => out.push_str(v),
                    None if lenient => {}
                    None => {
                        return Err(SpecError::UnsetVariable {
                            name,
                            detail: format!(" (used in `{loc}`)"),
                        });
                    }
                }
                i = j;
            }
            // Not a variable (`$2a$14$...`, `$(cmd)`, a `$` at the end): literal text, as
            // docker compose leaves it.
            _ => {
                out.push('$');
                i += 1;
            }
        }
    }
    Ok(out)
}

fn expand_braced(
    body: &str,
    vars: &Vars,
    whole: &str,
    bad: &dyn Fn(String) -> SpecError,
    lenient: bool,
) -> Result<String, SpecError> {
    let name_end = body.find(|c: char| !is_name_char(c)).unwrap_or(body.len());
    let name = &body[..name_end];
    if name.is_empty() || !name.starts_with(is_name_start) {
        return Err(bad(format!(
            "`${{{body}}}` does not start with a variable name in {whole:?}"
        )));
    }
    let op = &body[name_end..];
    let value = vars.get(name);
    let set_nonempty = value.is_some_and(|v| !v.is_empty());
    let unset = |detail: String| SpecError::UnsetVariable {
        name: name.to_string(),
        detail,
    };
    // Defaults may themselves hold variables (`${A:-$B}`), as compose allows.
    let nested = |d: &str| substitute(d, vars, name, lenient);
    if op.is_empty() {
        return match value {
            Some(v) => Ok(v.clone()),
            None if lenient => Ok(String::new()),
            None => Err(unset(String::new())),
        };
    }
    if let Some(d) = op.strip_prefix(":-") {
        return if set_nonempty {
            Ok(value.cloned().unwrap_or_default())
        } else {
            nested(d)
        };
    }
    if let Some(d) = op.strip_prefix(":?") {
        return if set_nonempty {
            Ok(value.cloned().unwrap_or_default())
        } else {
            Err(unset(format!(" or empty: {d}")))
        };
    }
    if let Some(d) = op.strip_prefix(":+") {
        return if set_nonempty {
            nested(d)
        } else {
            Ok(String::new())
        };
    }
    if let Some(d) = op.strip_prefix('-') {
        return match value {
            Some(v) => Ok(v.clone()),
            None => nested(d),
        };
    }
    if let Some(d) = op.strip_prefix('?') {
        return value.cloned().ok_or_else(|| unset(format!(": {d}")));
    }
    if let Some(d) = op.strip_prefix('+') {
        return if value.is_some() {
            nested(d)
        } else {
            Ok(String::new())
        };
    }
    Err(bad(format!(
        "`${{{body}}}` uses an unknown operator in {whole:?}: use :-, -, :?, ?, :+ or +"
    )))
}

/// Names of the variables a template refers to (so a client can send only those).
pub fn referenced_vars(text: &str) -> Vec<String> {
    let mut out = std::collections::BTreeSet::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '$' {
            i += 1;
            continue;
        }
        match chars.get(i + 1) {
            Some('$') => i += 2,
            Some('{') => {
                let mut j = i + 2;
                while j < chars.len() && is_name_char(chars[j]) {
                    j += 1;
                }
                out.insert(chars[i + 2..j].iter().collect::<String>());
                i = j;
            }
            Some(&n) if is_name_start(n) => {
                let mut j = i + 1;
                while j < chars.len() && is_name_char(chars[j]) {
                    j += 1;
                }
                out.insert(chars[i + 1..j].iter().collect::<String>());
                i = j;
            }
            _ => i += 1,
        }
    }
    out.into_iter().filter(|s| !s.is_empty()).collect()
}
