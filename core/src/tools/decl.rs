//! How a tool declares its actions: [`actions!`] turns one line per action (its name, its
//! argument type, what it needs of the caller) into the tool's action enum, the enum of its
//! parsed calls, its rows of the scope table and its `tools/list` schema. The handler is an
//! exhaustive `match` over the calls, so an action without a handler does not compile.
//! Argument fields are read with [`crate::args`].

use crate::access::Need;
use serde::Deserialize;
use serde_json::Value as Json;

/// A tool's actions, as [`actions!`] declares them.
pub(crate) trait ActionSet: Copy + Sized + 'static {
    /// The tool's name.
    const TOOL: &'static str;
    /// Every action, in declaration order.
    const ALL: &'static [Self];
    /// `(tool, action, need)` of every action, in declaration order.
    const TABLE: &'static [(&'static str, &'static str, Need)];
    /// The action's name.
    fn name(self) -> &'static str;
    /// The argument properties of the action's schema (`properties` of its JSON Schema).
    fn properties(self) -> serde_json::Map<String, Json>;
    /// Whether the action handles secrets, and so needs a secure transport before its
    /// arguments are even read.
    fn secure(self) -> bool;
    /// The action of this name.
    fn parse(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|a| a.name() == name)
    }
}

/// Declares a tool's actions. Each line: `Variant = "name", ArgsType, need, secure;`.
macro_rules! actions {
    (
        $(#[$meta:meta])*
        tool $tool:literal: $Action:ident, $Call:ident {
            $($Var:ident = $name:literal, $Args:ty, $need:expr, $secure:expr;)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub(crate) enum $Action {
            $(#[doc = concat!("`", $tool, ".", $name, "`")] $Var,)+
        }

        /// One parsed call: the action with its typed arguments.
        pub(crate) enum $Call {
            $(#[doc = concat!("`", $tool, ".", $name, "`")] $Var($Args),)+
        }

        impl $crate::tools::decl::ActionSet for $Action {
            const TOOL: &'static str = $tool;
            const ALL: &'static [Self] = &[$($Action::$Var,)+];
            const TABLE: &'static [(&'static str, &'static str, $crate::access::Need)] =
                &[$(($tool, $name, $need),)+];
            fn name(self) -> &'static str {
                match self { $($Action::$Var => $name,)+ }
            }
            fn properties(self) -> serde_json::Map<String, serde_json::Value> {
                match self { $($Action::$Var => $crate::tools::decl::properties::<$Args>(),)+ }
            }
            fn secure(self) -> bool {
                match self { $($Action::$Var => $secure,)+ }
            }
        }

        impl $Action {
            /// Reads the action's arguments into its type.
            pub(crate) fn call(self, args: &serde_json::Value) -> $crate::errors::Result<$Call> {
                Ok(match self {
                    $($Action::$Var => $Call::$Var($crate::args::parse::<$Args>(args)?),)+
                })
            }
        }
    };
}
pub(crate) use actions;

/// The `properties` of `T`'s JSON Schema.
pub(crate) fn properties<T: schemars::JsonSchema>() -> serde_json::Map<String, Json> {
    let schema = schemars::SchemaGenerator::new(schemars::generate::SchemaSettings::draft07())
        .into_root_schema_for::<T>();
    let mut props = match schema.as_value().get("properties") {
        Some(Json::Object(p)) => p.clone(),
        _ => Default::default(),
    };
    // Every argument is optional and null counts as missing: `"type": "string"`, as a
    // client reads it, rather than schemars' `["string", "null"]` for an `Option`.
    for p in props.values_mut() {
        let Some(p) = p.as_object_mut() else { continue };
        p.remove("format");
        p.remove("default");
        if let Some(Json::Array(types)) = p.get("type") {
            let types: Vec<Json> = types.iter().filter(|t| *t != "null").cloned().collect();
            let single = (types.len() == 1).then(|| types[0].clone());
            p.insert("type".into(), single.unwrap_or(Json::Array(types)));
        }
    }
    props
}

/// Arguments of an action that reads none.
#[derive(Deserialize, schemars::JsonSchema)]
pub(crate) struct NoArgs {}
