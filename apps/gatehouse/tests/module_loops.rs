//! No two modules of a crate use each other.
//!
//! A loop (module `a` uses `b` and `b` uses `a`, directly or through
//! others) means neither can be read, tested or moved without the other.
//! This test reads every crate's sources, collects the `crate::...` and
//! `super::...` paths each module names (in `use` lines and inline, tests
//! included; comments are not), follows re-exports (`pub use`) to the
//! module that defines the item, and fails naming every loop it finds.
//!
//! Method calls between `impl` blocks of one type spread over several
//! modules are not paths, so they are not seen here; the crates keep those
//! one-way too (see each module's docs).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Loops known to exist, `(crate, module, module)`, each being removed by
/// work in progress. A listed loop that no longer exists is reported so
/// the entry can go.
const KNOWN: &[(&str, &str, &str)] = &[];

type Module = Vec<String>;

#[test]
fn no_crate_has_a_module_import_loop() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut found = Vec::new();
    let mut crates = 0;
    for dir in ["crates", "apps"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for entry in entries.flatten() {
            let src = entry.path().join("src");
            if !src.is_dir() {
                continue;
            }
            crates += 1;
            let name = entry.file_name().to_string_lossy().into_owned();
            for cycle in loops(&src) {
                found.push((name.clone(), cycle));
            }
        }
    }
    assert!(crates >= 10, "found only {crates} crates under {root:?}");
    let known = |krate: &str, cycle: &[String]| {
        KNOWN.iter().any(|(k, a, b)| {
            *k == krate
                && cycle.len() == 2
                && cycle.contains(&a.to_string())
                && cycle.contains(&b.to_string())
        })
    };
    for (k, a, b) in KNOWN {
        if !found.iter().any(|(krate, c)| krate == k && known(k, c)) {
            eprintln!("note: the known loop {k}: {a} <-> {b} is gone; remove it from KNOWN");
        }
    }
    let new: Vec<String> = found
        .iter()
        .filter(|(krate, c)| !known(krate, c))
        .map(|(krate, c)| format!("{krate}: {}", c.join(" -> ")))
        .collect();
    assert!(
        new.is_empty(),
        "module import loops (each line: modules that use each other, directly or around a ring):\n{}",
        new.join("\n")
    );
}

/// Every loop among `src`'s modules: the modules of each strongly
/// connected component of the "uses" graph.
fn loops(src: &Path) -> Vec<Vec<String>> {
    let files = modules(src);
    let texts: BTreeMap<Module, String> = files
        .iter()
        .map(|(m, p)| {
            (
                m.clone(),
                strip_comments(&std::fs::read_to_string(p).unwrap()),
            )
        })
        .collect();
    let reexports = reexports(&texts);
    let mut edges: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (module, text) in &texts {
        let out = edges.entry(module.clone()).or_default();
        for path in paths(text) {
            let target = resolve(module, &path, &texts, &reexports);
            if target != *module {
                out.insert(target);
            }
        }
    }
    components(&edges)
        .into_iter()
        .map(|c| c.into_iter().map(|m| display(&m)).collect())
        .collect()
}

/// Modules by path (`["service", "state"]`), from the file layout.
fn modules(src: &Path) -> BTreeMap<Module, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src).unwrap().with_extension("");
            let mut module: Module = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if module.first().is_some_and(|m| m == "bin") {
                continue;
            }
            if matches!(
                module.last().map(String::as_str),
                Some("lib" | "main" | "mod")
            ) {
                module.pop();
            }
            out.insert(module, path);
        }
    }
    out
}

/// The text without comments (line comments, block comments).
fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("/*") {
            rest = after.find("*/").map_or("", |i| &after[i + 2..]);
        } else if rest.starts_with("//") {
            rest = rest.find('\n').map_or("", |i| &rest[i..]);
        } else if let Some(len) = raw_string(rest, out.chars().last()) {
            out.push_str(" \"\" ");
            rest = &rest[len..];
        } else if let Some(len) = char_literal(rest) {
            // `'{'` and `'"'` must not open a block or a string.
            out.push_str("' '");
            rest = &rest[len..];
        } else if rest.starts_with('"') {
            // Skip string literals so `"http://..."` is not a comment.
            let bytes = rest.as_bytes();
            let mut i = 1;
            while i < bytes.len() && bytes[i] != b'"' {
                i += if bytes[i] == b'\\' { 2 } else { 1 };
            }
            out.push_str(" \"\" ");
            rest = rest.get(i + 1..).unwrap_or("");
        } else {
            let c = rest.chars().next().unwrap();
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// The length of the character literal (`'x'`, `'\n'`, `'\u{7b}'`) at the
/// start of `s`, if there is one (a lifetime `'a` is not).
fn char_literal(s: &str) -> Option<usize> {
    let body = s.strip_prefix('\'')?;
    let len = if body.starts_with('\\') {
        body.get(2..)?.find('\'')? + 2
    } else {
        body.chars().next()?.len_utf8()
    };
    body[len..].starts_with('\'').then_some(len + 2)
}

/// The length of the raw string literal (`r"..."`, `r#"..."#`, `br#...`)
/// at the start of `s`, if there is one (`before` is the character before
/// it, so `for#` is not mistaken for one).
fn raw_string(s: &str, before: Option<char>) -> Option<usize> {
    if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
        return None;
    }
    let body = s.strip_prefix("br").or_else(|| s.strip_prefix('r'))?;
    let hashes = body.bytes().take_while(|b| *b == b'#').count();
    if !body[hashes..].starts_with('"') {
        return None;
    }
    let close = format!("\"{}", "#".repeat(hashes));
    let start = s.len() - body.len() + hashes + 1;
    let end = s[start..]
        .find(&close)
        .map_or(s.len(), |i| start + i + close.len());
    Some(end)
}

/// Every path starting with `crate::` or `super::`, with `{a, b::c}`
/// groups expanded (one level). Inside an inline module (`mod tests {`),
/// the `super`s that only leave it are dropped: such a path stays in the
/// file's module (`self::...`).
fn paths(text: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    // Brace depths at which inline modules opened.
    let mut inline: Vec<usize> = Vec::new();
    let mut depth: usize = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'{' => depth += 1,
            b'}' => {
                depth = depth.saturating_sub(1);
                if inline.last() == Some(&depth) {
                    inline.pop();
                }
            }
            _ => {}
        }
        let at_word = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        let rest = &text[i..];
        if at_word && rest.starts_with("mod ") {
            let (name, len) = segments(rest[4..].trim_start());
            let after = rest[4..].trim_start()[len..].trim_start();
            if name.len() == 1 && after.starts_with('{') {
                inline.push(depth);
            }
        }
        if !(at_word && (rest.starts_with("crate::") || rest.starts_with("super::"))) {
            i += 1;
            continue;
        }
        let (head, len) = segments(rest);
        let mut found = Vec::new();
        let after = &rest[len..];
        if let Some(group) = after.strip_prefix("::{") {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let (tail, _) = segments(item.trim());
                found.push(head.iter().chain(&tail).cloned().collect::<Vec<_>>());
            }
        } else {
            found.push(head);
        }
        for path in found {
            let supers = path.iter().take_while(|s| *s == "super").count();
            let inner = supers.min(inline.len());
            if inner > 0 {
                let mut local = vec!["self".to_string()];
                local.extend(path[inner..].iter().cloned());
                out.push(local);
            } else {
                out.push(path);
            }
        }
        i += len.max(1);
    }
    out
}

/// The `a::b::c` segments at the start of `s`, and their length in bytes.
fn segments(s: &str) -> (Vec<String>, usize) {
    let mut segs = Vec::new();
    let mut pos = 0;
    loop {
        let ident: usize = s[pos..]
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
            .count();
        if ident == 0 {
            break;
        }
        segs.push(s[pos..pos + ident].to_string());
        pos += ident;
        if s[pos..].starts_with("::")
            && s[pos + 2..].starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        {
            pos += 2;
        } else {
            break;
        }
    }
    (segs, pos)
}

/// Names re-exported by each module (`pub use x::Y;`), mapped to the
/// module that defines them.
fn reexports(texts: &BTreeMap<Module, String>) -> BTreeMap<(Module, String), Module> {
    let mut out = BTreeMap::new();
    for (module, text) in texts {
        for line in text.lines().map(str::trim) {
            let Some(rest) = line.strip_prefix("pub") else {
                continue;
            };
            let rest = rest.trim_start();
            let rest = match rest.strip_prefix('(') {
                Some(r) => r.split_once(')').map_or("", |(_, r)| r.trim_start()),
                None => rest,
            };
            let Some(path) = rest.strip_prefix("use ") else {
                continue;
            };
            let path = path.trim_end_matches(';');
            let (head, names) = match path.split_once("::{") {
                Some((h, n)) => (h, n.trim_end_matches('}').split(',').collect::<Vec<_>>()),
                None => match path.rsplit_once("::") {
                    Some((h, n)) => (h, vec![n]),
                    None => continue,
                },
            };
            let head: Vec<String> = head.split("::").map(str::to_string).collect();
            let from = base(module, &head, texts);
            for name in names {
                let name = name.trim().rsplit("::").next().unwrap_or("").trim();
                let name = name.split(" as ").last().unwrap_or(name).trim();
                if !name.is_empty() && name != "self" {
                    out.insert((module.clone(), name.to_string()), from.clone());
                }
            }
        }
    }
    out
}

/// The deepest module `path` names, starting from `module`.
fn base(module: &Module, path: &[String], texts: &BTreeMap<Module, String>) -> Module {
    let mut at: Module = match path.first().map(String::as_str) {
        Some("crate") => Vec::new(),
        _ => module.clone(),
    };
    let mut rest = path;
    if rest.first().is_some_and(|s| s == "crate" || s == "self") {
        rest = &rest[1..];
    }
    while rest.first().is_some_and(|s| s == "super") {
        at.pop();
        rest = &rest[1..];
    }
    for seg in rest {
        let mut next = at.clone();
        next.push(seg.clone());
        if texts.contains_key(&next) {
            at = next;
        } else {
            break;
        }
    }
    at
}

/// The module an item path leads to, following re-exports.
fn resolve(
    module: &Module,
    path: &[String],
    texts: &BTreeMap<Module, String>,
    reexports: &BTreeMap<(Module, String), Module>,
) -> Module {
    let at = base(module, path, texts);
    for seg in path {
        if let Some(origin) = reexports.get(&(at.clone(), seg.clone())) {
            return origin.clone();
        }
    }
    at
}

/// Strongly connected components with more than one module (Tarjan).
fn components(edges: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    struct State<'a> {
        edges: &'a BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<&'a Module, usize>,
        low: BTreeMap<&'a Module, usize>,
        stack: Vec<&'a Module>,
        on_stack: BTreeSet<&'a Module>,
        out: Vec<Vec<Module>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a Module) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in &s.edges[v] {
            let Some((w, _)) = s.edges.get_key_value(w) else {
                continue;
            };
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                comp.push(w.clone());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.reverse();
                s.out.push(comp);
            }
        }
    }
    let mut s = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    s.out
}

fn display(m: &Module) -> String {
    if m.is_empty() {
        "crate".into()
    } else {
        m.join("::")
    }
}

#[test]
fn a_planted_loop_is_found() {
    let dir = std::env::temp_dir().join(format!("gatehouse-loops-{}", std::process::id()));
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("b")).unwrap();
    std::fs::write(src.join("lib.rs"), "mod a;\nmod b;\npub use a::A;\n").unwrap();
    std::fs::write(
        src.join("a.rs"),
        "use crate::b::{c::C, B};\npub struct A;\n",
    )
    .unwrap();
    std::fs::write(
        src.join("b/mod.rs"),
        "pub mod c;\npub struct B;\n#[cfg(test)]\nmod tests {\n    use super::*;\n    use super::super::a::A;\n}\n",
    )
    .unwrap();
    // `c` reaches `a` through the crate root's re-export; a comment and a
    // string naming `crate::a` do not count.
    std::fs::write(
        src.join("b/c.rs"),
        "// crate::a::A\nconst S: &str = \"crate::a\";\nconst R: &str = r#\"\"crate::a\"#;\nfn f() -> crate::A { crate::A }\npub struct C;\n",
    )
    .unwrap();
    let found = loops(&src);
    std::fs::remove_dir_all(&dir).unwrap();
    // `b`'s tests use `a`, and `a` uses `b`: a loop too.
    assert_eq!(
        found,
        vec![vec!["a".to_string(), "b".to_string(), "b::c".to_string()]]
    );
}
