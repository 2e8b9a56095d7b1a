//! A client connection's life: request in, upstream exchange, response out; and the upstream side
//! (replicas, pool, connecting).

pub mod conn;
pub mod connect;
pub mod error;
pub mod exchange;
pub mod pool;
pub mod upstream;
