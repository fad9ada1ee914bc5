//! The file-level import graph, read with syn rather than grep: which source
//! file names an item defined in which other file.
//!
//! A node is a source file reached from `src/lib.rs` or `src/main.rs`
//! through non-test `mod` declarations (inline `mod x {}` blocks belong to
//! their file). An edge A → B means A's non-test code names an item that B
//! *defines*: through a private `use`, or a path (`crate::…`, `super::…`,
//! `self::…`, a child module, an imported name) in code, types, patterns,
//! attributes' path strings or macro arguments. `mod` declarations and
//! `pub use` re-exports are not edges: a path through a re-export counts as
//! naming the file that defines the item. Method calls cannot be resolved
//! without type checking and are not seen; everything a file names by path is.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use syn::visit::Visit;

/// An absolute module or item path; its first segment is the crate
/// (`sealgate` for the library, `main` for the binary).
pub type AbsPath = Vec<String>;

/// One module (a file, or an inline module inside a file).
#[derive(Default, Debug)]
struct Module {
    file: String,
    /// Names this module defines itself (functions, types, traits, ...).
    items: BTreeSet<String>,
    /// Child modules, by name.
    children: BTreeSet<String>,
    /// `use` aliases, relative as written: name → path.
    imports: BTreeMap<String, Vec<String>>,
    /// `use path::*` sources, relative as written.
    globs: Vec<Vec<String>>,
    /// The names among `imports` that are re-exported (`pub use`).
    reexported: BTreeSet<String>,
    /// Paths the module's code names (private `use` targets included).
    refs: Vec<Vec<String>>,
}

/// Sources by path (`src/lib.rs`, ...), so tests can feed made-up crates.
pub type Sources = BTreeMap<String, String>;

/// Reads every `.rs` file under `src/` of `root`.
pub fn read_sources(root: &Path) -> Sources {
    read_tree(root, "src")
}

/// Reads every `.rs` file under `root/dir`, keyed `dir/...`.
pub fn read_tree(root: &Path, dir: &str) -> Sources {
    fn walk(root: &Path, dir: &Path, out: &mut Sources) {
        for entry in std::fs::read_dir(dir).expect("source folder is readable") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                walk(root, &path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(root).expect("under the crate");
                let text = std::fs::read_to_string(&path).expect("source readable");
                out.insert(rel.to_string_lossy().replace('\\', "/"), text);
            }
        }
    }
    let mut out = Sources::new();
    walk(root, &root.join(dir), &mut out);
    out
}

fn is_test_cfg(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        if a.path().is_ident("test") {
            return true;
        }
        if !a.path().is_ident("cfg") {
            return false;
        }
        let tokens = a.meta.require_list().map(|l| l.tokens.to_string());
        match tokens {
            Ok(t) => {
                let t = t.replace(' ', "");
                t == "test" || t.starts_with("all(test") || t.starts_with("any(test")
            }
            Err(_) => false,
        }
    })
}

fn path_attr(attrs: &[syn::Attribute]) -> Option<String> {
    attrs.iter().find_map(|a| {
        if !a.path().is_ident("path") {
            return None;
        }
        match &a.meta {
            syn::Meta::NameValue(nv) => match &nv.value {
                syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(s),
                    ..
                }) => Some(s.value()),
                _ => None,
            },
            _ => None,
        }
    })
}

/// Expands a use tree into (alias, path) pairs; a glob has alias `*`.
fn use_pairs(prefix: &[String], tree: &syn::UseTree, out: &mut Vec<(String, Vec<String>)>) {
    match tree {
        syn::UseTree::Path(p) => {
            let mut next = prefix.to_vec();
            next.push(p.ident.to_string());
            use_pairs(&next, &p.tree, out);
        }
        syn::UseTree::Name(n) => {
            let name = n.ident.to_string();
            if name == "self" {
                if let Some(last) = prefix.last() {
                    out.push((last.clone(), prefix.to_vec()));
                }
            } else {
                let mut path = prefix.to_vec();
                path.push(name.clone());
                out.push((name, path));
            }
        }
        syn::UseTree::Rename(r) => {
            let mut path = prefix.to_vec();
            let name = r.ident.to_string();
            if name != "self" {
                path.push(name);
            }
            out.push((r.rename.to_string(), path));
        }
        syn::UseTree::Glob(_) => out.push(("*".to_string(), prefix.to_vec())),
        syn::UseTree::Group(g) => {
            for t in &g.items {
                use_pairs(prefix, t, out);
            }
        }
    }
}

/// Collects the paths one item names, skipping test code and nested modules.
#[derive(Default)]
struct PathCollector {
    paths: Vec<Vec<String>>,
}

impl PathCollector {
    fn scan_tokens(&mut self, tokens: proc_macro2::TokenStream) {
        use proc_macro2::TokenTree;
        let flat: Vec<TokenTree> = tokens.into_iter().collect();
        let mut i = 0;
        while i < flat.len() {
            match &flat[i] {
                TokenTree::Group(g) => {
                    self.scan_tokens(g.stream());
                    i += 1;
                }
                TokenTree::Ident(id) => {
                    let mut path = vec![id.to_string()];
                    let mut j = i + 1;
                    while j + 2 < flat.len() + 1 {
                        let colons = matches!((&flat.get(j), &flat.get(j + 1)),
                            (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b)))
                            if a.as_char() == ':' && b.as_char() == ':');
                        match (colons, flat.get(j + 2)) {
                            (true, Some(TokenTree::Ident(next))) => {
                                path.push(next.to_string());
                                j += 3;
                            }
                            _ => break,
                        }
                    }
                    self.paths.push(path);
                    i = j;
                }
                TokenTree::Literal(lit) => {
                    // `#[serde(with = "crate::x::y")]` and friends.
                    let text = lit.to_string();
                    let inner = text.trim_matches('"');
                    if text.starts_with('"')
                        && (inner.starts_with("crate::")
                            || inner.starts_with("super::")
                            || inner.starts_with("self::"))
                    {
                        self.paths
                            .push(inner.split("::").map(str::to_string).collect());
                    }
                    i += 1;
                }
                TokenTree::Punct(_) => i += 1,
            }
        }
    }
}

impl<'ast> Visit<'ast> for PathCollector {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        if let syn::Item::Mod(_) | syn::Item::Use(_) = item {
            return;
        }
        if item_attrs(item).is_some_and(is_test_cfg) {
            return;
        }
        syn::visit::visit_item(self, item);
    }
    fn visit_impl_item(&mut self, item: &'ast syn::ImplItem) {
        let attrs = match item {
            syn::ImplItem::Fn(f) => &f.attrs,
            syn::ImplItem::Const(c) => &c.attrs,
            syn::ImplItem::Type(t) => &t.attrs,
            _ => return syn::visit::visit_impl_item(self, item),
        };
        if !is_test_cfg(attrs) {
            syn::visit::visit_impl_item(self, item);
        }
    }
    fn visit_path(&mut self, path: &'ast syn::Path) {
        self.paths
            .push(path.segments.iter().map(|s| s.ident.to_string()).collect());
        syn::visit::visit_path(self, path);
    }
    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.scan_tokens(mac.tokens.clone());
    }
    fn visit_attribute(&mut self, attr: &'ast syn::Attribute) {
        if let syn::Meta::List(list) = &attr.meta {
            self.scan_tokens(list.tokens.clone());
        }
    }
}

fn item_attrs(item: &syn::Item) -> Option<&[syn::Attribute]> {
    use syn::Item::*;
    Some(match item {
        Const(i) => &i.attrs,
        Enum(i) => &i.attrs,
        ExternCrate(i) => &i.attrs,
        Fn(i) => &i.attrs,
        ForeignMod(i) => &i.attrs,
        Impl(i) => &i.attrs,
        Macro(i) => &i.attrs,
        Mod(i) => &i.attrs,
        Static(i) => &i.attrs,
        Struct(i) => &i.attrs,
        Trait(i) => &i.attrs,
        TraitAlias(i) => &i.attrs,
        Type(i) => &i.attrs,
        Union(i) => &i.attrs,
        Use(i) => &i.attrs,
        _ => return None,
    })
}

fn item_name(item: &syn::Item) -> Option<String> {
    use syn::Item::*;
    Some(match item {
        Const(i) => i.ident.to_string(),
        Enum(i) => i.ident.to_string(),
        Fn(i) => i.sig.ident.to_string(),
        Macro(i) => i.ident.as_ref()?.to_string(),
        Static(i) => i.ident.to_string(),
        Struct(i) => i.ident.to_string(),
        Trait(i) => i.ident.to_string(),
        TraitAlias(i) => i.ident.to_string(),
        Type(i) => i.ident.to_string(),
        Union(i) => i.ident.to_string(),
        _ => return None,
    })
}

/// The crate's modules, read from its sources.
pub struct Crate {
    modules: BTreeMap<AbsPath, Module>,
    /// Files that failed to parse or that a `mod` names but do not exist.
    pub problems: Vec<String>,
}

impl Crate {
    /// Reads the library (`src/lib.rs`) and, if present, the binary (`src/main.rs`).
    pub fn read(sources: &Sources) -> Crate {
        let mut krate = Crate {
            modules: BTreeMap::new(),
            problems: Vec::new(),
        };
        for (name, root) in [("sealgate", "src/lib.rs"), ("main", "src/main.rs")] {
            if sources.contains_key(root) {
                krate.read_file(sources, root, vec![name.to_string()]);
            }
        }
        krate
    }

    /// Every file that is part of the non-test module tree.
    pub fn files(&self) -> BTreeSet<String> {
        self.modules.values().map(|m| m.file.clone()).collect()
    }

    fn read_file(&mut self, sources: &Sources, file: &str, scope: AbsPath) {
        let Some(text) = sources.get(file) else {
            self.problems
                .push(format!("{file}: named by a `mod` but missing"));
            return;
        };
        // Where this file's `mod x;` children live: beside lib.rs, main.rs
        // and mod.rs; in a folder named after the file otherwise.
        let file_name = file.rsplit('/').next().unwrap_or(file);
        let child_dir = if matches!(file_name, "lib.rs" | "main.rs" | "mod.rs") {
            file.rsplit_once('/').map_or("", |(d, _)| d).to_string()
        } else {
            file.trim_end_matches(".rs").to_string()
        };
        match syn::parse_file(text) {
            Ok(parsed) => self.read_items(sources, file, scope, &child_dir, &parsed.items),
            Err(e) => self.problems.push(format!("{file}: {e}")),
        }
    }

    fn read_items(
        &mut self,
        sources: &Sources,
        file: &str,
        scope: AbsPath,
        child_dir: &str,
        items: &[syn::Item],
    ) {
        let mut module = Module {
            file: file.to_string(),
            ..Module::default()
        };
        let file_dir = file.rsplit_once('/').map_or("", |(d, _)| d);
        for item in items {
            if item_attrs(item).is_some_and(is_test_cfg) {
                continue;
            }
            match item {
                syn::Item::Mod(m) => {
                    let name = m.ident.to_string();
                    module.children.insert(name.clone());
                    let mut child = scope.clone();
                    child.push(name.clone());
                    match &m.content {
                        Some((_, inner)) => {
                            let inner_dir = format!("{child_dir}/{name}");
                            self.read_items(sources, file, child, &inner_dir, inner);
                        }
                        None => {
                            let path = match path_attr(&m.attrs) {
                                Some(p) => format!("{file_dir}/{p}"),
                                None => {
                                    let flat = format!("{child_dir}/{name}.rs");
                                    if sources.contains_key(&flat) {
                                        flat
                                    } else {
                                        format!("{child_dir}/{name}/mod.rs")
                                    }
                                }
                            };
                            self.read_file(sources, &path, child);
                        }
                    }
                }
                syn::Item::Use(u) => {
                    let mut pairs = Vec::new();
                    use_pairs(&[], &u.tree, &mut pairs);
                    let public = !matches!(u.vis, syn::Visibility::Inherited);
                    for (alias, path) in pairs {
                        if alias == "*" {
                            module.globs.push(path.clone());
                        } else {
                            if public {
                                module.reexported.insert(alias.clone());
                            }
                            module.imports.insert(alias, path.clone());
                        }
                        if !public {
                            module.refs.push(path);
                        }
                    }
                }
                other => {
                    if let Some(name) = item_name(other) {
                        module.items.insert(name);
                    }
                    let mut collector = PathCollector::default();
                    collector.visit_item(other);
                    module.refs.extend(collector.paths);
                }
            }
        }
        self.modules.insert(scope, module);
    }

    /// Turns a path as written in module `scope` into an absolute path, or
    /// `None` when it leaves the crate (std, tokio, ...) or names a local.
    fn absolute(&self, scope: &[String], path: &[String], depth: usize) -> Option<AbsPath> {
        if depth > 16 || path.is_empty() {
            return None;
        }
        let module = self.modules.get(scope)?;
        let first = path[0].as_str();
        let rest = &path[1..];
        let mut base: AbsPath = match first {
            "crate" => vec![scope[0].clone()],
            "self" => scope.to_vec(),
            "super" => {
                let mut s = scope.to_vec();
                let mut rest = rest;
                s.pop();
                while rest.first().is_some_and(|r| r == "super") {
                    s.pop();
                    rest = &rest[1..];
                }
                if s.is_empty() {
                    return None;
                }
                s.extend(rest.iter().cloned());
                return Some(s);
            }
            "sealgate" => vec!["sealgate".to_string()],
            _ if module.children.contains(first) || module.items.contains(first) => {
                let mut s = scope.to_vec();
                s.push(first.to_string());
                s
            }
            _ => {
                if let Some(target) = module.imports.get(first) {
                    // The import is written relative to the same scope.
                    self.absolute(scope, target, depth + 1)?
                } else {
                    let glob = module.globs.iter().find_map(|g| {
                        let g = self.absolute(scope, g, depth + 1)?;
                        let m = self.modules.get(&g)?;
                        let has = m.items.contains(first)
                            || m.children.contains(first)
                            || m.imports.contains_key(first);
                        has.then(|| {
                            let mut s = g.clone();
                            s.push(first.to_string());
                            s
                        })
                    });
                    glob?
                }
            }
        };
        base.extend(rest.iter().cloned());
        Some(base)
    }

    /// The file that defines the item an absolute path names, following
    /// re-exports; `None` for a path that names only a module.
    fn defining_file(&self, path: &[String], depth: usize) -> Option<String> {
        if depth > 16 {
            return None;
        }
        let split = (1..=path.len())
            .rev()
            .find(|&n| self.modules.contains_key(&path[..n]))?;
        let module = &self.modules[&path[..split]];
        let item = path.get(split)?;
        if module.items.contains(item) {
            return Some(module.file.clone());
        }
        if let Some(target) = module.imports.get(item) {
            // Re-exported (or privately imported) here: defined elsewhere.
            let abs = self.absolute(&path[..split], target, depth + 1)?;
            return self.defining_file(&abs, depth + 1);
        }
        for glob in &module.globs {
            if let Some(g) = self.absolute(&path[..split], glob, depth + 1) {
                let mut candidate = g;
                candidate.push(item.clone());
                if let Some(f) = self.defining_file(&candidate, depth + 1) {
                    return Some(f);
                }
            }
        }
        // A variant, a field or something macro-made: charge the module.
        Some(module.file.clone())
    }

    /// File → files it names items of.
    pub fn graph(&self) -> BTreeMap<String, BTreeSet<String>> {
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (scope, module) in &self.modules {
            let deps = graph.entry(module.file.clone()).or_default();
            for raw in &module.refs {
                let Some(abs) = self.absolute(scope, raw, 0) else {
                    continue;
                };
                if let Some(target) = self.defining_file(&abs, 0) {
                    if target != module.file {
                        deps.insert(target);
                    }
                }
            }
        }
        graph
    }
}

/// The strongly connected components with more than one file: each is a
/// set of files that import one another in a circle.
pub fn circles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    // Tarjan's algorithm, iterative enough for a crate of this size.
    struct State<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn connect<'a>(s: &mut State<'a>, v: &'a str) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        let graph = s.graph;
        for w in graph.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                connect(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(lw);
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.out.push(component);
            }
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v.as_str()) {
            connect(&mut s, v);
        }
    }
    s.out
}

/// For a circle, the edges inside it, to say in a failure what to cut.
pub fn edges_within(graph: &BTreeMap<String, BTreeSet<String>>, circle: &[String]) -> Vec<String> {
    let set: BTreeSet<&String> = circle.iter().collect();
    let mut out = Vec::new();
    for from in circle {
        for to in graph.get(from).into_iter().flatten() {
            if set.contains(to) {
                out.push(format!("{from} -> {to}"));
            }
        }
    }
    out
}
