//! SQL identifiers: quoted exactly when PostgreSQL's own `quote_ident()` would quote them.
//!
//! Collection names are user data (`My-Docs`, `select`, `ünï code`), and the guide pastes them
//! into SQL as they are. Quoting everything would be safe but would make a plain `docs` table
//! `"docs"` in every statement we write, and the guide's import.py — which pastes the name bare
//! into `COPY {table_name} …` — could no longer load a mixed-case export we wrote. So we follow
//! `quote_identifier()` in PostgreSQL's `ruleutils.c`: a name stays bare only if it is lowercase
//! ASCII letters, digits and `_`, starts with a letter or `_`, and is not a keyword that the
//! grammar reserves in any way; everything else is double-quoted with `"` doubled.

use std::borrow::Cow;

/// Keywords that cannot be used bare as a column or table name: every keyword of PostgreSQL 18's
/// `kwlist.h` whose category is not `UNRESERVED_KEYWORD` (reserved, column-name and
/// type-function-name keywords), sorted for binary search. A superset of older releases' and
/// Greenplum's lists as far as our names go: quoting a name that did not need it is harmless.
const RESERVED: &[&str] = &[
    "all",
    "analyse",
    "analyze",
    "and",
    "any",
    "array",
    "as",
    "asc",
    "asymmetric",
    "authorization",
    "between",
    "bigint",
    "binary",
    "bit",
    "boolean",
    "both",
    "case",
    "cast",
    "char",
    "character",
    "check",
    "coalesce",
    "collate",
    "collation",
    "column",
    "concurrently",
    "constraint",
    "create",
    "cross",
    "current_catalog",
    "current_date",
    "current_role",
    "current_schema",
    "current_time",
    "current_timestamp",
    "current_user",
    "dec",
    "decimal",
    "default",
    "deferrable",
    "desc",
    "distinct",
    "do",
    "else",
    "end",
    "except",
    "exists",
    "extract",
    "false",
    "fetch",
    "float",
    "for",
    "foreign",
    "freeze",
    "from",
    "full",
    "grant",
    "greatest",
    "group",
    "grouping",
    "having",
    "ilike",
    "in",
    "initially",
    "inner",
    "inout",
    "int",
    "integer",
    "intersect",
    "interval",
    "into",
    "is",
    "isnull",
    "join",
    "json",
    "json_array",
    "json_arrayagg",
    "json_exists",
    "json_object",
    "json_objectagg",
    "json_query",
    "json_scalar",
    "json_serialize",
    "json_table",
    "json_value",
    "lateral",
    "leading",
    "least",
    "left",
    "like",
    "limit",
    "localtime",
    "localtimestamp",
    "merge_action",
    "national",
    "natural",
    "nchar",
    "none",
    "normalize",
    "not",
    "notnull",
    "null",
    "nullif",
    "numeric",
    "offset",
    "on",
    "only",
    "or",
    "order",
    "out",
    "outer",
    "overlaps",
    "overlay",
    "placing",
    "position",
    "precision",
    "primary",
    "real",
    "references",
    "returning",
    "right",
    "row",
    "select",
    "session_user",
    "setof",
    "similar",
    "smallint",
    "some",
    "substring",
    "symmetric",
    "system_user",
    "table",
    "tablesample",
    "then",
    "time",
    "timestamp",
    "to",
    "trailing",
    "treat",
    "trim",
    "true",
    "union",
    "unique",
    "user",
    "using",
    "values",
    "varchar",
    "variadic",
    "verbose",
    "when",
    "where",
    "window",
    "with",
    "xmlattributes",
    "xmlconcat",
    "xmlelement",
    "xmlexists",
    "xmlforest",
    "xmlnamespaces",
    "xmlparse",
    "xmlpi",
    "xmlroot",
    "xmlserialize",
    "xmltable",
];

/// `name` as it must appear in SQL: bare when PostgreSQL would leave it bare, else quoted.
pub fn quote_ident(name: &str) -> Cow<'_, str> {
    let mut bytes = name.bytes();
    let plain = bytes
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && RESERVED.binary_search(&name).is_err();
    if plain {
        Cow::Borrowed(name)
    } else {
        Cow::Owned(format!("\"{}\"", name.replace('"', "\"\"")))
    }
}

/// `schema.name` with both parts quoted as needed; just `name` without a schema.
pub fn qualified(schema: Option<&str>, name: &str) -> String {
    match schema {
        Some(schema) => format!("{}.{}", quote_ident(schema), quote_ident(name)),
        None => quote_ident(name).into_owned(),
    }
}

/// `value` as a SQL string literal (`'…'` with `'` doubled), as PostgreSQL's own
/// `quote_literal()` writes it: a value holding a backslash becomes an `E'…'` literal with the
/// backslashes doubled. A plain `'…'` would read a backslash as an escape on a server with
/// `standard_conforming_strings = off`, letting a payload key such as `\'` end the literal
/// early; an `E'…'` literal reads the same under either setting.
pub fn quote_literal(value: &str) -> String {
    let quoted = value.replace('\'', "''");
    if value.contains('\\') {
        format!("E'{}'", quoted.replace('\\', "\\\\"))
    } else {
        format!("'{quoted}'")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyword_list_is_sorted_for_binary_search() {
        assert!(RESERVED.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn quotes_only_what_postgres_quotes() {
        for bare in [
            "docs",
            "test_collection",
            "_x",
            "a1",
            "vector",
            "payload",
            "id",
            "name",
        ] {
            assert_eq!(quote_ident(bare), bare);
        }
        let cases = [
            ("My-Docs", "\"My-Docs\""),
            ("select", "\"select\""),
            ("user", "\"user\""),
            ("ünï code", "\"ünï code\""),
            ("Docs", "\"Docs\""),
            ("1abc", "\"1abc\""),
            ("", "\"\""),
            ("a\"b", "\"a\"\"b\""),
        ];
        for (name, quoted) in cases {
            assert_eq!(quote_ident(name), quoted, "{name}");
        }
    }

    #[test]
    fn qualifies_and_quotes_literals() {
        assert_eq!(qualified(Some("public"), "docs"), "public.docs");
        assert_eq!(
            qualified(Some("My Schema"), "select"),
            "\"My Schema\".\"select\""
        );
        assert_eq!(qualified(None, "docs"), "docs");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal(r"a\'); --"), r"E'a\\''); --'");
        assert_eq!(quote_literal(r"\"), r"E'\\'");
    }
}
