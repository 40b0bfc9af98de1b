//! The `guide` tool: cyfr's own documentation, compiled in, and a registered component's
//! README.md.

use super::component::RefArgs;
use super::decl::{actions, NoArgs};
use crate::access::Need;
use crate::args::{fields, req_str, required};
use crate::context::Context;
use crate::db::Db;
use crate::dispatch::Dispatch;
use crate::env::Env;
use crate::errors::{Code, Error, Result};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Value as Json};

pub(super) const DESCRIPTION: &str = "cyfr's guides (integration-guide: the HTTP contract for apps; component-guide: writing components) and a component's README.";

actions! {
    /// The `guide` tool's actions.
    tool "guide": Action, Calls {
        List = "list", NoArgs, Need::Authenticated, false;
        Get = "get", GetArgs, Need::Authenticated, false;
        Readme = "readme", RefArgs, Need::Scopes(&["component.info"]), false;
    }
}

fields!(Name = "name");

/// The guides: (name, title, description, markdown).
const GUIDES: [(&str, &str, &str, &str); 2] = [
    (
        "integration-guide",
        "Integrating with cyfr",
        "The HTTP contract: /mcp, keys and scopes, tools, errors, the CLI",
        include_str!("../../../docs/integration-guide.md"),
    ),
    (
        "component-guide",
        "Writing components for cyfr",
        "Reagents, catalysts and formulas: layout, manifest, ABI, config, policy",
        include_str!("../../../docs/components.md"),
    ),
];

/// `guide.get`.
#[derive(Deserialize, JsonSchema)]
pub(crate) struct GetArgs {
    /// get: integration-guide or component-guide
    #[serde(default, deserialize_with = "req_str::<Name, _>")]
    name: Option<String>,
}

pub(super) async fn handle<D: Db, X: Dispatch, E: Env>(
    cx: &Context<D, X, E>,
    args: Calls,
) -> Result<Json> {
    match args {
        Calls::List(NoArgs {}) => {
            let list: Vec<Json> = GUIDES
                .iter()
                .map(|(name, title, description, _)| {
                    json!({ "name": name, "title": title, "description": description })
                })
                .collect();
            Ok(json!({ "guides": list, "count": list.len() }))
        }
        Calls::Get(a) => {
            let name = required::<Name>(&a.name)?;
            // `components` as the file is named, beside CYFR's `component-guide`.
            let wanted = if name == "components" {
                "component-guide"
            } else {
                name
            };
            let (name, _, _, content) = GUIDES.iter().find(|g| g.0 == wanted).ok_or_else(|| {
                Error::invalid_params(format!(
                    "unknown guide `{}`; guides: integration-guide, component-guide",
                    name.escape_debug()
                ))
            })?;
            Ok(json!({ "name": name, "format": "markdown", "content": content }))
        }
        Calls::Readme(a) => {
            let c = crate::component_config::read(&cx.db, &a.reference()?).await?;
            let content = c.readme.ok_or_else(|| {
                Error::new(
                    Code::ComponentNotFound,
                    format!(
                        "{} was registered without a README.md; add one to its directory and register it again",
                        c.component.reference
                    ),
                )
                .with_data(json!({ "reference": c.component.reference }))
            })?;
            Ok(json!({
                "reference": c.component.reference,
                "component_ref": c.component.reference,
                "format": "markdown",
                "content": content,
            }))
        }
    }
}
