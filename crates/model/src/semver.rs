//! `major.minor.patch` versions, bumped on every update.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::ModelError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SemVer {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl SemVer {
    pub const INITIAL: SemVer = SemVer {
        major: 0,
        minor: 0,
        patch: 1,
    };

    pub fn up_patch(self) -> Self {
        Self {
            patch: self.patch.saturating_add(1),
            ..self
        }
    }
}

impl Default for SemVer {
    fn default() -> Self {
        Self::INITIAL
    }
}

impl FromStr for SemVer {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ModelError::Invalid(format!("bad semantic version: {s}"));
        let parts: Vec<&str> = s.split('.').collect();
        if parts.is_empty() || parts.len() > 3 {
            return Err(bad());
        }
        let num = |i: usize| -> Result<u32, ModelError> {
            parts.get(i).map_or(Ok(0), |p| p.parse().map_err(|_| bad()))
        };
        let v = SemVer {
            major: num(0)?,
            minor: num(1)?,
            patch: num(2)?,
        };
        if v == (SemVer {
            major: 0,
            minor: 0,
            patch: 0,
        }) {
            return Err(bad());
        }
        Ok(v)
    }
}

impl fmt::Display for SemVer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl Serialize for SemVer {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SemVer {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_bumps() {
        let v: SemVer = "1.2.3".parse().unwrap();
        assert_eq!(v.up_patch().to_string(), "1.2.4");
        assert_eq!("2".parse::<SemVer>().unwrap().to_string(), "2.0.0");
        assert!("0.0.0".parse::<SemVer>().is_err());
        assert!("a.b".parse::<SemVer>().is_err());
    }
}
