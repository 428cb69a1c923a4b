//! edgewise-bench
