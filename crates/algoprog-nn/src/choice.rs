//! Run-time choices whose variants carry their own config (`norm =
//! NormConfig::RmsNorm(RmsNormConfig { eps })`), declared once with
//! [`choice_enum!`](crate::choice_enum).
//!
//! In TOML (and in run records) a choice is either a bare name, meaning that
//! variant with its default config, or a table with a `kind` and the
//! variant's keys; omitted keys take the variant config's `Default`, the one
//! place each default is written:
//! ```toml
//! positional = "rotary"                          # base 10 000
//! positional = { kind = "rotary", base = 500000.0 }
//! norm = { kind = "rms_norm", eps = 1e-6 }
//! ```
//! A config equal to its variant's default is written back as the bare name
//! (so records of default models read as they always have); any other is
//! written as the table, and reads back equal.

use crate::ConfigError;
use serde::de::DeserializeOwned;
use serde::ser::SerializeMap;
use serde::Serialize;
#[doc(hidden)]
pub use serde_json::{Map, Value};

/// The settings of one variant of a run-time choice.
pub trait VariantConfig:
    Clone + std::fmt::Debug + Default + PartialEq + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// The keys its table form takes (besides `kind`).
    const KEYS: &'static [&'static str];
    /// Checks the values; `key` is the dotted path of the choice (`model.norm`).
    fn validate(&self, _key: &str) -> Result<(), ConfigError> {
        Ok(())
    }
}

/// A variant without settings.
impl VariantConfig for () {
    const KEYS: &'static [&'static str] = &[];
}

/// A choice's value split into its name and the rest of its table.
#[doc(hidden)]
pub fn split_choice(
    key: &str,
    value: Value,
    names: &[&str],
) -> Result<(String, Map<String, Value>), String> {
    let field = key.rsplit('.').next().unwrap_or(key);
    match value {
        Value::String(s) => Ok((s, Map::new())),
        Value::Object(mut m) => match m.remove("kind") {
            Some(Value::String(s)) => Ok((s, m)),
            Some(other) => Err(format!(
                "{key}.kind = {other} is not a name: use one of {}",
                names.join(", ")
            )),
            None => Err(format!(
                "{key} is a table without `kind`: add kind = one of {} (e.g. {field} = {{ kind = \"{}\" }})",
                names.join(", "),
                names[0]
            )),
        },
        other => Err(format!(
            "{key} = {other}: give a name ({}) or a table such as {field} = {{ kind = \"{}\" }}",
            names.join(", "),
            names[0]
        )),
    }
}

/// The default config's keys as `k = v` pairs, for error messages.
fn example<C: VariantConfig>() -> String {
    match serde_json::to_value(C::default()) {
        Ok(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| format!("{k} = {v}"))
            .collect::<Vec<_>>()
            .join(", "),
        _ => String::new(),
    }
}

/// The variant config from the rest of a choice's table (empty: the default).
#[doc(hidden)]
pub fn variant_config<C: VariantConfig>(
    key: &str,
    name: &str,
    rest: Map<String, Value>,
) -> Result<C, String> {
    let field = key.rsplit('.').next().unwrap_or(key);
    if let Some(bad) = rest.keys().find(|k| !C::KEYS.contains(&k.as_str())) {
        return Err(if C::KEYS.is_empty() {
            format!(
                "{key}: unknown key `{bad}`: {name} has no settings; write {field} = \"{name}\""
            )
        } else {
            format!(
                "{key}: unknown key `{bad}` for {name}, whose keys are {}; write e.g. {field} = {{ kind = \"{name}\", {} }}",
                C::KEYS.join(", "),
                example::<C>()
            )
        });
    }
    if rest.is_empty() {
        return Ok(C::default());
    }
    serde_json::from_value(Value::Object(rest)).map_err(|e| format!("{key} ({name}): {e}"))
}

/// Writes a choice: the bare name for the variant's default config, else a
/// table with `kind` first.
#[doc(hidden)]
pub fn serialize_choice<S: serde::Serializer, C: VariantConfig>(
    s: S,
    name: &str,
    cfg: &C,
) -> Result<S::Ok, S::Error> {
    if *cfg == C::default() {
        return s.serialize_str(name);
    }
    let fields = match serde_json::to_value(cfg).map_err(serde::ser::Error::custom)? {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    let mut map = s.serialize_map(Some(fields.len() + 1))?;
    map.serialize_entry("kind", name)?;
    for (k, v) in &fields {
        map.serialize_entry(k, v)?;
    }
    map.end()
}

/// Declares a run-time choice: an enum whose variants hold their config
/// (each a [`VariantConfig`]), its names (snake_case, with aliases), serde
/// as described in the [module docs](self), `name()`, `validate()` and
/// `from_name()`.
///
/// ```ignore
/// choice_enum! {
///     /// Norm choices.
///     pub enum NormConfig for "model.norm" {
///         LayerNorm(LayerNormConfig) = "layer_norm",
///         RmsNorm(RmsNormConfig) = "rms_norm",
///     }
/// }
/// ```
#[macro_export]
macro_rules! choice_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $Enum:ident for $key:literal {
            $( $(#[$vmeta:meta])* $Var:ident($Cfg:ty) = $name:literal $(| $alias:literal)* ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq)]
        $vis enum $Enum {
            $( $(#[$vmeta])* $Var($Cfg) ),+
        }

        impl $Enum {
            /// The names of the variants, as written in configs.
            pub const NAMES: &'static [&'static str] = &[$($name),+];
            /// The dotted config path of this choice.
            pub const KEY: &'static str = $key;

            /// This variant's name.
            pub fn name(&self) -> &'static str {
                match self {
                    $( Self::$Var(_) => $name ),+
                }
            }

            /// Checks the variant's settings; errors name the key and the fix.
            pub fn validate(&self) -> ::std::result::Result<(), $crate::ConfigError> {
                match self {
                    $( Self::$Var(c) => $crate::choice::VariantConfig::validate(c, $key) ),+
                }
            }

            /// The variant called `name` (or an alias) with its default config.
            pub fn from_name(name: &str) -> Option<Self> {
                match name {
                    $( $name $(| $alias)* => Some(Self::$Var(<$Cfg as Default>::default())), )+
                    _ => None,
                }
            }
        }

        impl serde::Serialize for $Enum {
            fn serialize<S: serde::Serializer>(&self, s: S) -> ::std::result::Result<S::Ok, S::Error> {
                match self {
                    $( Self::$Var(c) => $crate::choice::serialize_choice(s, $name, c) ),+
                }
            }
        }

        impl<'de> serde::Deserialize<'de> for $Enum {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> ::std::result::Result<Self, D::Error> {
                use serde::de::Error;
                let v = <$crate::choice::Value as serde::Deserialize>::deserialize(d)?;
                let (name, rest) = $crate::choice::split_choice($key, v, Self::NAMES).map_err(D::Error::custom)?;
                match name.as_str() {
                    $( $name $(| $alias)* => $crate::choice::variant_config::<$Cfg>($key, $name, rest)
                        .map(Self::$Var)
                        .map_err(D::Error::custom), )+
                    other => Err(D::Error::custom(format!(
                        "{} = \"{other}\" is not a known choice: use one of {}",
                        $key,
                        Self::NAMES.join(", ")
                    ))),
                }
            }
        }
    };
}
