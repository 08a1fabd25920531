//! Validation errors. The `Display` texts are what an OpenWhisk client sees.

/// A value a client sent does not fit the model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    #[error("The name of the entity contains illegal characters.")]
    IllegalName,
    #[error("Name segement longer than allowed: {0} > 256.")]
    NameTooLong(usize),
    #[error("The namespace contains illegal characters.")]
    IllegalNamespace,
    #[error("Namespace longer than allowed: {0} > 256.")]
    NamespaceTooLong(usize),
    #[error("The fully qualified name is not valid: {0}")]
    IllegalPath(String),
    #[error("{0}")]
    Limit(String),
    #[error("{0}")]
    Invalid(String),
    #[error(
        "The specified runtime '{kind}' is not supported by this platform. Valid values are: {valid}."
    )]
    UnknownKind { kind: String, valid: String },
    #[error(
        "The '{0}' runtime is no longer supported. You may read and delete but not update or invoke this action."
    )]
    DeprecatedKind(String),
    #[error("The activation id is not valid.")]
    BadActivationId,
    #[error("Activation id length is {0} but must be 32.")]
    ActivationIdLength(usize),
}

pub type Result<T, E = ModelError> = std::result::Result<T, E>;
