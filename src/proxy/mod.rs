//! A client connection's life: request in, upstream exchange, response out.

pub(crate) mod answer;
pub mod conn;
pub mod error;
pub mod exchange;
pub(crate) mod inspect;
pub(crate) mod join;
pub(crate) mod request_id;
pub(crate) mod request_rules;
pub(crate) mod session;
pub(crate) mod tunnel;
