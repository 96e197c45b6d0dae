//! Reading Worker variables and secrets by name (typed configs build on these).

use worker::Env;

/// A variable's or secret's value, trimmed; `None` when unset or blank.
pub fn text(env: &Env, name: &str) -> Option<String> {
    env.var(name)
        .ok()
        .map(|v| v.to_string())
        .or_else(|| env.secret(name).ok().map(|s| s.to_string()))
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// A numeric variable: `default` when unset, `Err` naming the variable when malformed.
pub fn number<T: std::str::FromStr>(env: &Env, name: &str, default: T) -> Result<T, String> {
    match text(env, name) {
        None => Ok(default),
        Some(value) => value.parse().map_err(|_| format!("{name} is not a number")),
    }
}
