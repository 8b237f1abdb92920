//! Configuration: the TOML model (every field documented with its default), validation with
//! the path of the offending key, and loading. A loaded [`Config`] is immutable; live reload
//! swaps whole snapshots.

mod addr;
mod cluster;
pub mod duration;
mod edge;
mod listeners;
mod model;
mod user;

pub use addr::*;
pub use cluster::*;
pub use edge::*;
pub use listeners::*;
pub use model::*;
pub use user::*;

use std::path::Path;

/// Why a config could not be loaded. The message always names the key (or line) at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Parse(String),
    #[error("{key}: {reason}")]
    Invalid { key: String, reason: String },
}

impl ConfigError {
    pub(crate) fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

impl Config {
    /// Parse and validate a config from TOML text.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Read, parse and validate a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text)
    }
}
