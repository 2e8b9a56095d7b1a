//! A client connection's life: request in, upstream exchange, response out.

pub mod conn;
pub mod error;
pub mod exchange;
