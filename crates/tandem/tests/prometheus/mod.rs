//! Reading the admin endpoint's Prometheus text in tests.

/// The value of an unlabelled series in `body`; panics, showing the body, if it is missing.
pub fn metric(body: &str, name: &str) -> f64 {
    body.lines()
        .find(|line| line.starts_with(name) && line[name.len()..].starts_with(' '))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("metric {name} missing from:\n{body}"))
}
