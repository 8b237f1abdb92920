//! Label values ([`Lv`]) and the label sets of the registry's families.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use std::borrow::Borrow;
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// A label value: a static string from the code, or a shared one (cluster and backend
/// names) that clones without allocating. Equality and hashing look at the text only.
/// Encoded with Prometheus escaping of `\`, `"` and newlines.
#[derive(Clone, Debug)]
pub enum Lv {
    Static(&'static str),
    Shared(Arc<str>),
}

impl Lv {
    pub fn as_str(&self) -> &str {
        match self {
            Lv::Static(s) => s,
            Lv::Shared(s) => s,
        }
    }
}

impl From<&str> for Lv {
    fn from(s: &str) -> Lv {
        Lv::Shared(Arc::from(s))
    }
}

impl PartialEq for Lv {
    fn eq(&self, other: &Lv) -> bool {
        self.as_str() == other.as_str()
    }
}
impl Eq for Lv {}
impl Hash for Lv {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.as_str().hash(h)
    }
}
impl Borrow<str> for Lv {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl EncodeLabelValue for Lv {
    fn encode(&self, enc: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        let s = self.as_str();
        if !s.contains(['\\', '"', '\n']) {
            return enc.write_str(s);
        }
        for c in s.chars() {
            match c {
                '\\' => enc.write_str("\\\\")?,
                '"' => enc.write_str("\\\"")?,
                '\n' => enc.write_str("\\n")?,
                c => enc.write_char(c)?,
            }
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct VersionLabels {
    pub(super) version: Lv,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ClusterLabels {
    pub(super) cluster: Lv,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ClusterInfoLabels {
    pub(super) cluster: Lv,
    pub(super) protocol: Lv,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ClusterStateLabels {
    pub(super) cluster: Lv,
    pub(super) state: Lv,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct RouteLabels {
    pub(super) cluster: Lv,
    pub(super) route: Lv,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct RoutedLabels {
    pub(super) cluster: Lv,
    pub(super) route: Lv,
    pub(super) reason: Lv,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ErrorLabels {
    pub(super) cluster: Lv,
    pub(super) kind: Lv,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct BytesLabels {
    pub(super) cluster: Lv,
    pub(super) direction: Lv,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ResultLabels {
    pub(super) result: Lv,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct BackendLabels {
    pub(super) cluster: Lv,
    pub(super) backend: Lv,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct BackendStateLabels {
    pub(super) cluster: Lv,
    pub(super) backend: Lv,
    pub(super) state: Lv,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct BackendRoleLabels {
    pub(super) cluster: Lv,
    pub(super) backend: Lv,
    pub(super) role: Lv,
}
