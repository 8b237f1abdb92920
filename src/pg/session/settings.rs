//! Bringing a backend connection's settings in line with a client's startup parameters.

/// SQL that moves a connection from `have` settings to `want` (both sorted by name).
pub(crate) fn settings_sql(have: &[(String, String)], want: &[(String, String)]) -> String {
    let mut sql = String::new();
    for (k, v) in want {
        if !have.iter().any(|(hk, hv)| hk == k && hv == v) {
            // set_config() parses the value as a startup option would (lists included).
            sql.push_str(&format!(
                "SELECT pg_catalog.set_config('{}', '{}', false);",
                k.replace('\'', "''"),
                v.replace('\'', "''")
            ));
        }
    }
    for (k, _) in have {
        if !want.iter().any(|(wk, _)| wk == k) {
            sql.push_str(&format!("RESET {};", quote_ident(k)));
        }
    }
    sql
}

fn quote_ident(name: &str) -> String {
    // Names may contain dots (extension.setting): quote each part.
    name.split('.')
        .map(|p| format!("\"{}\"", p.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_sql_sets_changes_and_resets_leftovers() {
        let have = vec![
            ("application_name".to_string(), "a".to_string()),
            ("search_path".into(), "x".into()),
        ];
        let want = vec![("application_name".to_string(), "b'c".to_string())];
        assert_eq!(
            settings_sql(&have, &want),
            "SELECT pg_catalog.set_config('application_name', 'b''c', false);RESET \"search_path\";"
        );
        assert_eq!(settings_sql(&want, &want), "");
    }
}
