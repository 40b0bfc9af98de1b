//! `{{secret:NAME}}` injection and `cyfr:secrets/read`: the granted secrets of one execution,
//! substituted into a request only after [`super::decide`] allowed it.

use std::collections::BTreeMap;

use zeroize::Zeroizing;

use super::abi::{Body, PartContent};
use super::redact::Redactor;
use super::{Denied, ErrorKind};

/// What opens a secret reference in a header value or a text body.
pub(crate) const SECRET_OPEN: &str = "{{secret:";

/// The secrets granted to one execution of `reference`, by name.
pub(crate) struct Secrets {
    reference: String,
    values: BTreeMap<String, Zeroizing<String>>,
}

impl Secrets {
    /// The granted `values` of a run of `reference`.
    pub(crate) fn new(reference: &str, values: &BTreeMap<String, String>) -> Secrets {
        Secrets {
            reference: reference.to_string(),
            values: values
                .iter()
                .map(|(k, v)| (k.clone(), Zeroizing::new(v.clone())))
                .collect(),
        }
    }

    /// The reference of the run (for messages and logs).
    pub(crate) fn reference(&self) -> &str {
        &self.reference
    }

    /// Every granted value (what the redactor looks for).
    pub(crate) fn values(&self) -> impl Iterator<Item = &str> {
        self.values.values().map(|v| v.as_str())
    }

    /// `cyfr:secrets/read.get`.
    pub(crate) fn get(&self, name: &str) -> Result<String, String> {
        match self.values.get(name) {
            Some(v) => Ok(v.to_string()),
            None => Err(self.not_granted(name)),
        }
    }

    fn not_granted(&self, name: &str) -> String {
        format!("access-denied: {name} not granted to {}", self.reference)
    }

    /// Replaces `{{secret:NAME}}` with granted values. Called only for a request that passed
    /// the policy. `budget` is what the result may still add to the request (of `limit`, named
    /// by `what`): many references to a long secret are refused before they fill memory.
    pub(crate) fn substitute(
        &self,
        text: &str,
        budget: &mut u64,
        limit: u64,
        what: &str,
    ) -> Result<String, Denied> {
        let mut out = String::with_capacity(text.len().min(*budget as usize));
        let mut rest = text;
        let over = |size: usize| {
            Denied::new(
                ErrorKind::RequestTooLarge,
                format!("{what} over the {limit}-byte limit ({size} bytes so far)"),
            )
        };
        while let Some(start) = rest.find(SECRET_OPEN) {
            if (out.len() + start) as u64 > *budget {
                return Err(over(out.len() + start));
            }
            out.push_str(&rest[..start]);
            let after = &rest[start + SECRET_OPEN.len()..];
            let Some(end) = after.find("}}") else {
                rest = &rest[start..];
                break;
            };
            let name = after[..end].trim();
            match self.values.get(name) {
                Some(v) if (out.len() + v.len()) as u64 > *budget => {
                    return Err(over(out.len() + v.len()))
                }
                Some(v) => out.push_str(v),
                None => return Err(Denied::new(ErrorKind::HttpError, self.not_granted(name))),
            }
            rest = &after[end + 2..];
        }
        if (out.len() + rest.len()) as u64 > *budget {
            return Err(over(out.len() + rest.len()));
        }
        out.push_str(rest);
        *budget -= out.len() as u64;
        Ok(out)
    }
}

/// Whether `body` injects a secret or holds one the guest read (`secrets/read`): such a body
/// is never resent to another origin.
pub(crate) fn carries_secret(body: &Body, redactor: &Redactor) -> bool {
    let text = |t: &str| t.contains(SECRET_OPEN) || redactor.contains(t.as_bytes());
    match body {
        Body::Empty => false,
        Body::Text(t) => text(t),
        Body::Binary(b) => redactor.contains(b),
        Body::Multipart(parts) => parts.iter().any(|p| match &p.content {
            PartContent::Value(v) => text(v),
            PartContent::Data(d) => redactor.contains(d),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitution_is_bounded_and_refuses_names_not_granted() {
        let granted = BTreeMap::from([("KEY".to_string(), "sk-0123456789".to_string())]);
        let s = Secrets::new("catalyst:local.x:1.0.0", &granted);
        let mut budget = 100;
        let out = s
            .substitute(
                "Bearer {{secret: KEY }} {{secret:",
                &mut budget,
                100,
                "it is",
            )
            .unwrap();
        assert_eq!(out, "Bearer sk-0123456789 {{secret:");
        assert_eq!(budget, 100 - out.len() as u64);
        let e = s
            .substitute("{{secret:OTHER}}", &mut 100, 100, "it is")
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::HttpError);
        assert_eq!(
            e.message,
            "access-denied: OTHER not granted to catalyst:local.x:1.0.0"
        );
        let e = s
            .substitute("{{secret:KEY}}{{secret:KEY}}", &mut 20, 20, "it is")
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::RequestTooLarge);
    }
}
