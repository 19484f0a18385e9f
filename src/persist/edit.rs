//! Edits of an existing `nfkit.toml` for `--persist` (pure). The user's
//! comments, order and formatting are kept (toml_edit); the result is
//! validated as a whole before it is written.

use toml_edit::{Array, DocumentMut, Item, Table, value};

use super::desired::{Desired, DesiredError};
use super::values::{ModuleName, OptionName, OptionValue};

/// Header of an nfkit.toml nfkit creates.
pub const NEW_FILE_HEADER: &str = "# nfkit desired state (see `nfkit apply`, `nfkit verify`).\n";

/// A change to the desired state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// `[conntrack] max = N`.
    ConntrackMax(u32),
    /// `[conntrack] buckets = N`.
    ConntrackBuckets(u32),
    /// `[conntrack] never_lower = true` (`conntrack set --never-lower --persist`).
    ConntrackNeverLower,
    /// Add a module to `[modules] load` (if absent) with options.
    LoadModule {
        module: ModuleName,
        options: Vec<(OptionName, OptionValue)>,
    },
    /// Remove a module (any spelling) from `[modules] load` and its
    /// `[modules.options.*]` table.
    DropModule(ModuleName),
}

fn table<'a>(doc: &'a mut DocumentMut, name: &str) -> &'a mut Table {
    if !doc.contains_table(name) {
        doc.insert(name, Item::Table(Table::new()));
    }
    doc[name].as_table_mut().expect("just ensured a table")
}

/// Applies `edits` to `text` (empty for a new file) and validates the result.
pub fn apply_edits(path: &str, text: &str, edits: &[Edit]) -> Result<String, DesiredError> {
    let syntax = |message: String| DesiredError::Syntax {
        path: path.to_string(),
        message,
    };
    let new_file = text.trim().is_empty();
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| syntax(e.to_string()))?;
    for edit in edits {
        match edit {
            Edit::ConntrackMax(n) => {
                table(&mut doc, "conntrack")["max"] = value(i64::from(*n));
            }
            Edit::ConntrackBuckets(n) => {
                table(&mut doc, "conntrack")["buckets"] = value(i64::from(*n));
            }
            Edit::ConntrackNeverLower => {
                table(&mut doc, "conntrack")["never_lower"] = value(true);
            }
            Edit::LoadModule { module, options } => {
                let modules = table(&mut doc, "modules");
                if !modules.contains_key("load") {
                    modules["load"] = value(Array::new());
                }
                let load = modules["load"]
                    .as_array_mut()
                    .ok_or_else(|| syntax("modules.load is not an array".into()))?;
                if !load
                    .iter()
                    .any(|v| v.as_str().is_some_and(|s| module.is(s)))
                {
                    load.push(module.as_str());
                }
                if !options.is_empty() {
                    if !modules.contains_key("options") {
                        let mut t = Table::new();
                        t.set_implicit(true);
                        modules["options"] = Item::Table(t);
                    }
                    let all = modules["options"]
                        .as_table_mut()
                        .ok_or_else(|| syntax("modules.options is not a table".into()))?;
                    if !all.contains_key(module.as_str()) {
                        all[module.as_str()] = Item::Table(Table::new());
                    }
                    let own = all[module.as_str()].as_table_mut().ok_or_else(|| {
                        syntax(format!("modules.options.{module} is not a table"))
                    })?;
                    for (k, v) in options {
                        own[k.as_str()] = match v.as_integer() {
                            Some(n) => value(n),
                            None => value(v.as_str()),
                        };
                    }
                }
            }
            Edit::DropModule(module) => {
                let Some(modules) = doc.get_mut("modules").and_then(Item::as_table_mut) else {
                    continue;
                };
                if let Some(load) = modules.get_mut("load").and_then(Item::as_array_mut) {
                    load.retain(|v| !v.as_str().is_some_and(|s| module.is(s)));
                }
                if let Some(all) = modules.get_mut("options").and_then(Item::as_table_mut) {
                    let names: Vec<String> = all
                        .iter()
                        .map(|(k, _)| k.to_string())
                        .filter(|k| module.is(k))
                        .collect();
                    for k in names {
                        all.remove(&k);
                    }
                }
            }
        }
    }
    let mut out = doc.to_string();
    if new_file {
        out = format!("{NEW_FILE_HEADER}{}", out.trim_start());
    }
    Desired::parse(path, &out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_module_removes_every_spelling_and_its_options() {
        let text = "[modules]\nload = [\"xt_state\", \"nf-nat\", \"nf_nat\"] # keep\n\n[modules.options.nf-nat]\nx = 1\n";
        let out = apply_edits(
            "f",
            text,
            &[Edit::DropModule(ModuleName::canonical("nf_nat"))],
        )
        .unwrap();
        let d = Desired::parse("f", &out).unwrap();
        assert_eq!(d.modules.load, vec![ModuleName::canonical("xt_state")]);
        assert!(d.modules.options.is_empty(), "{out}");
        assert!(out.contains("# keep"), "{out}");
        // Absent already: the text is kept as it was.
        assert_eq!(
            apply_edits(
                "f",
                &out,
                &[Edit::DropModule(ModuleName::canonical("nf_nat"))]
            )
            .unwrap(),
            out
        );
    }

    #[test]
    fn edits_keep_comments_and_validate() {
        let text = "# my hosts\n[modules]\nload = [\"xt_state\"] # keep\n\n[conntrack]\n# tuned by ops\nmax = 1000\n";
        let out = apply_edits(
            "f",
            text,
            &[
                Edit::ConntrackMax(5000),
                Edit::LoadModule {
                    module: ModuleName::parse_plain("nf_nat").unwrap(),
                    options: vec![],
                },
            ],
        )
        .unwrap();
        assert!(
            out.contains("# my hosts") && out.contains("# tuned by ops") && out.contains("# keep"),
            "{out}"
        );
        let d = Desired::parse("f", &out).unwrap();
        assert_eq!(d.conntrack.max, Some(5000));
        assert_eq!(d.modules.load, ["xt_state", "nf_nat"]);
        // Adding an existing module again changes nothing.
        let again = apply_edits(
            "f",
            &out,
            &[Edit::LoadModule {
                module: ModuleName::parse_plain("nf_nat").unwrap(),
                options: vec![],
            }],
        )
        .unwrap();
        assert_eq!(again, out);
    }

    #[test]
    fn new_file_with_options() {
        let out = apply_edits(
            "f",
            "",
            &[
                Edit::LoadModule {
                    module: ModuleName::parse_plain("nf_conntrack").unwrap(),
                    options: vec![("expect_hashsize".parse().unwrap(), "2048".parse().unwrap())],
                },
                Edit::ConntrackBuckets(4096),
                Edit::ConntrackNeverLower,
            ],
        )
        .unwrap();
        assert!(out.starts_with(NEW_FILE_HEADER));
        let d = Desired::parse("f", &out).unwrap();
        assert_eq!(d.conntrack.buckets, Some(4096));
        assert!(d.conntrack.never_lower);
        let words: Vec<String> = d.module_options()[0]
            .1
            .iter()
            .map(|(k, v)| v.word(k))
            .collect();
        assert_eq!(words, ["expect_hashsize=2048", "hashsize=4096"]);
    }

    #[test]
    fn invalid_results_are_refused() {
        let err = apply_edits(
            "f",
            "[conntrack]\nmax = \"x\"\n",
            &[Edit::ConntrackBuckets(1024)],
        )
        .unwrap_err();
        assert!(err.to_string().contains("f:"), "{err}");
        assert!(apply_edits("f", "[[broken", &[]).is_err());
    }
}
