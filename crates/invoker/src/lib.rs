//! The invoker: runs activations in containers from a pool.
