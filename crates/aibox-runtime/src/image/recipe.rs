//! Build recipes: an `aibox.toml` or a Dockerfile subset (FROM, RUN,
//! COPY, ENV, WORKDIR, USER, CMD, ENTRYPOINT), parsed into the same steps.
//! Anything outside the subset is refused with its line, never guessed.

use aibox_types::egress::{Mode, Rule};
use serde::Serialize;

/// One instruction. Its JSON form is part of the build cache key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "op")]
pub enum Instr {
    From {
        image: String,
    },
    /// `shell` for `/bin/sh -c`, else `argv` as given.
    Run {
        #[serde(skip_serializing_if = "Option::is_none")]
        shell: Option<String>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        argv: Vec<String>,
    },
    Copy {
        src: Vec<String>,
        dest: String,
    },
    Env {
        vars: Vec<(String, String)>,
    },
    Workdir {
        path: String,
    },
    User {
        user: String,
    },
    Cmd {
        argv: Vec<String>,
    },
    Entrypoint {
        argv: Vec<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Line (Dockerfile) or step number (aibox.toml), for messages.
    pub line: usize,
    /// As written, for logs and errors.
    pub text: String,
    pub instr: Instr,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Recipe {
    /// The first step is the `FROM`.
    pub steps: Vec<Step>,
    /// The template's name when the recipe gives one (aibox.toml).
    pub name: Option<String>,
    /// The network RUN steps get.
    pub network: Mode,
    pub rules: Vec<Rule>,
    /// Instructions accepted but without effect here (LABEL, EXPOSE...).
    pub ignored: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct ParseError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

/// The most steps a recipe may have (each may add a layer).
pub const MAX_STEPS: usize = 100;

const SUBSET: &str =
    "the supported subset is FROM, RUN, COPY, ENV, WORKDIR, USER, CMD and ENTRYPOINT";

/// Parse `text`; `file` names it in errors and picks the format
/// (`*.toml` is an aibox.toml, anything else a Dockerfile).
pub fn parse(file: &str, text: &str) -> Result<Recipe, ParseError> {
    let r = if file.ends_with(".toml") {
        parse_toml(file, text)?
    } else {
        parse_dockerfile(file, text)?
    };
    let err = |line, message: String| ParseError {
        file: file.to_string(),
        line,
        message,
    };
    match r.steps.first() {
        Some(Step {
            instr: Instr::From { .. },
            ..
        }) => {}
        Some(s) => return Err(err(s.line, "the first instruction must be FROM".into())),
        None => return Err(err(1, "the recipe has no FROM".into())),
    }
    if r.steps.len() > MAX_STEPS {
        return Err(err(
            r.steps[MAX_STEPS].line,
            format!("more than {MAX_STEPS} steps"),
        ));
    }
    Ok(r)
}

pub fn parse_dockerfile(file: &str, text: &str) -> Result<Recipe, ParseError> {
    let mut r = Recipe::default();
    // Logical lines: comments dropped, `\` continuations joined.
    let mut logical: Vec<(usize, String)> = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let trimmed = raw.trim();
        if trimmed.starts_with('#') {
            continue;
        }
        if trimmed.is_empty() && pending.is_none() {
            continue;
        }
        let (cont, body) = match trimmed.strip_suffix('\\') {
            Some(b) => (true, b),
            None => (false, trimmed),
        };
        let entry = pending.get_or_insert_with(|| (i + 1, String::new()));
        if !entry.1.is_empty() && !body.is_empty() {
            entry.1.push(' ');
        }
        entry.1.push_str(body.trim());
        if !cont {
            logical.extend(pending.take());
        }
    }
    logical.extend(pending.take());

    for (line, l) in logical {
        if l.is_empty() {
            continue;
        }
        let err = |message: String| ParseError {
            file: file.to_string(),
            line,
            message,
        };
        let (kw, rest) = l.split_once(char::is_whitespace).unwrap_or((&l, ""));
        let rest = rest.trim();
        let kw = kw.to_ascii_uppercase();
        if rest.starts_with("--") && kw != "RUN" {
            let flag = rest.split_whitespace().next().unwrap_or(rest);
            return Err(err(format!("{kw} {flag} is not supported")));
        }
        let need = |what: &str| -> Result<(), ParseError> {
            if rest.is_empty() {
                Err(err(format!("{kw} needs {what}")))
            } else {
                Ok(())
            }
        };
        let instr = match kw.as_str() {
            "FROM" => {
                need("an image")?;
                let words: Vec<&str> = rest.split_whitespace().collect();
                if r.steps.iter().any(|s| matches!(s.instr, Instr::From { .. })) {
                    return Err(err(
                        "multi-stage builds (a second FROM) are not supported".into(),
                    ));
                }
                match words.as_slice() {
                    [image] => Instr::From {
                        image: image.to_string(),
                    },
                    [image, as_, _] if as_.eq_ignore_ascii_case("as") => Instr::From {
                        image: image.to_string(),
                    },
                    _ => return Err(err(format!("FROM {rest:?}: expected FROM IMAGE"))),
                }
            }
            "RUN" => {
                need("a command")?;
                if rest.starts_with("--") {
                    let flag = rest.split_whitespace().next().unwrap_or(rest);
                    return Err(err(format!("RUN {flag} is not supported")));
                }
                match json_array(rest) {
                    Some(argv) if argv.is_empty() => return Err(err("RUN [] has no command".into())),
                    Some(argv) => Instr::Run { shell: None, argv },
                    None => Instr::Run {
                        shell: Some(rest.to_string()),
                        argv: vec![],
                    },
                }
            }
            "COPY" => {
                need("sources and a destination")?;
                let mut words = match json_array(rest) {
                    Some(w) => w,
                    None => split_words(rest).map_err(err)?,
                };
                if words.len() < 2 {
                    return Err(err("COPY needs at least one source and a destination".into()));
                }
                let dest = words.pop().unwrap_or_default();
                Instr::Copy { src: words, dest }
            }
            "ENV" => {
                need("NAME=value")?;
                Instr::Env {
                    vars: parse_env(rest).map_err(err)?,
                }
            }
            "WORKDIR" => {
                need("a path")?;
                Instr::Workdir {
                    path: unquote(rest).map_err(err)?,
                }
            }
            "USER" => {
                need("a user")?;
                Instr::User {
                    user: unquote(rest).map_err(err)?,
                }
            }
            "CMD" | "ENTRYPOINT" => {
                need("a command")?;
                let argv = json_array(rest).unwrap_or_else(|| {
                    vec!["/bin/sh".into(), "-c".into(), rest.to_string()]
                });
                if kw == "CMD" {
                    Instr::Cmd { argv }
                } else {
                    Instr::Entrypoint { argv }
                }
            }
            "LABEL" | "EXPOSE" | "MAINTAINER" | "STOPSIGNAL" | "HEALTHCHECK" => {
                r.ignored.push(format!("line {line}: {kw} has no effect on an aibox template"));
                continue;
            }
            "ADD" => {
                return Err(err(
                    "ADD is not supported: use COPY for files of the build context, and RUN with curl for URLs".into(),
                ))
            }
            other => return Err(err(format!("{other} is not supported ({SUBSET})"))),
        };
        r.steps.push(Step {
            line,
            text: l.clone(),
            instr,
        });
    }
    Ok(r)
}

/// `["a", "b"]` → its strings; `None` when it is not a JSON array of strings.
fn json_array(s: &str) -> Option<Vec<String>> {
    if !s.starts_with('[') {
        return None;
    }
    serde_json::from_str(s).ok()
}

/// Split on whitespace, honouring quotes and backslash escapes.
fn split_words(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut has = false;
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, c) if c.is_whitespace() => {
                if has {
                    out.push(std::mem::take(&mut cur));
                    has = false;
                }
            }
            (None, '"' | '\'') => {
                quote = Some(c);
                has = true;
            }
            (Some(q), c) if c == q => quote = None,
            (Some('\''), c) => cur.push(c),
            (_, '\\') => {
                has = true;
                match chars.next() {
                    Some(n) => cur.push(n),
                    None => cur.push('\\'),
                }
            }
            (_, c) => {
                has = true;
                cur.push(c);
            }
        }
    }
    if quote.is_some() {
        return Err(format!("unterminated quote in {s:?}"));
    }
    if has {
        out.push(cur);
    }
    Ok(out)
}

fn unquote(s: &str) -> Result<String, String> {
    let w = split_words(s)?;
    match w.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(format!("expected one value, got {s:?}")),
    }
}

fn valid_env_name(k: &str) -> bool {
    !k.is_empty()
        && !k.starts_with(|c: char| c.is_ascii_digit())
        && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// `ENV A=1 B="two words"` or the old `ENV A value with spaces`.
fn parse_env(s: &str) -> Result<Vec<(String, String)>, String> {
    let first = s.split_whitespace().next().unwrap_or("");
    let vars: Vec<(String, String)> = if first.contains('=') {
        split_words(s)?
            .into_iter()
            .map(|w| match w.split_once('=') {
                Some((k, v)) => Ok((k.to_string(), v.to_string())),
                None => Err(format!("ENV {w:?}: expected NAME=value")),
            })
            .collect::<Result<_, _>>()?
    } else {
        let (k, v) = s.split_once(char::is_whitespace).unwrap_or((s, ""));
        let v = v.trim();
        if v.is_empty() {
            return Err(format!("ENV {k}: a value is missing"));
        }
        vec![(k.to_string(), unquote(v).unwrap_or_else(|_| v.to_string()))]
    };
    if let Some((k, _)) = vars.iter().find(|(k, _)| !valid_env_name(k)) {
        return Err(format!("ENV: {k:?} is not a valid variable name"));
    }
    Ok(vars)
}

/// An aibox.toml:
///
/// ```toml
/// from = "busybox:1"
/// name = "tools:1"                     # optional
/// [network]
/// allow = ["pypi.org", "files.pythonhosted.org"]
/// [[step]]
/// run = "pip install numpy"
/// [[step]]
/// copy = ["src/", "/app/"]
/// [[step]]
/// env = { PYTHONUNBUFFERED = "1" }
/// ```
pub fn parse_toml(file: &str, text: &str) -> Result<Recipe, ParseError> {
    let err = |line: usize, message: String| ParseError {
        file: file.to_string(),
        line,
        message,
    };
    let doc: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let line = e.span().map_or(1, |s| {
            text[..s.start.min(text.len())].lines().count().max(1)
        });
        err(line, e.message().to_string())
    })?;
    let mut r = Recipe::default();
    for key in doc.keys() {
        if ![
            "from",
            "name",
            "network",
            "step",
            "cmd",
            "entrypoint",
            "env",
            "workdir",
            "user",
        ]
        .contains(&key.as_str())
        {
            return Err(err(
                0,
                format!("unknown key {key:?} (expected from, name, network, env, workdir, user, cmd, entrypoint and [[step]] tables)"),
            ));
        }
    }
    let from = doc
        .get("from")
        .and_then(|v| v.as_str())
        .ok_or_else(|| err(0, "`from = \"IMAGE\"` is missing".into()))?;
    r.steps.push(Step {
        line: 0,
        text: format!("FROM {from}"),
        instr: Instr::From { image: from.into() },
    });
    if let Some(n) = doc.get("name") {
        r.name = Some(
            n.as_str()
                .ok_or_else(|| err(0, "`name` must be a string".into()))?
                .to_string(),
        );
    }
    if let Some(net) = doc.get("network") {
        let t = net
            .as_table()
            .ok_or_else(|| err(0, "[network] must be a table".into()))?;
        for k in t.keys() {
            if k != "mode" && k != "allow" {
                return Err(err(
                    0,
                    format!("[network]: unknown key {k:?} (mode, allow)"),
                ));
            }
        }
        let allow: Vec<&str> = match t.get("allow") {
            None => vec![],
            Some(a) => a
                .as_array()
                .and_then(|a| a.iter().map(|v| v.as_str()).collect::<Option<Vec<_>>>())
                .ok_or_else(|| err(0, "[network] allow must be a list of strings".into()))?,
        };
        r.network = match t.get("mode").map(|m| m.as_str()) {
            None if allow.is_empty() => Mode::None,
            None | Some(Some("allowlist")) => Mode::Allowlist,
            Some(Some("full")) => Mode::Full,
            Some(Some("none")) => Mode::None,
            Some(_) => {
                return Err(err(
                    0,
                    "[network] mode must be \"none\", \"allowlist\" or \"full\"".into(),
                ))
            }
        };
        r.rules = allow
            .iter()
            .map(|a| a.parse::<Rule>())
            .collect::<Result<_, _>>()
            .map_err(|e| err(0, e.to_string()))?;
    }
    let steps = match doc.get("step") {
        None => vec![],
        Some(v) => v
            .as_array()
            .ok_or_else(|| err(0, "`step` must be [[step]] tables".into()))?
            .clone(),
    };
    for (i, s) in steps.iter().enumerate() {
        let n = i + 1;
        let t = s
            .as_table()
            .ok_or_else(|| err(n, "each [[step]] must be a table".into()))?;
        if t.len() != 1 {
            return Err(err(
                n,
                "each [[step]] has exactly one of run, copy, env, workdir, user, cmd, entrypoint"
                    .into(),
            ));
        }
        let (k, v) = t.iter().next().ok_or_else(|| err(n, "empty step".into()))?;
        r.steps.push(toml_step(n, k, v).map_err(|m| err(n, m))?);
    }
    // Top-level image settings apply after the steps.
    for k in ["env", "workdir", "user", "cmd", "entrypoint"] {
        if let Some(v) = doc.get(k) {
            let n = r.steps.len();
            r.steps.push(toml_step(n, k, v).map_err(|m| err(0, m))?);
        }
    }
    Ok(r)
}

fn toml_step(n: usize, k: &str, v: &toml::Value) -> Result<Step, String> {
    let strings = |v: &toml::Value| -> Option<Vec<String>> {
        v.as_array()?
            .iter()
            .map(|x| x.as_str().map(str::to_string))
            .collect()
    };
    let instr = match k {
        "run" => match v {
            toml::Value::String(s) if !s.trim().is_empty() => Instr::Run {
                shell: Some(s.clone()),
                argv: vec![],
            },
            _ => match strings(v) {
                Some(argv) if !argv.is_empty() => Instr::Run { shell: None, argv },
                _ => return Err("run must be a command line or a non-empty list".into()),
            },
        },
        "copy" => {
            let mut w = match v {
                toml::Value::String(s) => split_words(s)?,
                _ => strings(v).ok_or("copy must be \"SRC... DEST\" or a list")?,
            };
            if w.len() < 2 {
                return Err("copy needs at least one source and a destination".into());
            }
            let dest = w.pop().unwrap_or_default();
            Instr::Copy { src: w, dest }
        }
        "env" => {
            let t = v.as_table().ok_or("env must be a table of strings")?;
            let mut vars = Vec::new();
            for (k, v) in t {
                if !valid_env_name(k) {
                    return Err(format!("env: {k:?} is not a valid variable name"));
                }
                let v = match v {
                    toml::Value::String(s) => s.clone(),
                    toml::Value::Integer(i) => i.to_string(),
                    toml::Value::Boolean(b) => b.to_string(),
                    _ => return Err(format!("env {k}: the value must be a string")),
                };
                vars.push((k.clone(), v));
            }
            Instr::Env { vars }
        }
        "workdir" | "user" => {
            let s = v
                .as_str()
                .filter(|s| !s.is_empty())
                .ok_or_else(|| format!("{k} must be a non-empty string"))?
                .to_string();
            if k == "workdir" {
                Instr::Workdir { path: s }
            } else {
                Instr::User { user: s }
            }
        }
        "cmd" | "entrypoint" => {
            let argv = strings(v).ok_or_else(|| format!("{k} must be a list of strings"))?;
            if k == "cmd" {
                Instr::Cmd { argv }
            } else {
                Instr::Entrypoint { argv }
            }
        }
        other => {
            return Err(format!(
                "unknown step {other:?} (run, copy, env, workdir, user, cmd, entrypoint)"
            ))
        }
    };
    let text = match &instr {
        Instr::Run { shell: Some(s), .. } => format!("RUN {s}"),
        Instr::Env { vars } => {
            let kv: Vec<String> = vars.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
            format!("ENV {}", kv.join(" "))
        }
        Instr::Workdir { path } => format!("WORKDIR {path}"),
        Instr::User { user } => format!("USER {user}"),
        _ => format!("{} {}", k.to_ascii_uppercase(), v),
    };
    Ok(Step {
        line: n,
        text,
        instr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn df(text: &str) -> Result<Recipe, ParseError> {
        parse("Dockerfile", text)
    }

    #[test]
    fn dockerfile_subset_parses() {
        let r = df("# comment\nFROM busybox:1 AS base\nENV A=1 B=\"two words\"\nENV OLD value with spaces\nRUN echo a \\\n  && echo b\nRUN [\"/bin/echo\", \"x\"]\nCOPY a \"b c\" /dst/\nWORKDIR /app\nUSER 1001\nCMD [\"sh\"]\nEXPOSE 80\n").unwrap();
        let i: Vec<&Instr> = r.steps.iter().map(|s| &s.instr).collect();
        assert_eq!(
            i[0],
            &Instr::From {
                image: "busybox:1".into()
            }
        );
        assert_eq!(
            i[1],
            &Instr::Env {
                vars: vec![("A".into(), "1".into()), ("B".into(), "two words".into())]
            }
        );
        assert_eq!(
            i[2],
            &Instr::Env {
                vars: vec![("OLD".into(), "value with spaces".into())]
            }
        );
        assert_eq!(
            i[3],
            &Instr::Run {
                shell: Some("echo a && echo b".into()),
                argv: vec![]
            }
        );
        assert_eq!(r.steps[3].line, 5);
        assert_eq!(
            i[4],
            &Instr::Run {
                shell: None,
                argv: vec!["/bin/echo".into(), "x".into()]
            }
        );
        assert_eq!(
            i[5],
            &Instr::Copy {
                src: vec!["a".into(), "b c".into()],
                dest: "/dst/".into()
            }
        );
        assert_eq!(i.len(), 9);
        assert_eq!(r.ignored.len(), 1);
    }

    #[test]
    fn dockerfile_outside_the_subset_is_refused_with_its_line() {
        for (text, line, what) in [
            ("FROM a\nADD x /y\n", 2, "ADD is not supported"),
            ("FROM a\nARG X\n", 2, "ARG is not supported"),
            ("FROM a\nFROM b\n", 2, "multi-stage"),
            (
                "FROM a\nCOPY --from=b x /y\n",
                2,
                "--from=b is not supported",
            ),
            (
                "FROM a\nCOPY --chown=1:1 x /y\n",
                2,
                "--chown=1:1 is not supported",
            ),
            ("FROM a\nRUN --mount=type=cache x\n", 2, "RUN --mount"),
            ("RUN x\n", 1, "first instruction must be FROM"),
            ("", 1, "no FROM"),
            ("FROM a\nCOPY x\n", 2, "at least one source"),
            ("FROM a\nENV 1A=b\n", 2, "not a valid variable name"),
            (
                "FROM a\nRUN echo 'x\nCOPY \"a /b\n",
                3,
                "unterminated quote",
            ),
        ] {
            let e = df(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.to_string().contains(what), "{text:?}: {e}");
        }
        let many = format!("FROM a\n{}", "RUN true\n".repeat(MAX_STEPS));
        assert!(df(&many).unwrap_err().message.contains("more than"));
    }

    #[test]
    fn toml_recipe_parses() {
        let r = parse(
            "aibox.toml",
            r#"
from = "busybox:1"
name = "tools:1"
user = "1001"
cmd = ["sh"]
[network]
allow = ["pypi.org"]
[[step]]
run = "echo hi"
[[step]]
copy = "a b /dst/"
[[step]]
env = { A = "1", N = 2 }
[[step]]
workdir = "/app"
"#,
        )
        .unwrap();
        assert_eq!(r.name.as_deref(), Some("tools:1"));
        assert_eq!(r.network, Mode::Allowlist);
        assert_eq!(r.rules.len(), 1);
        assert_eq!(r.steps.len(), 7);
        assert_eq!(
            r.steps[2].instr,
            Instr::Copy {
                src: vec!["a".into(), "b".into()],
                dest: "/dst/".into()
            }
        );
        assert_eq!(
            r.steps[5].instr,
            Instr::User {
                user: "1001".into()
            }
        );
        for (text, what) in [
            ("name = \"x\"", "from"),
            ("from = \"a\"\nbogus = 1", "unknown key"),
            (
                "from = \"a\"\n[[step]]\nrun = \"x\"\ncopy = \"a b\"",
                "exactly one",
            ),
            ("from = \"a\"\n[[step]]\nfly = \"x\"", "unknown step"),
            (
                "from = \"a\"\n[network]\nallow = [\"not a rule at all\"]",
                "invalid egress rule",
            ),
            ("from = \"a\"\n[network]\nmode = \"wide\"", "mode must be"),
            ("from = ", "1"),
        ] {
            let e = parse("aibox.toml", text).unwrap_err();
            assert!(e.to_string().contains(what), "{text:?}: {e}");
        }
    }
}
