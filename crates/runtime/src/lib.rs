//! edgewise-runtime
