//! Property tests of the config loader: whatever a user's YAML file holds — known keys with any
//! type, unknown keys, broken syntax, bytes that are not text — reading it as the guide's
//! `qdrant2csv.yaml` ([`SourceFile`]) or `csv2adbpg.yaml` ([`TargetFile`]) never panics. It
//! loads, with every unknown key reported, or fails with an error naming the file and, for a
//! wrong type, the key.
//!
//! Cases follow proptest's default (256, or `PROPTEST_CASES`).

use std::collections::BTreeSet;
use std::path::Path;

use proptest::prelude::*;
use serde_yaml::{Mapping, Value as Yaml};

use super::postgres::TargetFile;
use super::qdrant::SourceFile;
use super::{ConfigError, parse_yaml, read_yaml};

/// What a key holds in the guide's files.
#[derive(Clone, Copy, Debug)]
enum Type {
    Text,
    Port,
    Count,
    Flag,
    Texts,
}

/// The guide's sections and their keys.
const SOURCE: &[(&str, &[(&str, Type)])] = &[
    (
        "qdrant",
        &[
            ("host", Type::Text),
            ("port", Type::Port),
            ("grpc_port", Type::Port),
            ("api_key", Type::Text),
            ("url", Type::Text),
            ("location", Type::Text),
            ("https", Type::Flag),
        ],
    ),
    (
        "export",
        &[
            ("collections", Type::Texts),
            ("max_line_in_file", Type::Count),
            ("output_path", Type::Text),
        ],
    ),
];

const TARGET: &[(&str, &[(&str, Type)])] = &[(
    "database",
    &[
        ("host", Type::Text),
        ("port", Type::Port),
        ("name", Type::Text),
        ("user", Type::Text),
        ("password", Type::Text),
        ("schema", Type::Text),
    ],
)];

/// Keys, values and fragments that YAML or the loader treat specially.
fn hazard_text() -> impl Strategy<Value = String> + Clone {
    let piece = prop::sample::select(vec![
        "",
        " ",
        ":",
        ": ",
        "-",
        "- ",
        "#",
        "'",
        "\"",
        "\\",
        "\n",
        "\n  ",
        "\t",
        "[",
        "]",
        "{",
        "}",
        ",",
        "&a",
        "*a",
        "!!str",
        "!!int",
        "<<",
        "~",
        "null",
        "yes",
        "0x1F",
        "1e3",
        "-1",
        "65536",
        "99999999999999999999",
        ".inf",
        "ü",
        "\u{2028}",
        "\0",
        "\u{feff}",
        "---",
        "...",
        "%YAML 1.2",
        "|",
        ">",
        "?",
        "@",
        "`",
        "port",
        "qdrant",
        "database",
    ]);
    prop::collection::vec(
        prop_oneof![piece.prop_map(str::to_owned), any::<String>()],
        0..12,
    )
    .prop_map(|parts| parts.concat())
}

fn scalar() -> impl Strategy<Value = Yaml> {
    prop_oneof![
        Just(Yaml::Null),
        any::<bool>().prop_map(Yaml::Bool),
        any::<i64>().prop_map(|n| Yaml::Number(n.into())),
        any::<u64>().prop_map(|n| Yaml::Number(n.into())),
        (0u64..70_000).prop_map(|n| Yaml::Number(n.into())),
        any::<f64>().prop_map(|f| Yaml::Number(f.into())),
        hazard_text().prop_map(Yaml::String),
    ]
}

fn any_value() -> impl Strategy<Value = Yaml> {
    scalar().prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Yaml::Sequence),
            prop::collection::vec((hazard_text(), inner), 0..4).prop_map(|entries| {
                Yaml::Mapping(
                    entries
                        .into_iter()
                        .map(|(k, v)| (Yaml::String(k), v))
                        .collect(),
                )
            }),
        ]
    })
}

/// A value of exactly the key's type, so the file must load.
fn fitting(ty: Type) -> BoxedStrategy<Yaml> {
    match ty {
        Type::Text => hazard_text().prop_map(Yaml::String).boxed(),
        Type::Port => any::<u16>().prop_map(|n| Yaml::Number(n.into())).boxed(),
        Type::Count => any::<u64>().prop_map(|n| Yaml::Number(n.into())).boxed(),
        Type::Flag => any::<bool>().prop_map(Yaml::Bool).boxed(),
        Type::Texts => prop::collection::vec(hazard_text().prop_map(Yaml::String), 0..4)
            .prop_map(Yaml::Sequence)
            .boxed(),
    }
}

/// A document in the shape of one of the guide's files: some known keys (each holding a value
/// of its type, or anything at all), some unknown keys. Returns the document, whether every
/// known key got a value of its type, and the dotted paths of the unknown keys.
fn document(
    schema: &'static [(&'static str, &'static [(&'static str, Type)])],
) -> impl Strategy<Value = (Yaml, bool, BTreeSet<String>)> {
    let known: BTreeSet<&str> = schema
        .iter()
        .flat_map(|(section, keys)| std::iter::once(*section).chain(keys.iter().map(|k| k.0)))
        .collect();
    let unknown_key = hazard_text().prop_filter("a key the file does not know", move |k| {
        !known.contains(k.as_str())
    });
    let sections = schema
        .iter()
        .map(|&(section, keys)| {
            let fields = keys
                .iter()
                .map(|&(key, ty)| {
                    let value = prop_oneof![2 => fitting(ty).prop_map(|v| (v, true)),
                                            1 => any_value().prop_map(|v| (v, false))];
                    prop::option::of(value).prop_map(move |v| v.map(|(v, fits)| (key, v, fits)))
                })
                .collect::<Vec<_>>();
            let extra = prop::collection::vec((unknown_key.clone(), any_value()), 0..2);
            prop::option::of((fields, extra)).prop_map(move |s| s.map(|s| (section, s)))
        })
        .collect::<Vec<_>>();
    let top_extra = prop::collection::vec((unknown_key, any_value()), 0..2);
    (sections, top_extra).prop_map(|(sections, top_extra)| {
        let mut root = Mapping::new();
        let mut all_fit = true;
        let mut unknown = BTreeSet::new();
        for (section, (fields, extra)) in sections.into_iter().flatten() {
            let mut map = Mapping::new();
            for (key, value, fits) in fields.into_iter().flatten() {
                all_fit &= fits;
                map.insert(Yaml::String(key.to_owned()), value);
            }
            for (key, value) in extra {
                unknown.insert(format!("{section}.{key}"));
                map.insert(Yaml::String(key), value);
            }
            root.insert(Yaml::String(section.to_owned()), Yaml::Mapping(map));
        }
        for (key, value) in top_extra {
            unknown.insert(key.clone());
            root.insert(Yaml::String(key), value);
        }
        (Yaml::Mapping(root), all_fit, unknown)
    })
}

/// Loads `text` as `T`: never a panic; an error names the file.
fn load<T: serde::de::DeserializeOwned>(text: &str) -> Result<BTreeSet<String>, String> {
    let path = Path::new("/etc/q2p/the-config.yaml");
    match parse_yaml::<T>(path, text) {
        Ok((_, unknown)) => Ok(unknown.into_iter().collect()),
        Err(err) => {
            let message = err.to_string();
            assert!(message.contains("the-config.yaml"), "{message}");
            Err(message)
        }
    }
}

fn check_document<T: serde::de::DeserializeOwned>(
    (doc, all_fit, unknown): (Yaml, bool, BTreeSet<String>),
    schema: &[(&str, &[(&str, Type)])],
) -> Result<(), TestCaseError> {
    let text = serde_yaml::to_string(&doc).expect("a mapping serialises");
    match load::<T>(&text) {
        Ok(reported) => prop_assert_eq!(reported, unknown, "{}", text),
        Err(message) => {
            prop_assert!(
                !all_fit,
                "a file of the right types was refused: {}\n{}",
                message,
                text
            );
            // The fault is a known key's value: serde_yaml names it by its dotted path.
            let named = schema.iter().any(|(section, keys)| {
                keys.iter()
                    .any(|(key, _)| message.contains(&format!("{section}.{key}")))
            });
            prop_assert!(named, "the error names no key: {}\n{}", message, text);
        }
    }
    Ok(())
}

proptest! {
    /// The guide's `qdrant2csv.yaml` shape with random keys and types.
    #[test]
    fn source_files_load_or_name_the_key(doc in document(SOURCE)) {
        check_document::<SourceFile>(doc, SOURCE)?;
    }

    /// The guide's `csv2adbpg.yaml` shape with random keys and types.
    #[test]
    fn target_files_load_or_name_the_key(doc in document(TARGET)) {
        check_document::<TargetFile>(doc, TARGET)?;
    }

    /// Any text at all, YAML-ish or not: either file shape loads or names the file.
    #[test]
    fn any_text_loads_or_names_the_file(text in hazard_text()) {
        let _ = load::<SourceFile>(&text);
        let _ = load::<TargetFile>(&text);
    }

    /// Bytes that need not be UTF-8, read from disk as a user's file would be.
    #[test]
    fn any_bytes_load_or_name_the_file(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("bytes.yaml");
        std::fs::write(&path, &bytes).expect("write");
        for result in [
            read_yaml::<SourceFile>(&path).map(|_| ()),
            read_yaml::<TargetFile>(&path).map(|_| ()),
        ] {
            match result {
                Ok(()) => prop_assert!(std::str::from_utf8(&bytes).is_ok()),
                Err(err @ (ConfigError::Read { .. } | ConfigError::Invalid { .. })) => {
                    prop_assert!(err.to_string().contains("bytes.yaml"), "{}", err);
                }
                Err(err) => prop_assert!(false, "unexpected error kind: {}", err),
            }
        }
    }
}
