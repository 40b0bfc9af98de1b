//! How tool arguments are read into their types: field deserializers that keep the
//! messages callers (and models) already read ("`name` is required and must be a string",
//! …), named by marker types ([`fields!`]) since a deserializer does not know its field.

use crate::errors::{Error, Result};
use serde::de::{DeserializeOwned, Deserializer, Error as _};
use serde::Deserialize;
use serde_json::Value as Json;

/// `args` read into `T`; a field of the wrong kind is -32602 with that field's message.
pub(crate) fn parse<T: DeserializeOwned>(args: &Json) -> Result<T> {
    T::deserialize(args).map_err(|e| Error::invalid_params(e.to_string()))
}

/// A field's name, for its messages.
pub(crate) trait Field {
    /// The name as callers write it.
    const NAME: &'static str;
}

/// Declares marker types for field names.
macro_rules! fields {
    ($($T:ident = $n:literal),+ $(,)?) => {
        $(
            #[doc = concat!("The `", $n, "` argument.")]
            pub(crate) struct $T;
            impl $crate::args::Field for $T {
                const NAME: &'static str = $n;
            }
        )+
    };
}
pub(crate) use fields;

/// A required string: `None` when missing, null or empty (the handler says it is required,
/// see [`required`]); anything but a string is refused with the same message.
pub(crate) fn req_str<'de, F: Field, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<String>, D::Error> {
    match Json::deserialize(d)? {
        Json::Null => Ok(None),
        Json::String(s) if s.is_empty() => Ok(None),
        Json::String(s) => Ok(Some(s)),
        _ => Err(D::Error::custom(required_message(F::NAME))),
    }
}

/// The value of a required string read with [`req_str`].
pub(crate) fn required<F: Field>(v: &Option<String>) -> Result<&str> {
    v.as_deref()
        .ok_or_else(|| Error::invalid_params(required_message(F::NAME)))
}

fn required_message(name: &str) -> String {
    format!("`{name}` is required and must be a string")
}

/// An optional string: null is missing; anything but a string is refused.
pub(crate) fn opt_str<'de, F: Field, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<String>, D::Error> {
    match Json::deserialize(d)? {
        Json::Null => Ok(None),
        Json::String(s) => Ok(Some(s)),
        _ => Err(D::Error::custom(format!("`{}` must be a string", F::NAME))),
    }
}

/// A list given as an array of strings or one comma-separated string (trimmed, empty
/// entries of the string form dropped).
pub(crate) fn list<'de, F: Field, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Vec<String>, D::Error> {
    match Json::deserialize(d)? {
        Json::Null => Ok(Vec::new()),
        Json::String(s) => Ok(s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()),
        Json::Array(a) if a.iter().all(Json::is_string) => Ok(a
            .iter()
            .filter_map(Json::as_str)
            .map(|s| s.trim().to_string())
            .collect()),
        _ => Err(D::Error::custom(format!(
            "`{}` must be an array of strings or a comma-separated string",
            F::NAME
        ))),
    }
}

/// A flag where anything but a boolean counts as not given.
pub(crate) fn loose_bool<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<bool>, D::Error> {
    Ok(Json::deserialize(d)?.as_bool())
}

/// A count where anything but a non-negative integer counts as not given.
pub(crate) fn loose_u64<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<u64>, D::Error> {
    Ok(Json::deserialize(d)?.as_u64())
}

/// A string where anything but a string counts as not given.
pub(crate) fn loose_str<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<String>, D::Error> {
    Ok(Json::deserialize(d)?.as_str().map(String::from))
}

/// Any JSON value, kept as given (null included: only a missing field is `None`).
pub(crate) fn raw<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<Json>, D::Error> {
    Json::deserialize(d).map(Some)
}
