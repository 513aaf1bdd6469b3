//! The workspace's layout rules, checked by `tests/layout.rs`:
//!
//! - no import circle between the modules of a crate, at the first and
//!   second level of the module tree (`a` ⇄ `b`, `a::x` ⇄ `a::y`): a
//!   module's `use` declarations and its `crate::`/`super::` paths in code
//!   point one way;
//! - no source file over [`MAX_LINES`] lines, test files (`tests.rs`,
//!   anything below a `tests` directory) aside.
//!
//! The analysis reads the sources as text. It removes comments and string
//! literals with a small lexer, cuts the trailing `#[cfg(test)] mod …` of a
//! file (tests may use anything), expands `use` trees and resolves each
//! path to the deepest module file that exists. It is not a compiler: an
//! inline `mod name { … }` is taken as part of its file's module, and a
//! path through a `pub use` re-export counts as a dependency of the module
//! that names it. Both are on the strict side.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The largest source file allowed outside tests, in lines.
pub const MAX_LINES: usize = 800;

/// A module path inside a crate, e.g. `["server", "api"]`; empty for the
/// crate root.
pub type ModPath = Vec<String>;

/// One source file of a crate and its module path.
#[derive(Debug, Clone)]
pub struct Source {
    /// The file.
    pub path: PathBuf,
    /// Its module path.
    pub module: ModPath,
    /// Its text.
    pub text: String,
}

/// Reads every `.rs` file below `src`, with its module path (`lib.rs`,
/// `main.rs` and `mod.rs` name their directory's module).
pub fn read_crate(src: &Path) -> std::io::Result<Vec<Source>> {
    let mut files = Vec::new();
    collect(src, &mut files)?;
    files.sort();
    let mut sources = Vec::with_capacity(files.len());
    for path in files {
        let text = std::fs::read_to_string(&path)?;
        let module = module_path(src, &path);
        sources.push(Source { path, module, text });
    }
    Ok(sources)
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, files)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    Ok(())
}

/// The module path of `file` below the crate's `src`.
pub fn module_path(src: &Path, file: &Path) -> ModPath {
    let rel = file.strip_prefix(src).unwrap_or(file).with_extension("");
    let mut parts: ModPath = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts
        .last()
        .is_some_and(|last| matches!(last.as_str(), "lib" | "main" | "mod"))
    {
        parts.pop();
    }
    parts
}

/// Whether a file is test code (a `tests` module file or below a `tests`
/// directory).
pub fn is_test_file(src: &Path, file: &Path) -> bool {
    let rel = file.strip_prefix(src).unwrap_or(file);
    rel.file_name().is_some_and(|n| n == "tests.rs")
        || rel
            .parent()
            .is_some_and(|p| p.components().any(|c| c.as_os_str() == "tests"))
}

/// `text` without comments and with every string and char literal emptied,
/// so neither a doc link nor a URL in a string reads as a path.
pub fn strip_comments_and_strings(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0usize;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth = depth.saturating_sub(1);
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if chars[i] == '\n' {
                        out.push('\n');
                    }
                    i += 1;
                }
            }
        } else if let Some(hashes) = raw_string_start(&chars, i) {
            // r"…", r#"…"#, br"…": skip to the closing quote and hashes.
            i += hashes.0;
            let closing: String = std::iter::once('"')
                .chain(std::iter::repeat_n('#', hashes.1))
                .collect();
            let rest: String = chars[i..].iter().collect();
            let end = rest
                .find(&closing)
                .map_or(rest.len(), |e| e + closing.len());
            out.push_str("\"\"");
            out.extend(rest[..end].chars().filter(|&c| c == '\n'));
            i += rest[..end].chars().count();
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                if chars.get(i) == Some(&'\n') {
                    out.push('\n');
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{..}'), or a lifetime ('a).
            if next == Some('\\') {
                i += 2;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
                out.push_str("' '");
            } else if chars.get(i + 2) == Some(&'\'') {
                i += 3;
                out.push_str("' '");
            } else {
                out.push(c);
                i += 1;
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// At a raw string literal: (length of its opening up to the quote
/// included, number of `#`).
fn raw_string_start(chars: &[char], i: usize) -> Option<(usize, usize)> {
    let prev_ident = i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
    if prev_ident {
        return None;
    }
    let mut j = i;
    if chars.get(j) == Some(&'b') {
        j += 1;
    }
    if chars.get(j) != Some(&'r') {
        return None;
    }
    j += 1;
    let mut hashes = 0;
    while chars.get(j) == Some(&'#') {
        hashes += 1;
        j += 1;
    }
    (chars.get(j) == Some(&'"')).then_some((j + 1 - i, hashes))
}

/// `text` up to its test module: the first `#[cfg(test)]` followed (after
/// other attributes) by a `mod` item.
pub fn without_test_module(text: &str) -> &str {
    let mut from = 0;
    while let Some(at) = text[from..].find("#[cfg(test)]") {
        let start = from + at;
        let after = text[start + "#[cfg(test)]".len()..].trim_start();
        let mut rest = after;
        while rest.starts_with("#[") {
            rest = rest.find(']').map_or("", |e| rest[e + 1..].trim_start());
        }
        if rest.starts_with("mod ") {
            return &text[..start];
        }
        from = start + 1;
    }
    text
}

/// Every path a (comment-free) source names: each expanded `use` tree and
/// each `crate::…`/`super::…`/`self::…` path in code, as segments.
pub fn named_paths(code: &str) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    let mut rest = code;
    while let Some(at) = find_word(rest, "use") {
        let tail = &rest[at + 3..];
        let end = tail.find(';').unwrap_or(tail.len());
        let tree: String = without_renames(&tail[..end])
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        for p in expand_use_tree(&tree) {
            paths.push(p.split("::").map(str::to_string).collect());
        }
        rest = &tail[end..];
    }
    let bytes: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let word_start = i == 0
            || !(bytes[i - 1].is_alphanumeric() || bytes[i - 1] == '_' || bytes[i - 1] == ':');
        if word_start && (bytes[i].is_alphabetic() || bytes[i] == '_') {
            let mut j = i;
            while j < bytes.len()
                && (bytes[j].is_alphanumeric()
                    || bytes[j] == '_'
                    || (bytes[j] == ':' && bytes.get(j + 1) == Some(&':'))
                    || (bytes[j] == ':' && j > 0 && bytes[j - 1] == ':'))
            {
                j += 1;
            }
            let word: String = bytes[i..j].iter().collect();
            let word = word.trim_end_matches(':');
            let first = word.split("::").next().unwrap_or("");
            if matches!(first, "crate" | "super" | "self") && word.contains("::") {
                paths.push(word.split("::").map(str::to_string).collect());
            }
            i = j.max(i + 1);
        } else {
            i += 1;
        }
    }
    paths
}

/// A use tree without its `as` renames (`a::B as C` → `a::B`).
fn without_renames(tree: &str) -> String {
    let words: Vec<&str> = tree.split_whitespace().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < words.len() {
        if words[i] == "as" && i + 1 < words.len() {
            // Keep what follows the renamed identifier (`,` or `}`).
            let rest = words[i + 1].trim_start_matches(|c: char| c.is_alphanumeric() || c == '_');
            out.push_str(rest);
            i += 2;
        } else {
            out.push(' ');
            out.push_str(words[i]);
            i += 1;
        }
    }
    out
}

fn find_word(text: &str, word: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(at) = text[from..].find(word) {
        let start = from + at;
        let before = text[..start].chars().next_back();
        let after = text[start + word.len()..].chars().next();
        let boundary_before = before.is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
        let boundary_after = after.is_some_and(char::is_whitespace);
        if boundary_before && boundary_after {
            return Some(start);
        }
        from = start + word.len();
    }
    None
}

/// Expands a whitespace-free use tree, `a::{b,c::{d,e}}` →
/// `a::b`, `a::c::d`, `a::c::e` (`as` renames and globs dropped).
pub fn expand_use_tree(tree: &str) -> Vec<String> {
    fn parse(s: &[char], i: &mut usize, prefix: &str, out: &mut Vec<String>) {
        let mut cur = String::new();
        while *i < s.len() {
            let c = s[*i];
            match c {
                '{' => {
                    *i += 1;
                    let p = format!("{prefix}{cur}");
                    parse(s, i, &p, out);
                    cur.clear();
                }
                ',' => {
                    push(prefix, &cur, out);
                    cur.clear();
                }
                '}' => {
                    push(prefix, &cur, out);
                    return;
                }
                _ => cur.push(c),
            }
            *i += 1;
        }
        push(prefix, &cur, out);
    }
    fn push(prefix: &str, cur: &str, out: &mut Vec<String>) {
        if cur.is_empty() {
            return;
        }
        let full = format!("{prefix}{cur}");
        let full = full.trim_end_matches("::*").trim_end_matches("::self");
        let full = full.trim_end_matches("::");
        if !full.is_empty() {
            out.push(full.to_string());
        }
    }
    let chars: Vec<char> = tree.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    parse(&chars, &mut i, "", &mut out);
    out
}

/// The module a path named in module `from` points into: `crate::`,
/// `super::` and `self::` resolved, cut to the deepest known module.
/// `None` for paths into other crates.
pub fn resolve(from: &ModPath, path: &[String], modules: &BTreeSet<ModPath>) -> Option<ModPath> {
    let mut segs = path.iter();
    let mut base: ModPath = match path.first().map(String::as_str) {
        Some("crate") => {
            segs.next();
            Vec::new()
        }
        Some("self") => {
            segs.next();
            from.clone()
        }
        Some("super") => from.clone(),
        _ => return None,
    };
    let mut rest: Vec<&String> = segs.collect();
    while rest.first().is_some_and(|s| *s == "super") {
        base.pop();
        rest.remove(0);
    }
    let mut full = base;
    full.extend(rest.into_iter().cloned());
    while !full.is_empty() && !modules.contains(&full) {
        full.pop();
    }
    Some(full)
}

/// The dependencies between the modules of a crate, cut to `depth` levels
/// of the module tree. A module's dependencies on its own ancestors or
/// descendants are left out (a parent declares its children).
pub fn dependencies(
    sources: &[Source],
    src: &Path,
    depth: usize,
) -> BTreeMap<ModPath, BTreeSet<ModPath>> {
    let modules: BTreeSet<ModPath> = sources.iter().map(|s| s.module.clone()).collect();
    let mut edges: BTreeMap<ModPath, BTreeSet<ModPath>> = BTreeMap::new();
    for source in sources {
        if is_test_file(src, &source.path) {
            continue;
        }
        let me: ModPath = source.module.iter().take(depth).cloned().collect();
        let code = strip_comments_and_strings(&source.text);
        let code = without_test_module(&code);
        for path in named_paths(code) {
            let Some(target) = resolve(&source.module, &path, &modules) else {
                continue;
            };
            let target: ModPath = target.into_iter().take(depth).collect();
            if target.starts_with(&me) || me.starts_with(&target) {
                continue;
            }
            edges.entry(me.clone()).or_default().insert(target);
        }
    }
    edges
}

/// The import circles of a dependency graph: its strongly connected
/// components of more than one module, each sorted.
pub fn circles(edges: &BTreeMap<ModPath, BTreeSet<ModPath>>) -> Vec<Vec<ModPath>> {
    // Tarjan's algorithm, iterative enough for module graphs (recursion
    // depth is the number of modules, a few dozen).
    struct State<'a> {
        edges: &'a BTreeMap<ModPath, BTreeSet<ModPath>>,
        index: BTreeMap<ModPath, usize>,
        low: BTreeMap<ModPath, usize>,
        stack: Vec<ModPath>,
        on_stack: BTreeSet<ModPath>,
        next: usize,
        found: Vec<Vec<ModPath>>,
    }
    fn visit(s: &mut State<'_>, v: &ModPath) {
        s.index.insert(v.clone(), s.next);
        s.low.insert(v.clone(), s.next);
        s.next += 1;
        s.stack.push(v.clone());
        s.on_stack.insert(v.clone());
        let targets: Vec<ModPath> = s
            .edges
            .get(v)
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default();
        for w in targets {
            if !s.index.contains_key(&w) {
                visit(s, &w);
                let lw = s.low[&w];
                let lv = s.low[v];
                s.low.insert(v.clone(), lv.min(lw));
            } else if s.on_stack.contains(&w) {
                let iw = s.index[&w];
                let lv = s.low[v];
                s.low.insert(v.clone(), lv.min(iw));
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(&w);
                let done = &w == v;
                component.push(w);
                if done {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.found.push(component);
            }
        }
    }
    let mut s = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        found: Vec::new(),
    };
    for v in edges.keys() {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    s.found.sort();
    s.found
}

/// `a::b` for display; `crate` for the root.
pub fn display(module: &ModPath) -> String {
    if module.is_empty() {
        "crate".into()
    } else {
        module.join("::")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str) -> ModPath {
        p.split("::")
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn use_trees_expand() {
        assert_eq!(
            expand_use_tree("crate::a::{self,b,c::{d,e},g::*}"),
            [
                "crate::a",
                "crate::a::b",
                "crate::a::c::d",
                "crate::a::c::e",
                "crate::a::g"
            ]
        );
        assert_eq!(
            named_paths("use crate::bases::{Class as K, e as f};")[..2],
            [m("crate::bases::Class"), m("crate::bases::e")]
        );
    }

    #[test]
    fn comments_and_strings_name_no_path() {
        let code = strip_comments_and_strings(
            "// crate::a\n/// [`crate::b`]\nlet s = \"crate::c\"; let r = r#\"crate::d\"#; let x: &'static str = crate::e::X; let c = '\"';",
        );
        let paths = named_paths(&code);
        assert_eq!(paths, vec![m("crate::e::X")]);
    }

    #[test]
    fn the_test_module_is_cut() {
        let text = "use crate::a;\n#[cfg(test)]\n#[allow(x)]\nmod tests {\n use crate::b;\n}\n";
        assert_eq!(without_test_module(text), "use crate::a;\n");
        let keeps = "#[cfg(test)]\nfn helper() {}\nuse crate::a;\n";
        assert_eq!(without_test_module(keeps), keeps);
    }

    #[test]
    fn a_circle_between_two_modules_is_found_and_a_chain_is_not() {
        let src = Path::new("/x/src");
        let source = |file: &str, text: &str| Source {
            path: src.join(file),
            module: module_path(src, &src.join(file)),
            text: text.into(),
        };
        let chain = [
            source("lib.rs", "mod a; mod b; mod c;"),
            source("a.rs", "use crate::b::X;"),
            source("b.rs", "fn f() { crate::c::g() }"),
            source("c.rs", ""),
        ];
        assert!(circles(&dependencies(&chain, src, 1)).is_empty());
        let circle = [
            source("lib.rs", "mod a; mod b;"),
            source("a/mod.rs", "pub mod x; use super::b::Y;"),
            source("a/x.rs", ""),
            source("b.rs", "use crate::a::x::Z;"),
        ];
        assert_eq!(
            circles(&dependencies(&circle, src, 1)),
            vec![vec![m("a"), m("b")]]
        );
        let nested = [
            source("lib.rs", "mod s;"),
            source("s/mod.rs", "mod p; mod q;"),
            source("s/p.rs", "use super::q::A;"),
            source("s/q.rs", "fn f() { super::p::g() }"),
        ];
        assert!(circles(&dependencies(&nested, src, 1)).is_empty());
        assert_eq!(
            circles(&dependencies(&nested, src, 2)),
            vec![vec![m("s::p"), m("s::q")]]
        );
    }
}
