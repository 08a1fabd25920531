//! Action limits and their allowed ranges (wire spec §2.2, §12).

use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

/// Limits stored on an action. Timeout in ms, memory and logs in MB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionLimits {
    pub timeout: u64,
    pub memory: u64,
    pub logs: u64,
    pub concurrency: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<u32>,
}

/// Limits as a client sends them: every field optional.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitsPut {
    pub timeout: Option<u64>,
    pub memory: Option<u64>,
    pub logs: Option<u64>,
    pub concurrency: Option<u32>,
    pub instances: Option<u32>,
}

/// An inclusive range with its standard value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub min: u64,
    pub max: u64,
    pub std: u64,
}

/// The deployment's limit ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SystemLimits {
    pub timeout: Range,
    pub memory: Range,
    pub logs: Range,
    pub concurrency: Range,
    /// Longest sequence (atomic actions after inlining).
    pub sequence_max_length: u64,
    /// Bytes allowed for parameters, and separately for annotations, of one entity.
    pub parameter_size: usize,
    /// Bytes allowed for an action's code.
    pub exec_size: usize,
    /// Bytes allowed for an invoke or fire body, and for a result.
    pub payload_size: usize,
}

pub const MB: usize = 1024 * 1024;

impl Default for SystemLimits {
    fn default() -> Self {
        Self {
            timeout: Range {
                min: 100,
                max: 300_000,
                std: 60_000,
            },
            memory: Range {
                min: 128,
                max: 512,
                std: 256,
            },
            logs: Range {
                min: 0,
                max: 10,
                std: 10,
            },
            // Intra-container concurrency is first-class in Brisk.
            concurrency: Range {
                min: 1,
                max: 500,
                std: 1,
            },
            sequence_max_length: 50,
            parameter_size: MB,
            exec_size: 48 * MB,
            payload_size: MB,
        }
    }
}

impl SystemLimits {
    pub fn default_action_limits(&self) -> ActionLimits {
        ActionLimits {
            timeout: self.timeout.std,
            memory: self.memory.std,
            logs: self.logs.std,
            concurrency: self.concurrency.std as u32,
            instances: None,
        }
    }

    /// Applies `put` over `base`, validating each provided field.
    /// `max_instances` is the namespace's concurrent-invocation limit (0 = unlimited).
    pub fn apply(
        &self,
        base: ActionLimits,
        put: &LimitsPut,
        max_instances: u64,
    ) -> Result<ActionLimits> {
        let mut out = base;
        if let Some(t) = put.timeout {
            check(
                t,
                self.timeout,
                |v| format!("duration {v} milliseconds"),
                "milliseconds",
            )?;
            out.timeout = t;
        }
        if let Some(m) = put.memory {
            check(m, self.memory, |v| format!("memory size {v} MB"), "MB")?;
            out.memory = m;
        }
        if let Some(l) = put.logs {
            check(l, self.logs, |v| format!("log size {v} MB"), "MB")?;
            out.logs = l;
        }
        if let Some(c) = put.concurrency {
            check(
                u64::from(c),
                self.concurrency,
                |v| format!("concurrency {v}"),
                "",
            )?;
            out.concurrency = c;
        }
        if let Some(i) = put.instances {
            if i < 1 {
                return Err(ModelError::Limit(
                    "Max action instance concurrency must be at least 1.".into(),
                ));
            }
            if max_instances > 0 && u64::from(i) > max_instances {
                return Err(ModelError::Limit(format!(
                    "Max action instance concurrency must not exceed your namespace concurrency of {max_instances}."
                )));
            }
            out.instances = Some(i);
        }
        Ok(out)
    }
}

fn check(v: u64, r: Range, what: impl Fn(u64) -> String, unit: &str) -> Result<()> {
    let unit = if unit.is_empty() {
        String::new()
    } else {
        format!(" {unit}")
    };
    if v < r.min {
        return Err(ModelError::Limit(format!(
            "{} below allowed threshold of {}{unit}",
            what(v),
            r.min
        )));
    }
    if v > r.max {
        return Err(ModelError::Limit(format!(
            "{} exceeds allowed threshold of {}{unit}",
            what(v),
            r.max
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_messages_are_openwhisks() {
        let s = SystemLimits::default();
        let base = s.default_action_limits();
        let err = |p: LimitsPut| s.apply(base, &p, 30).unwrap_err().to_string();
        assert_eq!(
            err(LimitsPut {
                memory: Some(1024),
                ..Default::default()
            }),
            "memory size 1024 MB exceeds allowed threshold of 512 MB"
        );
        assert_eq!(
            err(LimitsPut {
                timeout: Some(50),
                ..Default::default()
            }),
            "duration 50 milliseconds below allowed threshold of 100 milliseconds"
        );
        assert_eq!(
            err(LimitsPut {
                logs: Some(11),
                ..Default::default()
            }),
            "log size 11 MB exceeds allowed threshold of 10 MB"
        );
        assert_eq!(
            err(LimitsPut {
                concurrency: Some(501),
                ..Default::default()
            }),
            "concurrency 501 exceeds allowed threshold of 500"
        );
        assert_eq!(
            err(LimitsPut {
                instances: Some(31),
                ..Default::default()
            }),
            "Max action instance concurrency must not exceed your namespace concurrency of 30."
        );
        let ok = s
            .apply(
                base,
                &LimitsPut {
                    memory: Some(128),
                    ..Default::default()
                },
                0,
            )
            .unwrap();
        assert_eq!((ok.memory, ok.timeout), (128, 60_000));
    }
}
