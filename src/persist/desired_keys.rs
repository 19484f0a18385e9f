//! nfkit.toml(5) documents every key the parser accepts: the keys are read
//! from the parser's own types (the fields serde asks for, through a
//! deserializer that records them), not from a list, so a new field of
//! `Desired` or a new `Target` fails this test until the page has it.

use std::cell::RefCell;
use std::rc::Rc;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, Visitor};

use super::desired::{Desired, Target};

/// What the types asked for: table paths, key paths, enum variant names.
#[derive(Default, Debug)]
struct Seen {
    tables: Vec<String>,
    keys: Vec<String>,
    variants: Vec<String>,
}

/// A deserializer that answers every struct with all its fields (recording
/// them under `path`), every option with `Some`, every sequence and map
/// with nothing, every number with 0, every string with "".
struct Recorder {
    path: String,
    seen: Rc<RefCell<Seen>>,
}

#[derive(Debug)]
struct Stop(String);

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for Stop {}
impl de::Error for Stop {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        Stop(msg.to_string())
    }
}

impl<'de> de::Deserializer<'de> for Recorder {
    type Error = Stop;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Stop> {
        v.visit_u64(0)
    }
    fn deserialize_bool<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Stop> {
        v.visit_bool(false)
    }
    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Stop> {
        v.visit_str("")
    }
    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Stop> {
        v.visit_str("")
    }
    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Stop> {
        v.visit_some(self)
    }
    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Stop> {
        v.visit_seq(de::value::SeqDeserializer::<_, Stop>::new(
            std::iter::empty::<u8>(),
        ))
    }
    fn deserialize_map<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Stop> {
        v.visit_map(de::value::MapDeserializer::<_, Stop>::new(
            std::iter::empty::<(u8, u8)>(),
        ))
    }
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Stop> {
        let prefix = if self.path.is_empty() {
            String::new()
        } else {
            self.seen.borrow_mut().tables.push(self.path.clone());
            format!("{}.", self.path)
        };
        v.visit_map(Fields {
            prefix,
            fields: fields.iter(),
            current: None,
            seen: self.seen,
        })
    }
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        _v: V,
    ) -> Result<V::Value, Stop> {
        let mut seen = self.seen.borrow_mut();
        seen.variants.extend(variants.iter().map(|s| s.to_string()));
        Err(Stop("variants recorded".into()))
    }

    serde::forward_to_deserialize_any! {
        i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char bytes byte_buf
        unit unit_struct newtype_struct tuple tuple_struct identifier ignored_any
    }
}

/// A struct's fields as a map: each key, then a recorder for its value.
struct Fields {
    prefix: String,
    fields: std::slice::Iter<'static, &'static str>,
    current: Option<String>,
    seen: Rc<RefCell<Seen>>,
}

impl<'de> MapAccess<'de> for Fields {
    type Error = Stop;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Stop> {
        let Some(field) = self.fields.next() else {
            return Ok(None);
        };
        let path = format!("{}{field}", self.prefix);
        self.seen.borrow_mut().keys.push(path.clone());
        self.current = Some(path);
        seed.deserialize(field.into_deserializer()).map(Some)
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Stop> {
        let path = self.current.take().expect("a key first");
        seed.deserialize(Recorder {
            path,
            seen: Rc::clone(&self.seen),
        })
    }
}

/// Every key path, table and `[persist] targets` name the parser accepts.
fn accepted() -> Seen {
    let seen = Rc::new(RefCell::new(Seen::default()));
    let record = |path: &str| Recorder {
        path: path.to_owned(),
        seen: Rc::clone(&seen),
    };
    Desired::deserialize(record("")).expect("the recorder satisfies Desired");
    assert!(Target::deserialize(record("persist.targets")).is_err());
    Rc::try_unwrap(seen)
        .expect("recorders dropped")
        .into_inner()
}

/// The page's text with roff's `\-` read as `-`.
fn page() -> String {
    crate::cli::NFKIT_TOML_5.replace("\\-", "-")
}

#[test]
fn the_recorder_sees_the_known_keys() {
    let seen = accepted();
    for key in ["modules.load", "conntrack.max", "sysctl", "persist.targets"] {
        assert!(seen.keys.iter().any(|k| k == key), "{key} in {seen:?}");
    }
    assert!(seen.tables.contains(&"conntrack".to_owned()), "{seen:?}");
    assert!(seen.variants.contains(&"sysctl.d".to_owned()), "{seen:?}");
}

/// The entries `page` lacks for what `seen` accepts.
fn missing(seen: &Seen, page: &str) -> Vec<String> {
    let has_entry = |what: &str| page.lines().any(|l| l == format!(".B {what}"));
    let mut missing = Vec::new();
    for key in &seen.keys {
        // A top-level key names a table (`sysctl` is a table of any keys).
        let entry = if key.contains('.') {
            key.clone()
        } else {
            format!("[{key}]")
        };
        if !has_entry(&entry) {
            missing.push(entry);
        }
    }
    for table in &seen.tables {
        if !has_entry(&format!("[{table}]")) {
            missing.push(format!("[{table}]"));
        }
    }
    for target in &seen.variants {
        if !has_entry(target) {
            missing.push(target.clone());
        }
    }
    missing.sort();
    missing.dedup();
    missing
}

#[test]
fn nfkit_toml_5_documents_every_key_the_parser_accepts() {
    let missing = missing(&accepted(), &page());
    assert!(
        missing.is_empty(),
        "contrib/man/nfkit.toml.5 lacks a `.B NAME` entry for: {missing:?}"
    );
}

#[test]
fn the_check_names_an_undocumented_key_table_or_target() {
    let seen = accepted();
    for (line, entry) in [
        (".B conntrack.buckets\n", "conntrack.buckets"),
        (".B [persist]\n", "[persist]"),
        (".B etc-modules\n", "etc-modules"),
    ] {
        let page = page().replace(line, "");
        assert_eq!(missing(&seen, &page), vec![entry.to_owned()]);
    }
}
